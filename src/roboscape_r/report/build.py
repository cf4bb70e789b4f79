"""`roboscape report RUN_DIR`: the results report of an experiment, rebuilt from its run folder alone.

Writes ``RUN_DIR/report/index.html`` (one page, embedded CSS, figures by relative path),
``RUN_DIR/report/REPORT.md`` (the same content) and ``RUN_DIR/report/figures/*.png``. Every
file is written atomically. Nothing is trained, simulated or run through a model: the report
reads cell.json, metrics.jsonl, env.json, the evaluation results and strips, the reward check
and the world-model evaluation (see :mod:`roboscape_r.report.run_folder`), so it can be rebuilt
at any time, also while an experiment is still running (missing pieces are listed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import tyro

from roboscape_r.atomic import atomic_write_bytes
from roboscape_r.eval.metrics import summarize
from roboscape_r.report.curves import write_learning_curves
from roboscape_r.report.document import Block, Bullets, Heading, Image, Paragraph, to_html, to_markdown
from roboscape_r.report.model_sections import reward_check_blocks, wm_quality_blocks
from roboscape_r.report.run_folder import RunData, load_run
from roboscape_r.report.sections import (
    compute_blocks,
    header_blocks,
    improvement_blocks,
    missing_blocks,
    paired_blocks,
    success_blocks,
)
from roboscape_r.report.strips import choose_strips, strip_label, write_strip_figure
from roboscape_r.report.success import (
    factor_rows,
    ood_improvement_intervals,
    ood_improvement_on_shared_seeds,
    paired_comparisons,
    per_seed_spread,
    pooled_rows,
)

FIGURES = {"curves": "fig2_success_vs_env_steps.png", "reward_check": "fig3_reward_check.png",
           "strips_in_domain": "fig4_strips_in_domain.png", "strips_ood": "fig5_strips_ood.png"}
"""File names of the figures inside REPORT_DIR/figures/."""


@dataclass(frozen=True)
class ReportConfig:
    """Build the results report (HTML + Markdown + PNG figures) of an experiment run folder."""

    run_dir: tyro.conf.Positional[Path]
    """Run folder written by the experiment runner (experiment.json, cells/, reward_check/, wm_eval/)."""
    out: Path | None = None
    """Report folder; default RUN_DIR/report."""
    smooth_updates: int = 5
    """Trailing window (PPO updates) of the training-success average in Fig. 2 (1: no smoothing)."""

    def __post_init__(self) -> None:
        if not isinstance(self.smooth_updates, int) or self.smooth_updates < 1:
            raise ValueError(f"--smooth-updates must be an int >= 1, got {self.smooth_updates!r}")

    @property
    def report_dir(self) -> Path:
        return Path(self.out) if self.out is not None else Path(self.run_dir) / "report"


class ReportResult(NamedTuple):
    """What `build_report` wrote."""

    html: Path
    markdown: Path
    figures: list[Path]
    missing: list[str]
    """The missing pieces the report lists."""


def _curve_blocks(run: RunData, config: ReportConfig, figures: list[Path]) -> list[Block]:
    blocks: list[Block] = [Heading("Fig. 2: success vs training env steps")]
    final_in_domain = {}
    for method in run.methods:
        episodes = [e for e in run.episodes_of(method) if e["split"] == "in-domain"]
        if episodes:
            final_in_domain[method] = summarize(episodes)
    path = write_learning_curves(config.report_dir / "figures" / FIGURES["curves"], run, final_in_domain,
                                 config.smooth_updates)
    if path is None:
        return blocks + [Paragraph("Nothing to plot yet: no training metrics and no evaluation results.")]
    figures.append(path)
    blocks.append(Image(f"figures/{path.name}", (
        "Fig. 2: success rate of the training env's episodes vs env steps (from each run's metrics.jsonl, a trailing "
        f"mean over {config.smooth_updates} update(s), mean over seeds with a +-1 std band). For the world-model "
        "methods (dashed) this is the world model's own predicted success (its done probability crossing the "
        "termination threshold), not ManiSkill's. Stars: final real "
        "ManiSkill in-domain success_once, pooled over seeds and tasks, with its 95% Wilson interval; dotted "
        "level lines: methods trained without env steps (behaviour cloning).")))
    return blocks


def _strip_blocks(run: RunData, config: ReportConfig, figures: list[Path]) -> list[Block]:
    blocks: list[Block] = []
    for number, split, key in ((4, "in-domain", "strips_in_domain"), (5, "ood", "strips_ood")):
        shown = "OOD" if split == "ood" else split
        blocks.append(Heading(f"Fig. {number}: {shown} evaluation episodes"))
        examples = choose_strips(run, split)
        path = write_strip_figure(config.report_dir / "figures" / FIGURES[key], examples,
                                  f"Fig. {number}: {shown} ManiSkill evaluation episodes, one per method")
        if path is None:
            blocks.append(Paragraph(f"No {shown} frame strips in the evaluation folders."))
            continue
        figures.append(path)
        blocks.append(Image(f"figures/{path.name}", (
            f"Fig. {number}: one {shown} evaluation episode per method (the first recorded one of the lowest seed "
            "that has one), a frame every few steps, border green from the first successful step.")))
        blocks.append(Bullets(tuple(strip_label(e) for e in examples)))
        without = [m for m in run.methods if m not in {e.method for e in examples}]
        if without:
            blocks.append(Paragraph(f"No {shown} strip for: {', '.join(without)}."))
    return blocks


def build_report(config: ReportConfig | str | Path) -> ReportResult:
    """Read the run folder and write the report (see the module docstring).

    Args:
        config: the options, or just the run folder (default options).

    Raises:
        ValueError: the run folder does not exist, or a frame strip cannot be read.
    """
    if not isinstance(config, ReportConfig):
        config = ReportConfig(Path(config))
    run = load_run(config.run_dir)
    figures: list[Path] = []
    pooled = pooled_rows(run)
    improvements, averages = ood_improvement_on_shared_seeds(run)

    figure_src = None
    if run.reward_check_figure is not None:
        target = config.report_dir / "figures" / FIGURES["reward_check"]
        atomic_write_bytes(target, run.reward_check_figure.read_bytes())
        figures.append(target)
        figure_src = f"figures/{target.name}"

    blocks: list[Block] = header_blocks(run) + missing_blocks(run)
    blocks += success_blocks(run, pooled, per_seed_spread(run), factor_rows(run))
    blocks += improvement_blocks(improvements, averages, *ood_improvement_intervals(run))
    blocks += paired_blocks(paired_comparisons(run))
    blocks += _curve_blocks(run, config, figures)
    blocks += reward_check_blocks(run.reward_check, figure_src)
    blocks += _strip_blocks(run, config, figures)
    blocks += wm_quality_blocks(run.wm_eval)
    blocks += compute_blocks(run)

    title = next(b.text for b in blocks if isinstance(b, Heading))
    html_path, md_path = config.report_dir / "index.html", config.report_dir / "REPORT.md"
    atomic_write_bytes(md_path, to_markdown(blocks).encode())
    atomic_write_bytes(html_path, to_html(blocks, title).encode())
    return ReportResult(html_path, md_path, figures, list(run.missing))
