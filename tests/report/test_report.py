"""`roboscape report`: tables and figures from a synthetic run folder, the HTML rendered in headless
Chromium, missing pieces, the improvement arithmetic by hand, and bad input."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from roboscape_r.eval.metrics import wilson_interval
from roboscape_r.report import ReportConfig, build_report, load_run
from roboscape_r.report.curves import method_curve, training_curve
from roboscape_r.report.document import Table, to_markdown
from roboscape_r.report.model_sections import reward_rank
from roboscape_r.report.strips import choose_strips
from roboscape_r.report.success import (
    mcnemar_exact_p,
    ood_improvement,
    ood_improvement_intervals,
    ood_improvement_on_shared_seeds,
    paired_comparisons,
)
from tests.report.chromium import CHROMIUM, image_widths
from tests.report.fake_run import real_ppo_template, write_fake_run

ROBOSCAPE = [sys.executable, "-m", "roboscape_r.cli"]


def md_table(markdown: str, caption: str) -> list[dict[str, str]]:
    """The rows of the Markdown table under the caption line starting with `caption`."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"*{caption}"))
    header = [c.strip() for c in lines[start + 2].strip("|").split(" | ")]
    rows = []
    for line in lines[start + 4:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip().strip("|").split(" | ")))))
    return rows


def row_of(rows: list[dict], **match: str) -> dict:
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, rows)
    return found[0]


def ci(successes: int, trials: int) -> str:
    low, high = wilson_interval(successes, trials)
    return f"{successes / trials:.2f} [{low:.2f}, {high:.2f}] (n={trials})"


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    return real_ppo_template(tmp_path_factory.mktemp("ppo") / "run")


