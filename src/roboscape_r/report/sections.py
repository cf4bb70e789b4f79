"""The report's sections about the experiment itself: header, missing pieces, success tables,
per-factor results, the OOD improvement and compute. Each function returns document blocks."""

from __future__ import annotations

import math
from typing import Any

from roboscape_r.report.document import Block, Bullets, Heading, Paragraph, table
from roboscape_r.report.run_folder import OURS, RunData
from roboscape_r.report.success import (
    ALL_TASKS,
    BOOTSTRAP_DEFINITION,
    BOOTSTRAP_RESAMPLES,
    IMPROVEMENT_DEFINITION,
    PAIRED_DEFINITION,
    Improvement,
    ImprovementInterval,
    PairedComparison,
    split_order,
)

PAPER_OOD_IMPROVEMENT_PERCENT = 37.5
"""The paper's headline: average OOD improvement of RoboScape-R (arXiv 2512.03556)."""
POOLING_NOTE = ("Pooled over seeds: the evaluation episodes of all seeds of a method are counted together; "
                "the 95% Wilson score interval treats them as independent draws and so leaves out the variation "
                "between training seeds, which the per-seed spread (mean ± sample std of the per-seed rates) "
                "shows. Cells read 'rate [low, high] (n episodes)'.")


# ---------------------------------------------------------------------------------- format


def rate_ci(summary: dict, metric: str) -> str:
    """"0.45 [0.30, 0.61] (n=40)" from a summarize() dict."""
    m = summary[metric]
    return f"{m['rate']:.2f} [{m['ci95'][0]:.2f}, {m['ci95'][1]:.2f}] (n={summary['episodes']})"


def mean_std(entry: dict) -> str:
    """"0.45 ± 0.05" (std "n/a" with one seed)."""
    std = "n/a" if entry["std"] is None else f"{entry['std']:.2f}"
    return f"{entry['mean']:.2f} ± {std}"


def duration(seconds: Any) -> str:
    """Seconds as "42 s", "12.3 min" or "2.45 h"; "-" when unknown."""
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def count(value: Any) -> str:
    """An integer with thousands separators; "-" when unknown."""
    return f"{int(value):,}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def signed(value: float | None, unit: str, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}{unit}"


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [item for key, sub in value.items() for item in _flatten(sub, f"{prefix}{key}.")]
    if isinstance(value, (list, tuple)) and all(not isinstance(v, (dict, list)) for v in value):
        return [(prefix[:-1], ", ".join(str(v) for v in value))]
    if isinstance(value, (list, tuple)):
        return [item for i, sub in enumerate(value) for item in _flatten(sub, f"{prefix}{i}.")]
    return [(prefix[:-1], str(value))]


# ---------------------------------------------------------------------------------- header


def perceptual_distances(run: RunData) -> list[str]:
    """The distances the general reward's training runs used (from their env.json), sorted."""
    found = set()
    for cell in run.cells_of(OURS):
        reward = (cell.env or {}).get("reward")
        if isinstance(reward, dict) and reward.get("distance"):
            found.add(str(reward["distance"]))
    return sorted(found)


def training_description(run: RunData, method: str) -> tuple[str, str]:
    """(training env, reward) of a method from its cells' env.json."""
    for cell in run.cells_of(method):
        if cell.env is None:
            continue
        reward = cell.env.get("reward")
        if isinstance(reward, dict):
            details = ", ".join(f"{k} {reward[k]}" for k in ("distance", "encoder", "mode") if reward.get(k))
            reward = str(reward.get("name", "?")) + (f" ({details})" if details else "")
        env = {"wm": "world model", "sim": "ManiSkill"}.get(cell.env.get("env"), str(cell.env.get("env")))
        if cell.env.get("per_task"):  # the per-task baseline: one policy per task behind a router
            env += f", one policy per task ({len(cell.env['per_task'])})"
        return env, str(reward)
    if method == "bc":
        return "none (expert dataset)", "behaviour cloning loss"
    return "unknown (no env.json)", "unknown"


def cell_revisions(run: RunData) -> str:
    """The code revisions the cells were trained and evaluated at (a resumed run may span several)."""
    seen: dict[str, int] = {}
    for cell in run.cells.values():
        for key in ("train_git_revision", "eval_git_revision"):
            revision = (cell.info or {}).get(key)
            if revision:
                seen[revision] = seen.get(revision, 0) + 1
    if not seen:
        return "not recorded"
    return ", ".join(f"{revision[:10]} ({n} stage{'s' if n > 1 else ''})" for revision, n in seen.items())


def header_blocks(run: RunData) -> list[Block]:
    experiment = run.experiment or {}
    preset = experiment.get("preset", "unknown")
    distances = perceptual_distances(run)
    blocks: list[Block] = [
        Heading(f"RoboScape-R experiment report: preset {preset}", 1),
        Paragraph(f"Rebuilt from the saved run folder '{run.run_dir.name}' alone: no training, no world-model or "
                  "simulator calls. Figure numbers follow the paper (RoboScape-R, arXiv 2512.03556)."),
    ]
    rows = [["preset", preset], ["date", experiment.get("date", "unknown")],
            ["git revision", experiment.get("git_revision", "unknown")],
            ["git revisions of the cells (train, evaluation)", cell_revisions(run)],
            ["tasks", ", ".join(map(str, experiment.get("tasks", []))) or "unknown"],
            ["methods", ", ".join(run.methods) or "none"], ["seeds", ", ".join(map(str, run.seeds)) or "none"],
            ["env steps per policy", count(experiment.get("env_steps_per_policy"))],
            ["perceptual distance of the general reward",
             ", ".join(distances) if distances else "unknown (no env.json of a general cell)"]]
    shown = {"preset", "date", "git_revision", "tasks", "methods", "seeds", "env_steps_per_policy", "config",
             "stage_wall_s"}
    rows += [[key, value] for key, value in _flatten({k: v for k, v in experiment.items() if k not in shown})]
    blocks.append(table(["run", "value"], rows))
    method_rows = []
    for method in run.methods:
        cells = run.cells_of(method)
        env, reward = training_description(run, method)
        done = sum(c.status == "done" for c in cells)
        evaluated = sum(c.eval_results is not None for c in cells)
        method_rows.append([method + (" (ours)" if method == OURS else ""), env, reward,
                            f"{done}/{len(cells)}", f"{evaluated}/{len(cells)}"])
    if method_rows:
        blocks.append(table(["method", "trains in", "reward", "cells done", "cells evaluated"], method_rows,
                            "Methods"))
    config = experiment.get("config")
    if isinstance(config, dict) and config:
        blocks.append(table(["setting", "value"], [list(item) for item in _flatten(config)],
                            f"Preset '{preset}': sizes and budgets"))
    return blocks


def missing_blocks(run: RunData) -> list[Block]:
    blocks: list[Block] = [Heading("Missing pieces")]
    if run.missing:
        blocks.append(Paragraph("These parts of the run folder are missing, failed or unreadable; the report shows "
                                "everything else."))
        blocks.append(Bullets(tuple(run.missing)))
    else:
        blocks.append(Paragraph("None: every expected cell finished and was evaluated, and the reward check and the "
                                "world-model evaluation are present."))
    return blocks


# ---------------------------------------------------------------------------------- success


def _task_order(run: RunData, tasks: set[str]) -> list[str]:
    listed = [str(t) for t in (run.experiment or {}).get("tasks", []) if t in tasks]
    rest = sorted(tasks - set(listed) - {ALL_TASKS})
    return listed + rest + ([ALL_TASKS] if ALL_TASKS in tasks else [])


def _by_method_table(run: RunData, rows: list[dict], keys: tuple[str, ...], cell_text, caption: str):
    methods = [m for m in run.methods if any(r["method"] == m for r in rows)]
    index: dict[tuple, dict[str, dict]] = {}
    for row in rows:
        index.setdefault(tuple(row[k] for k in keys), {})[row["method"]] = row
    return table(list(keys) + methods,
                 [list(key) + [cell_text(per[m]) if m in per else "-" for m in methods] for key, per in index.items()],
                 caption)