@pytest.fixture(scope="module")
def report(tmp_path_factory, ppo_run):
    """The synthetic run, reported through the CLI: (run dir, markdown, html, CLI output)."""
    run = write_fake_run(tmp_path_factory.mktemp("report") / "run", ppo_run[0])
    done = subprocess.run(ROBOSCAPE + ["report", str(run)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return run, (run / "report" / "REPORT.md").read_text(), (run / "report" / "index.html").read_text(), done.stdout


def test_cli_writes_the_report_and_lists_missing_pieces(report):
    run, markdown, page, stdout = report
    figures = sorted(p.name for p in (run / "report" / "figures").iterdir())
    assert figures == ["fig2_success_vs_env_steps.png", "fig3_reward_check.png", "fig4_strips_in_domain.png",
                       "fig5_strips_ood.png"]
    assert "4 missing piece(s)" in stdout
    for line in ("cell proxy/seed1: not run", "cell proxy/seed0: status failed (NonFiniteError: reward was NaN)",
                 "cell embedding/seed1 evaluation: results.json not found"):
        assert line in stdout and line in markdown


def test_header_names_preset_revision_and_perceptual_distance(report):
    run, markdown, _, _ = report
    assert markdown.startswith("# RoboScape-R experiment report: preset demo")
    assert "| git revision | 0123abc |" in markdown and "| date | 2025-01-02T03:04:05 |" in markdown
    cells = [c for c in load_run(run).cells.values() if c.info is not None]
    evaluated = sum("eval_git_revision" in c.info for c in cells)
    assert 0 < evaluated < len(cells)
    assert (f"| git revisions of the cells (train, evaluation) | aaaaaaaaaa ({len(cells)} stages), "
            f"bbbbbbbbbb ({evaluated} stages) |") in markdown
    assert "| perceptual distance of the general reward | tokenizer-features-lpips |" in markdown
    assert "| ppo.total_timesteps | 640 |" in markdown
    methods = md_table(markdown, "Methods")
    assert [r["method"] for r in methods] == ["general (ours)", "embedding", "proxy", "sim", "bc", "custom"]
    assert row_of(methods, method="proxy")["cells done"] == "0/2"


def test_success_tables_pool_seeds_with_wilson_intervals(report):
    run, markdown, _, _ = report
    once = md_table(markdown, "success_once, pooled over seeds")
    # general OOD PickCube: 3 of 5 in each of the two seeds
    assert row_of(once, task="PickCube", split="ood")["general"] == ci(6, 10)
    assert row_of(once, task="all tasks", split="ood")["sim"] == ci(6, 20)
    assert row_of(once, task="PushCube", split="in-domain")["custom"] == ci(0, 5)
    assert row_of(once, task="PickCube", split="ood")["custom"] == "-"
    assert row_of(once, task="PickCube", split="ood")["embedding"] == ci(2, 5)  # only seed 0 was evaluated
    assert "proxy" not in once[0]  # no results at all
    # success_at_end, counted here straight from the records of both seeds' results.json
    records = [e for seed in (0, 1) for e in json.loads(
        (run / "cells" / "general" / f"seed{seed}" / "eval" / "results.json").read_text())["episodes"]]
    ood_end = sum(e["success_at_end"] for e in records if e["split"] == "ood")
    at_end = md_table(markdown, "success_at_end, pooled over seeds")
    assert row_of(at_end, task="all tasks", split="ood")["general"] == ci(ood_end, 20)
    # per-seed spread: general PickCube in-domain 4/5 and 5/5 -> 0.90 ± 0.14 (sample std)
    spread = md_table(markdown, "Per-seed spread")
    assert row_of(spread, task="PickCube", split="in-domain")["general"].startswith("0.90 ± 0.14 / ")
    assert row_of(spread, task="PickCube", split="ood")["embedding"].endswith("(1 seed)")
    # per factor: general colour 3+3 (PickCube) + 2+2 (PushCube) of 12, lighting 0 of 8
    factors = md_table(markdown, "success_once per OOD factor")
    assert row_of(factors, factor="object_color")["general"] == ci(10, 12)
    assert row_of(factors, factor="lighting")["general"] == ci(0, 8)
    assert "Pooled over seeds" in markdown


def test_ood_improvement_table_and_paper_headline(report):
    _, markdown, _, _ = report
    rows = md_table(markdown, "OOD success_once of general vs each baseline")
    assert row_of(rows, baseline="sim")["absolute"] == "+20.0 pts"
    assert row_of(rows, baseline="sim")["relative"] == "+66.7%"
    assert row_of(rows, baseline="bc")["relative"] == "n/a" and row_of(rows, baseline="bc")["absolute"] == "+50.0 pts"
    assert row_of(rows, baseline="embedding")["relative"] == "+0.0%"
    # embedding has OOD results for seed 0 only, so general is counted on seed 0 too against it
    assert row_of(rows, baseline="embedding")["seeds"] == "0" and row_of(rows, baseline="sim")["seeds"] == "0, 1"
    average = row_of(rows, baseline="average over baselines")
    assert average["absolute"] == "+23.3 pts" and average["relative"] == "+33.3% (over 2 of 3 baselines)"
    assert "+37.5%" in markdown and "n/a when SR(b) = 0" in markdown


def test_improvement_arithmetic_by_hand():
    rates = {"general": {"A": 0.6, "B": 0.2}, "sim": {"A": 0.3, "B": 0.1}, "bc": {"A": 0.0}, "other": {"C": 0.5}}
    improvements, averages = ood_improvement(rates)
    by_name = {i.baseline: i for i in improvements}
    assert set(by_name) == {"sim", "bc"}  # "other" shares no task with general
    sim = by_name["sim"]  # general (0.6 + 0.2) / 2 = 0.4 vs (0.3 + 0.1) / 2 = 0.2
    assert sim.tasks == ("A", "B")
    assert sim.ours_rate == pytest.approx(0.4) and sim.baseline_rate == pytest.approx(0.2)
    assert sim.absolute_points == pytest.approx(20.0) and sim.relative_percent == pytest.approx(100.0)
    bc = by_name["bc"]  # only task A in common: 0.6 vs 0.0
    assert bc.absolute_points == pytest.approx(60.0) and bc.relative_percent is None
    assert averages == {"absolute_points": pytest.approx(40.0), "relative_percent": pytest.approx(100.0),
                        "relative_defined": 1, "baselines": 2}
    assert ood_improvement({"sim": {"A": 0.5}}) == ([], {"absolute_points": None, "relative_percent": None,
                                                       "relative_defined": 0, "baselines": 0})
    with pytest.raises(ValueError, match="rates must be in"):
        ood_improvement({"general": {"A": 1.5}})


def _paired_run(outcomes: dict[tuple[int, str], tuple[list[bool], list[bool]]], baselines=("sim",)):
    """A run whose general and baseline OOD episodes are given per (seed, task) as success lists."""
    episodes = {method: [] for method in ("general", *baselines)}
    for (seed, task), (ours, theirs) in outcomes.items():
        for index, (a, b) in enumerate(zip(ours, theirs)):
            common = {"split": "ood", "train_seed": seed, "task": task, "scene": "ood-x", "seed": index}
            episodes["general"].append({**common, "success_once": a})
            for baseline in baselines:
                episodes[baseline].append({**common, "success_once": b})
    return SimpleNamespace(methods=list(episodes), episodes_of=lambda m: episodes[m])


def test_bootstrap_interval_of_one_seed_matches_the_binomial_spread():
    # one seed, one task: general solves 50 of 100, the baseline none -> +50 points, sd 5 points
    run = _paired_run({(0, "A"): ([True] * 50 + [False] * 50, [False] * 100)})
    per_baseline, average = ood_improvement_intervals(run, resamples=4000)
    low, high = per_baseline["sim"].absolute_points
    assert 38 < low < 42 and 58 < high < 62
    assert per_baseline["sim"].relative_percent is None and per_baseline["sim"].relative_defined == 0
    assert per_baseline["sim"].resamples == 4000
    assert average is not None and average.absolute_points == per_baseline["sim"].absolute_points


def test_bootstrap_resamples_training_seeds_too():
    # seed 0: general solves all, the baseline none; seed 1 the reverse. Point estimate 0, but a
    # resample drawing seed 0 twice gives +100 points and seed 1 twice -100: the seed level shows.
    run = _paired_run({(0, "A"): ([True] * 20, [False] * 20), (1, "A"): ([False] * 20, [True] * 20)})
    (interval,) = ood_improvement_intervals(run, resamples=500)[0].values()
    assert interval.absolute_points == (-100.0, 100.0)
    # identical outcomes: no spread at all; same seed, same draws
    same = _paired_run({(0, "A"): ([True, False] * 5, [True, False] * 5)}, baselines=("sim", "bc"))
    first, average = ood_improvement_intervals(same, resamples=300, seed=7)
    assert first["sim"].absolute_points == (0.0, 0.0) and first["sim"].relative_percent == (0.0, 0.0)
    assert average.absolute_points == (0.0, 0.0)
    assert ood_improvement_intervals(same, resamples=300, seed=7)[0] == first
    with pytest.raises(ValueError, match="resamples"):
        ood_improvement_intervals(same, resamples=0)


def test_report_gives_the_improvement_intervals(report):
    _, markdown, _, _ = report
    rows = md_table(markdown, "OOD success_once of general vs each baseline")
    sim = row_of(rows, baseline="sim")
    low, high = (float(v) for v in re.findall(r"[-+]\d+\.\d", sim["absolute 95% CI"]))
    assert low <= 20.0 <= high  # the point estimate (+20.0 pts) lies inside its interval
    assert row_of(rows, baseline="bc")["relative 95% CI"] == "n/a"  # bc never succeeds: no relative change
    # embedding is compared on seed 0 only, the others on seeds 0 and 1: no joint draws, no average interval
    assert row_of(rows, baseline="average over baselines")["absolute 95% CI"] == "n/a"
    assert "two-level bootstrap" in markdown


def test_improvement_counts_only_the_seeds_both_methods_were_evaluated_on():
    def episodes(train_seed, task, successes, n=4):
        return [{"train_seed": train_seed, "task": task, "split": "ood", "success_once": i < successes}
                for i in range(n)]

    by_method = {
        "general": episodes(0, "A", 1),  # one seed done so far: 1/4
        "bc": episodes(0, "A", 2) + episodes(1, "A", 4) + episodes(2, "A", 4),  # seeds 1 and 2 much better
        "sim": episodes(1, "A", 0),  # no seed in common with general
    }
    run = SimpleNamespace(methods=["general", "bc", "sim"], episodes_of=lambda m: by_method[m])
    improvements, averages = ood_improvement_on_shared_seeds(run)
    assert [(i.baseline, i.seeds) for i in improvements] == [("bc", (0,))]
    bc = improvements[0]  # seed 0 only: 1/4 vs 2/4, not 1/4 vs 10/12
    assert bc.ours_rate == pytest.approx(0.25) and bc.baseline_rate == pytest.approx(0.5)
    assert bc.relative_percent == pytest.approx(-50.0) and averages["baselines"] == 1


def test_mcnemar_by_hand():
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(0, 5) == pytest.approx(2 / 32)  # 2 * P(X = 0), X ~ Bin(5, 1/2)
    assert mcnemar_exact_p(9, 1) == pytest.approx(2 * 11 / 1024)  # 2 * P(X <= 1), X ~ Bin(10, 1/2)
    assert mcnemar_exact_p(3, 3) == 1.0
    with pytest.raises(ValueError, match="discordant counts"):
        mcnemar_exact_p(-1, 2)


def test_paired_comparison_matches_episodes_by_seed_task_scene_and_episode_seed():
    def episode(train_seed, task, seed, ok, split="in-domain", scene="id-a"):
        return {"train_seed": train_seed, "task": task, "scene": scene, "seed": seed, "split": split,
                "success_once": ok}

    episodes = {
        "general": [episode(0, "A", 1, True), episode(0, "A", 2, True), episode(0, "A", 3, False),
                    episode(1, "A", 1, True), episode(0, "A", 1, True, "ood", "ood-x")],
        "bc": [episode(0, "A", 1, True), episode(0, "A", 2, False), episode(0, "A", 3, True),
               episode(0, "A", 9, True),  # not evaluated for general: not shared
               episode(1, "A", 1, False), episode(0, "A", 1, False, "ood", "ood-x")],
        "sim": [],
    }
    run = SimpleNamespace(methods=["bc", "general", "sim"], episodes_of=lambda m: episodes[m])
    comparisons = paired_comparisons(run)
    assert [(c.baseline, c.split) for c in comparisons] == [("bc", "in-domain"), ("bc", "ood")]
    in_domain = comparisons[0]
    assert (in_domain.episodes, in_domain.ours_only, in_domain.baseline_only) == (4, 2, 1)
    assert in_domain.p_value == pytest.approx(mcnemar_exact_p(2, 1))
    assert (comparisons[1].episodes, comparisons[1].ours_only, comparisons[1].baseline_only) == (1, 1, 0)


def test_report_has_the_paired_table(report):
    _, markdown, _, _ = report
    rows = md_table(markdown, "success_once of general vs each baseline, episode by episode")
    assert {row["baseline"] for row in rows} >= {"sim", "bc"}
    for row in rows:
        assert int(row["general only"]) + int(row["baseline only"]) <= int(row["shared episodes"])
        assert 0.0 <= float(row["McNemar p"]) <= 1.0


def test_reward_check_and_world_model_tables(report):
    run, markdown, _, _ = report
    check = md_table(markdown, "Reward check")
    assert [r["split"] for r in check] == ["in-domain", "ood/object_color", "ood/lighting", "ood", "all"]
    assert list(check[0])[2:] == ["general (ours)", "embedding", "sim"]
    assert "progress correlation: rank 1 of 3 (1 of 2 without" in markdown
    assert "proxy: skipped (--proxy not given)" in markdown
    terms = md_table(markdown, "The general reward's two terms")
    assert [r["split"] for r in terms] == ["in-domain", "ood/object_color", "ood/lighting", "ood", "all"]
    assert list(terms[0])[1:] == ["general/alignment", "general/done"]
    assert row_of(terms, split="all")["general/done"].endswith("/ 1.00"), "done fires on successful episodes only"
    metrics = json.loads((run / "wm_eval" / "metrics.json").read_text())["splits"]["in-domain"]
    gap = metrics["controllability"]
    control = md_table(markdown, "Action controllability")
    assert row_of(control, split="in-domain")["action gap @ 8 (dB) [95% CI]"] == (
        f"{gap['psnr_gap']:.2f} [{gap['psnr_gap_ci95'][0]:.2f}, {gap['psnr_gap_ci95'][1]:.2f}]")
    done = metrics["done"]
    assert row_of(control, split="in-domain")["done AUROC"] == f"{done['auroc']:.3f}" + (
        f" [{done['auroc_ci95'][0]:.2f}, {done['auroc_ci95'][1]:.2f}]" if done.get("auroc_ci95") else "")
    psnr = md_table(markdown, "Full-frame PSNR")
    h8 = metrics["open_loop"]["8"]
    references = ("model", "model_anchored", "copy_last", "tokenizer_recon")
    references += ("model_context",) if "model_context" in h8 else ()  # eval-wm ran with a context decoder
    assert row_of(psnr, split="in-domain")["PSNR @ 8 steps"] == " / ".join(f"{h8[ref]['psnr']:.1f}" for ref in references)
    moved = md_table(markdown, "Full-frame PSNR (dB) over only the windows in which some pixel moved")
    assert row_of(moved, split="in-domain")["moved windows PSNR @ 8"] == (
        " / ".join(f"{h8['moved_windows'][ref]['psnr']:.1f}" for ref in references)
        + f" ({h8['moved_windows']['windows']} windows)")
    differences = md_table(markdown, "Full-frame PSNR of the model's prediction (drawn on the last real frame)")
    difference = h8["vs_copy_last"]["full"]
    assert row_of(differences, split="in-domain")["model - copy-last @ 8"] == (
        f"{difference['psnr_diff']:+.2f} [{difference['psnr_diff_ci95'][0]:+.2f}, "
        f"{difference['psnr_diff_ci95'][1]:+.2f}]")
    tokens = md_table(markdown, "WM_act's token grids against the real ones")
    assert row_of(tokens, split="in-domain")["tokens @ 8"] == (
        f"{h8['tokens']['still_kept']:.2f} / {h8['tokens']['changed_changed']:.2f}")


def test_compute_table_totals(report):
    _, markdown, _, _ = report
    totals = row_of(md_table(markdown, "Totals over seeds"), method="all methods")
    # 10 cells (proxy seed 1 never ran) with 100 s (+1 s for the 4 of seed 1) of training; 8 PPO cells
    # with 640 env steps each (BC has none)
    assert totals["train wall"] == f"{(10 * 100 + 4) / 60:.1f} min"
    assert totals["env steps"] == "5,120"
    assert row_of(md_table(markdown, "Per cell"), method="proxy", seed="1")["status"] == "not run"


def test_html_carries_the_same_tables_and_is_self_contained(report):
    _, markdown, page, _ = report
    for caption in ("success_once, pooled over seeds", "Per-seed spread", "success_once per OOD factor",
                    "OOD success_once of general vs each baseline", "Reward check", "Full-frame PSNR",
                    "Action controllability", "Totals over seeds"):
        assert html.escape(caption) in page
    assert html.escape(ci(6, 10)) in page and "+66.7%" in page
    assert page.count("<table>") == markdown.count("\n|---|") and page.count("<img ") == 4
    assert not re.search(r"""(src|href)=["']?(https?:|//|/)""", page) and "<link" not in page and "<script" not in page


@pytest.mark.skipif(CHROMIUM is None, reason="needs a chromium binary (scripts/setup.sh installs Debian's chromium)")
def test_every_image_loads_in_headless_chromium(report, tmp_path):
    widths = image_widths(report[0] / "report", tmp_path)
    assert len(widths) == 4 and all(width > 0 for width in widths.values()), widths


def test_missing_pieces_are_listed_not_fatal(tmp_path, report):
    run = Path(shutil.copytree(report[0], tmp_path / "run"))
    shutil.rmtree(run / "reward_check")
    shutil.rmtree(run / "wm_eval")
    (run / "reward_check").mkdir()
    (run / "reward_check" / "error.json").write_text(json.dumps({"error": "CheckpointError('--wm-txt: corrupt')"}))
    (run / "cells" / "sim" / "seed1" / "eval" / "results.json").write_text("{not json")
    with open(run / "cells" / "sim" / "seed0" / "train" / "metrics.jsonl", "a") as handle:
        handle.write('{"update": 11, "global_st')  # a line cut off by a crash
    for strip in (run / "cells" / "general" / "seed0" / "eval" / "videos").glob("*_strip.png"):
        strip.unlink()
    result = build_report(ReportConfig(run, out=tmp_path / "out", smooth_updates=1))
    markdown = result.markdown.read_text()
    assert result.html.parent == tmp_path / "out"
    assert any("sim/seed1 evaluation: results.json is unreadable" in line for line in result.missing)
    assert "cell sim/seed0: 1 unreadable line(s) in train/metrics.jsonl were skipped" in result.missing
    assert "reward check: failed (CheckpointError('--wm-txt: corrupt')); see reward_check/error.json" in markdown
    assert "world-model evaluation: not run (no wm_eval/ folder)" in markdown
    assert "Not available: the run folder has no wm_eval/metrics.json" in markdown
    once = md_table(markdown, "success_once, pooled over seeds")
    assert row_of(once, task="PickCube", split="ood")["sim"] == ci(2, 5)  # seed 0 only
    # general's seed 0 lost its strips: the figure falls back to seed 1's first OOD episode
    general = next(e for e in choose_strips(load_run(run), "ood") if e.method == "general")
    assert (general.seed, general.task, general.scene, general.episode_index) == (1, "PickCube", "ood-color-purple", 0)


def test_an_empty_run_folder_still_gives_a_report(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "experiment.json").write_text(json.dumps({"preset": "small", "methods": ["sim", "general"], "seeds": [0]}))
    result = build_report(run)
    markdown = result.markdown.read_text()
    assert result.figures == []
    for text in ("cell general/seed0: not run", "cell sim/seed0: not run", "No evaluation results yet",
                 "Relative OOD improvement", "Not available: the general method", "+37.5%",
                 "Nothing to plot yet", "No in-domain frame strips", "reward check: not run (no reward_check/ folder)",
                 "world-model evaluation: not run (no wm_eval/ folder)"):
        assert text in markdown, text
    assert "<img " not in result.html.read_text()
    assert load_run(run).methods == ["general", "sim"]  # ours first, whatever order the experiment lists


def test_training_curve_reads_real_ppo_metrics(ppo_run):
    _, rows = ppo_run
    steps, success = training_curve(rows)
    expected = [(r["global_step"], r["success_once"]) for r in rows if r["success_once"] is not None]
    assert len(expected) >= 3 and list(zip(steps, success)) == pytest.approx(expected)
    # trailing mean over 2 rows with values; rows without finished episodes are skipped
    smooth = training_curve([{"global_step": 1, "success_once": 0.0}, {"global_step": 2, "success_once": None},
                             {"global_step": 3, "success_once": 1.0}, {"global_step": 4, "success_once": 0.0}], 2)
    assert smooth[0].tolist() == [1, 3, 4] and smooth[1].tolist() == pytest.approx([0.0, 0.5, 0.5])
    curve = method_curve("m", [(steps[:0], success[:0]), (smooth[0], smooth[1]),
                               (smooth[0] * 0 + [1, 2, 4], smooth[0] * 0 + [1.0, 1.0, 1.0])])
    assert curve.seeds == 2 and curve.steps.tolist() == [1, 2, 3, 4]
    assert curve.mean.tolist() == pytest.approx([0.5, 0.625, 0.75, 0.75])  # seed A interpolated at step 2
    with pytest.raises(ValueError, match="smooth_updates must be >= 1"):
        training_curve(rows, 0)


def test_reward_rank_by_hand():
    rewards = {n: {"status": "ok"} for n in ("sim", "general", "embedding")}
    check = {"rewards": {**rewards, "proxy": {"status": "skipped"}},
             "splits": {"ood": {"sim": {"auroc_mean_return": 0.9}, "general": {"auroc_mean_return": 0.7},
                                "embedding": {"auroc_mean_return": 0.7}, "proxy": {"auroc_mean_return": 0.99}}}}
    assert reward_rank(check, "ood", "auroc_mean_return") == (2, 3)  # tie with embedding shares rank 2
    assert reward_rank(check, "ood", "auroc_mean_return", exclude=("sim",)) == (1, 2)
    assert reward_rank(check, "ood", "spearman_progress") is None


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="--smooth-updates must be an int >= 1, got 0"):
        ReportConfig(tmp_path, smooth_updates=0)
    with pytest.raises(ValueError, match="does not exist"):
        build_report(tmp_path / "nowhere")
    done = subprocess.run(ROBOSCAPE + ["report", str(tmp_path / "nowhere")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "roboscape report: error: run folder" in done.stderr
    with pytest.raises(ValueError, match="table row 0 has 1 cells but the table has 2 columns"):
        Table(("a", "b"), (("x",),))
    assert "| a\\|b |" in to_markdown([Table(("a|b",), (("1",),))])


def test_the_per_task_baseline_is_described_as_such(tmp_path):
    from roboscape_r.report.run_folder import CellData, RunData
    from roboscape_r.report.sections import training_description

    cells = {("sim_per_task", 0): CellData("sim_per_task", 0, tmp_path, env={
        "env": "sim", "reward": "maniskill normalized_dense", "per_task": ["PickCube", "PushCube"]}),
             ("sim", 0): CellData("sim", 0, tmp_path, env={"env": "sim", "reward": "maniskill normalized_dense"})}
    run = RunData(tmp_path, {}, ["sim", "sim_per_task"], [0], cells, None, None, None, [])
    assert training_description(run, "sim_per_task") == ("ManiSkill, one policy per task (2)",
                                                          "maniskill normalized_dense")
    assert training_description(run, "sim") == ("ManiSkill", "maniskill normalized_dense")