def _ordered(run: RunData, rows: list[dict]) -> list[dict]:
    splits = split_order({r["split"] for r in rows})
    tasks = _task_order(run, {r["task"] for r in rows})
    return sorted(rows, key=lambda r: (splits.index(r["split"]), tasks.index(r["task"])))


def success_blocks(run: RunData, pooled: list[dict], spread: list[dict], factors: list[dict]) -> list[Block]:
    blocks: list[Block] = [Heading("Success rates in ManiSkill")]
    if not pooled:
        return blocks + [Paragraph("No evaluation results yet (no cell has eval/results.json).")]
    definitions = next((c.eval_results.get("definitions") for m in run.methods for c in run.cells_of(m)
                        if c.eval_results and c.eval_results.get("definitions")), None) or {}
    blocks.append(Paragraph(POOLING_NOTE))
    if definitions:
        blocks.append(Bullets(tuple(f"{k}: {v}" for k, v in definitions.items()
                                    if k in ("success_once", "success_at_end"))))
    pooled = _ordered(run, pooled)
    for metric in ("success_once", "success_at_end"):
        blocks.append(_by_method_table(run, pooled, ("task", "split"), lambda r, m=metric: rate_ci(r, m),
                                       f"{metric}, pooled over seeds, 95% Wilson interval"))
    blocks.append(_by_method_table(
        run, _ordered(run, spread), ("task", "split"),
        lambda r: f"{mean_std(r['success_once'])} / {mean_std(r['success_at_end'])} "
                  f"({r['seeds']} seed{'s' * (r['seeds'] != 1)})",
        "Per-seed spread: success_once / success_at_end, mean ± sample std over seeds"))
    blocks.append(Heading("Per OOD factor", 3))
    if not factors:
        return blocks + [Paragraph("No OOD episodes were evaluated.")]
    blocks.append(Paragraph("Each OOD factor pools its scenes, all tasks it applies to and all seeds; with fewer "
                            "episodes per group than the split totals above, the intervals are wider."))
    for metric in ("success_once", "success_at_end"):
        blocks.append(_by_method_table(run, factors, ("factor",), lambda r, m=metric: rate_ci(r, m),
                                       f"{metric} per OOD factor, pooled over tasks and seeds"))
    return blocks


def interval_text(interval: ImprovementInterval | None, relative: bool) -> str:
    """'[low, high]' of a bootstrap interval in points or percent; 'n/a' when there is none."""
    if interval is None or (relative and interval.relative_percent is None):
        return "n/a"
    if not relative:
        low, high = interval.absolute_points
        return f"[{low:+.1f}, {high:+.1f}] pts"
    low, high = interval.relative_percent
    text = f"[{low:+.1f}%, {high:+.1f}%]"
    if interval.relative_defined < interval.resamples:
        text += f" (defined in {interval.relative_defined:,} of {interval.resamples:,} resamples)"
    return text


def improvement_blocks(improvements: list[Improvement], averages: dict,
                       intervals: dict[str, ImprovementInterval] | None = None,
                       average_interval: ImprovementInterval | None = None) -> list[Block]:
    intervals = intervals or {}
    blocks: list[Block] = [Heading("Relative OOD improvement of the general reward"),
                           Paragraph(IMPROVEMENT_DEFINITION),
                           Paragraph(BOOTSTRAP_DEFINITION.format(resamples=BOOTSTRAP_RESAMPLES))]
    paper = f"+{PAPER_OOD_IMPROVEMENT_PERCENT}%"
    if not improvements:
        return blocks + [Paragraph(f"Not available: the general method and at least one baseline need OOD "
                                   f"evaluation results. Paper's headline for comparison: {paper} average OOD "
                                   "improvement.")]
    rows = [[i.baseline, ", ".join(map(str, i.seeds)), ", ".join(i.tasks), f"{i.ours_rate:.3f}",
             f"{i.baseline_rate:.3f}", signed(i.absolute_points, " pts"), interval_text(intervals.get(i.baseline), False),
             signed(i.relative_percent, "%"), interval_text(intervals.get(i.baseline), True)]
            for i in improvements]
    rows.append(["average over baselines", "", "", "", "", signed(averages["absolute_points"], " pts"),
                 interval_text(average_interval, False),
                 signed(averages["relative_percent"], "%")
                 + f" (over {averages['relative_defined']} of {averages['baselines']} baselines)",
                 interval_text(average_interval, True)])
    blocks.append(table(["baseline", "seeds", "tasks averaged", "SR general", "SR baseline", "absolute",
                         "absolute 95% CI", "relative", "relative 95% CI"],
                        rows, "OOD success_once of general vs each baseline"))
    spread = ("" if average_interval is None else
              f", 95% interval {interval_text(average_interval, True)}; absolute "
              f"{signed(averages['absolute_points'], ' points')}, {interval_text(average_interval, False)}")
    blocks.append(Paragraph(
        f"Average relative OOD improvement of the general reward: this run "
        f"{signed(averages['relative_percent'], '%')}"
        + (spread or f" (absolute {signed(averages['absolute_points'], ' points')})")
        + f"; the paper's headline: {paper} on average in OOD scenes. The paper's models, data and budgets are far "
        "larger than a small preset's, so the two numbers are not expected to match."))
    return blocks


def paired_blocks(comparisons: list[PairedComparison]) -> list[Block]:
    blocks: list[Block] = [Heading("Paired comparison on the same episodes", 3), Paragraph(PAIRED_DEFINITION)]
    if not comparisons:
        return blocks + [Paragraph("Not available: the general method and a baseline need evaluation results "
                                   "on shared episodes.")]
    rows = [[c.baseline, c.split, str(c.episodes), str(c.ours_only), str(c.baseline_only), f"{c.p_value:.3g}"]
            for c in comparisons]
    return blocks + [table(["baseline", "split", "shared episodes", "general only", "baseline only", "McNemar p"],
                           rows, "success_once of general vs each baseline, episode by episode")]


# ---------------------------------------------------------------------------------- compute


def compute_blocks(run: RunData) -> list[Block]:
    blocks: list[Block] = [Heading("Compute")]
    rows, totals = [], {}
    for method in run.methods:
        for cell in run.cells_of(method):
            info = cell.info or {}
            values = [info.get("train_wall_s"), info.get("eval_wall_s"), info.get("env_steps")]
            rows.append([method, str(cell.seed), cell.status, duration(values[0]), duration(values[1]),
                         count(values[2])])
            total = totals.setdefault(method, [0.0, 0.0, 0])
            for k, value in enumerate(values):
                if isinstance(value, (int, float)) and math.isfinite(value):
                    total[k] += value
    if not rows:
        return blocks + [Paragraph("No cells.")]
    blocks.append(Paragraph("Wall-clock times and env steps from each cell's cell.json ('-' where not recorded). "
                            "Env steps are those of policy training (0 for behaviour cloning). A wall time counts "
                            "everything that shared the machine meanwhile: a cell run beside other jobs takes "
                            "longer than alone."))
    blocks.append(table(["method", "seed", "status", "train wall", "eval wall", "env steps"], rows, "Per cell"))
    grand = [sum(t[k] for t in totals.values()) for k in range(3)]
    total_rows = [[m, duration(t[0]), duration(t[1]), duration(t[0] + t[1]), count(t[2])] for m, t in totals.items()]
    total_rows.append(["all methods", duration(grand[0]), duration(grand[1]), duration(grand[0] + grand[1]),
                       count(grand[2])])
    blocks.append(table(["method", "train wall", "eval wall", "total wall", "env steps"], total_rows,
                        "Totals over seeds"))
    stages = (run.experiment or {}).get("stage_wall_s")
    if isinstance(stages, dict) and stages:
        blocks.append(table(["run-level stage", "wall"], [[name, duration(value)] for name, value in stages.items()],
                            "Run-level stages (from experiment.json)"))
    return blocks
