"""Success rates of the evaluated methods, pooled over seeds and per seed, and the general
reward's relative OOD improvement over each baseline, and a paired comparison on the episodes
that two methods share.

Pooling: the episodes of every seed of a method are put in one group and summarised with
:func:`roboscape_r.eval.metrics.summarize` (rate and 95% Wilson interval). The interval treats
the pooled episodes as independent draws, so it leaves out the variation between training seeds;
the per-seed spread (mean and sample standard deviation of the per-seed rates) shows that part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from roboscape_r.eval.metrics import group_by, summarize
from roboscape_r.report.run_folder import OURS, RunData

METRICS = ("success_once", "success_at_end")
ALL_TASKS = "all tasks"
"""The task label of rows pooled over tasks."""


def split_order(splits: set[str]) -> list[str]:
    """in-domain, ood, then any other split (e.g. user-registered scenes) sorted."""
    known = [s for s in ("in-domain", "ood") if s in splits]
    return known + sorted(splits - set(known))


def pooled_rows(run: RunData) -> list[dict]:
    """Per method, task (and "all tasks") and split: summarize() of the episodes of all seeds.

    Returns:
        Rows ``{method, task, split, seeds, **summarize(group)}``, where ``seeds`` is the number of
        seeds that contributed episodes; methods in run order, then tasks, then splits.
    """
    rows = []
    for method in run.methods:
        episodes = run.episodes_of(method)
        if not episodes:
            continue
        for split in split_order({e["split"] for e in episodes}):
            in_split = [e for e in episodes if e["split"] == split]
            tasks = group_by(in_split, ("task",))
            groups = [(task, group) for (task,), group in tasks.items()]
            if len(tasks) > 1:
                groups.append((ALL_TASKS, in_split))
            for task, group in groups:
                rows.append({"method": method, "task": task, "split": split,
                             "seeds": len({e["train_seed"] for e in group}), **summarize(group)})
    return rows


def per_seed_spread(run: RunData) -> list[dict]:
    """Per method, task (and "all tasks") and split: the mean and sample standard deviation over
    seeds of each seed's own success rates.

    Returns:
        Rows ``{method, task, split, seeds, success_once: {mean, std}, success_at_end: {...}}``;
        ``std`` is None with a single seed.
    """
    rows = []
    for pooled in pooled_rows(run):
        per_seed: dict[int, list[dict]] = {}
        for episode in run.episodes_of(pooled["method"]):
            if episode["split"] == pooled["split"] and pooled["task"] in (ALL_TASKS, episode["task"]):
                per_seed.setdefault(episode["train_seed"], []).append(episode)
        row = {key: pooled[key] for key in ("method", "task", "split")}
        row["seeds"] = len(per_seed)
        for metric in METRICS:
            rates = np.array([np.mean([bool(e[metric]) for e in group]) for group in per_seed.values()])
            row[metric] = {"mean": float(rates.mean()),
                           "std": float(rates.std(ddof=1)) if len(rates) > 1 else None}
        rows.append(row)
    return rows


def factor_rows(run: RunData) -> list[dict]:
    """Per method and OOD factor: summarize() of the OOD episodes of all tasks and seeds.

    Returns:
        Rows ``{method, factor, tasks, seeds, **summarize(group)}``, factors in first-seen order.
    """
    rows = []
    for method in run.methods:
        ood = [e for e in run.episodes_of(method) if e["split"] == "ood"]
        for (factor,), group in group_by(ood, ("factor",)).items():
            rows.append({"method": method, "factor": factor, "tasks": sorted({e["task"] for e in group}),
                         "seeds": len({e["train_seed"] for e in group}), **summarize(group)})
    return rows


@dataclass(frozen=True)
class Improvement:
    """The general reward against one baseline on OOD success_once (see :func:`ood_improvement`)."""

    baseline: str
    tasks: tuple[str, ...]
    """Tasks both methods were evaluated on in OOD scenes (the average runs over these)."""
    ours_rate: float
    """Mean over `tasks` of our pooled OOD success_once rate (0..1)."""
    baseline_rate: float
    absolute_points: float
    """100 * (ours_rate - baseline_rate): percentage points."""
    relative_percent: float | None
    """100 * (ours_rate - baseline_rate) / baseline_rate; None when baseline_rate is 0."""
    seeds: tuple[int, ...] = ()
    """Training seeds whose OOD episodes were counted, for both methods (:func:`ood_improvement_on_shared_seeds`)."""


IMPROVEMENT_DEFINITION = (
    "For a method m and task t, SR(m, t) is the pooled OOD success_once rate: successful episodes over all "
    "episodes of t in every OOD scene and every counted training seed of m. The seeds counted for a baseline b "
    "and for general are those both were evaluated on in OOD scenes (listed; a seed only one of them has is left "
    "out, so that an unfinished run compares like with like). T is the set of tasks evaluated "
    "in OOD scenes for both general and b, and SR(m) = mean over t in T of SR(m, t). Absolute improvement = "
    "100 * (SR(general) - SR(b)) percentage points; relative improvement = 100 * (SR(general) - SR(b)) / SR(b) "
    "percent, n/a when SR(b) = 0. The averages are the mean absolute improvement over all baselines and the mean "
    "relative improvement over the baselines where it is defined."
)


def ood_improvement(rates: dict[str, dict[str, float]], ours: str = OURS) -> tuple[list[Improvement], dict]:
    """Our OOD improvement over every other method with OOD results (see IMPROVEMENT_DEFINITION).

    Args:
        rates: {method: {task: OOD success_once rate in [0, 1]}}.
        ours: the method compared against the others.

    Returns:
        (one Improvement per baseline in `rates` order, averages ``{"absolute_points": float | None,
        "relative_percent": float | None, "relative_defined": int, "baselines": int}``). Empty list and
        None averages when `ours` has no OOD results.

    Raises:
        ValueError: a rate outside [0, 1].
    """
    for method, per_task in rates.items():
        for task, rate in per_task.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"OOD success rate of {method} on {task} is {rate}; rates must be in [0, 1]")
    improvements = []
    for baseline, per_task in rates.items():
        if baseline == ours or ours not in rates:
            continue
        tasks = tuple(t for t in rates[ours] if t in per_task)
        if not tasks:
            continue
        ours_rate = float(np.mean([rates[ours][t] for t in tasks]))
        base_rate = float(np.mean([per_task[t] for t in tasks]))
        relative = None if base_rate == 0 else 100.0 * (ours_rate - base_rate) / base_rate
        improvements.append(Improvement(baseline, tasks, ours_rate, base_rate, 100.0 * (ours_rate - base_rate),
                                        relative))
    return improvements, _averages(improvements)


def ood_improvement_on_shared_seeds(run: RunData, ours: str = OURS) -> tuple[list[Improvement], dict]:
    """:func:`ood_improvement` of `ours` over each other method of `run`, each pair pooled over the
    training seeds both were evaluated on in OOD scenes (`Improvement.seeds`).

    Pooling every seed of each method instead would compare, part-way through a run, one seed of
    ours with three seeds of a baseline; the seeds differ widely, so that is not like with like.

    Returns:
        As :func:`ood_improvement`; a baseline sharing no OOD seed with `ours` is left out.
    """
    def ood_seeds(method: str) -> set[int]:
        return {e["train_seed"] for e in run.episodes_of(method) if e["split"] == "ood"}

    def task_rates(method: str, seeds: set[int]) -> dict[str, float]:
        ood = [e for e in run.episodes_of(method) if e["split"] == "ood" and e["train_seed"] in seeds]
        return {task: float(np.mean([bool(e["success_once"]) for e in group]))
                for (task,), group in group_by(ood, ("task",)).items()}

    ours_seeds = ood_seeds(ours) if ours in run.methods else set()
    improvements = []
    for baseline in run.methods:
        shared = ours_seeds & ood_seeds(baseline) if baseline != ours else set()
        if not shared:
            continue
        found, _ = ood_improvement({ours: task_rates(ours, shared), baseline: task_rates(baseline, shared)}, ours)
        improvements += [replace(i, seeds=tuple(sorted(shared))) for i in found]
    return improvements, _averages(improvements)


def _averages(improvements: list[Improvement]) -> dict:
    defined = [i.relative_percent for i in improvements if i.relative_percent is not None]
    return {
        "absolute_points": float(np.mean([i.absolute_points for i in improvements])) if improvements else None,
        "relative_percent": float(np.mean(defined)) if defined else None,
        "relative_defined": len(defined), "baselines": len(improvements),
    }


def episodes_by_key(run: RunData, method: str) -> dict[tuple, dict]:
    """A method's evaluation episodes keyed (training seed, task, scene, episode seed): the key on
    which two methods' episodes of one training seed are the same episode."""
    return {(e["train_seed"], e["task"], e["scene"], e["seed"]): e for e in run.episodes_of(method)}


BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_DEFINITION = (
    "95% intervals: a two-level bootstrap over the OOD episodes both methods were evaluated on ({resamples:,} "
    "resamples, fixed seed). Each resample draws the shared training seeds with replacement, then within each "
    "drawn seed and task the shared episodes with replacement, the same draws for general and the baseline (and "
    "for every baseline that shares the same seeds and episodes, so the average gets an interval too). The "
    "interval runs from the 2.5th to the 97.5th percentile of the improvement over the resamples; the relative "
    "one over the resamples where SR(b) > 0. With few seeds the seed level dominates and the intervals are wide: "
    "they say how far the numbers could move with other seeds and episodes of the same settings."
)


@dataclass(frozen=True)
class ImprovementInterval:
    """A bootstrap interval of an :class:`Improvement` (or of the average), see BOOTSTRAP_DEFINITION."""

    absolute_points: tuple[float, float]
    relative_percent: tuple[float, float] | None
    """None when no resample has a baseline rate above 0."""
    relative_defined: int
    """Resamples where the relative improvement is defined (baseline rate > 0)."""
    resamples: int


def _paired_ood_cells(run: RunData, ours: str, baseline: str) -> tuple[list[int], list[str], dict]:
    """The OOD episodes both methods were evaluated on: (seeds, tasks present for every seed,
    {(seed, task): bool array (n, 2) of [ours, baseline] success_once})."""
    mine, theirs = episodes_by_key(run, ours), episodes_by_key(run, baseline)
    cells: dict[tuple[int, str], list] = {}
    for key in sorted(k for k in mine if k in theirs and mine[k]["split"] == "ood"):
        cells.setdefault((key[0], key[1]), []).append((bool(mine[key]["success_once"]),
                                                        bool(theirs[key]["success_once"])))
    seeds = sorted({seed for seed, _ in cells})
    tasks = sorted(t for t in {task for _, task in cells} if all((s, t) in cells for s in seeds))
    return seeds, tasks, {key: np.array(pairs, dtype=bool) for key, pairs in cells.items()}


def _bootstrap_rates(seeds: list[int], tasks: list[str], cells: dict, resamples: int, seed: int) -> np.ndarray:
    """(resamples, 2) SR(ours), SR(baseline) of each two-level resample (see BOOTSTRAP_DEFINITION).

    The generator is seeded alike for every baseline, so baselines with the same seeds and episode
    counts get the same draws: their per-resample improvements can be averaged."""
    rng = np.random.default_rng(seed)
    seed_draw = rng.integers(0, len(seeds), (resamples, len(seeds)))
    sums = np.zeros((len(seeds), len(tasks), resamples, 2))
    counts = np.zeros((len(seeds), len(tasks)))
    for i, s in enumerate(seeds):
        for j, t in enumerate(tasks):
            pairs = cells[s, t]
            sums[i, j] = pairs[rng.integers(0, len(pairs), (resamples, len(pairs)))].sum(axis=1)
            counts[i, j] = len(pairs)
    picked = sums[seed_draw, :, np.arange(resamples)[:, None]]  # (resamples, drawn seeds, tasks, 2)
    rates = picked.sum(axis=1) / counts[seed_draw].sum(axis=1)[..., None]
    return rates.mean(axis=1)


def _interval(absolute: np.ndarray, relative: np.ndarray) -> ImprovementInterval:
    defined = relative[~np.isnan(relative)]
    rel = tuple(float(v) for v in np.percentile(defined, [2.5, 97.5])) if defined.size else None
    return ImprovementInterval(tuple(float(v) for v in np.percentile(absolute, [2.5, 97.5])), rel,
                               int(defined.size), int(relative.size))


def ood_improvement_intervals(run: RunData, ours: str = OURS, resamples: int = BOOTSTRAP_RESAMPLES,
                              seed: int = 0) -> tuple[dict[str, ImprovementInterval], ImprovementInterval | None]:
    """Bootstrap intervals of the general reward's OOD improvement over each baseline and of the
    average over baselines (BOOTSTRAP_DEFINITION), on the OOD episodes both were evaluated on.

    Returns:
        ({baseline: interval}, interval of the average or None). The average's interval is given
        only when every baseline has the same seeds and episode counts (so the draws are joint).

    Raises:
        ValueError: `resamples` < 1.
    """
    if not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be an int >= 1, got {resamples!r}")
    per_baseline: dict[str, ImprovementInterval] = {}
    draws, shapes = [], set()
    for baseline in run.methods if ours in run.methods else []:
        if baseline == ours:
            continue
        seeds, tasks, cells = _paired_ood_cells(run, ours, baseline)
        if not seeds or not tasks:
            continue
        rates = _bootstrap_rates(seeds, tasks, cells, resamples, seed)
        absolute = 100.0 * (rates[:, 0] - rates[:, 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(rates[:, 1] > 0, 100.0 * (rates[:, 0] - rates[:, 1]) / rates[:, 1], np.nan)
        per_baseline[baseline] = _interval(absolute, relative)
        draws.append((absolute, relative))
        shapes.add((tuple(seeds), tuple(tasks), tuple(len(cells[s, t]) for s in seeds for t in tasks)))
    if not draws or len(shapes) != 1:
        return per_baseline, None
    absolute = np.mean([a for a, _ in draws], axis=0)
    relative = np.vstack([r for _, r in draws])
    defined = ~np.isnan(relative)
    average_relative = np.where(defined.any(axis=0),
                                np.nansum(relative, axis=0) / np.maximum(defined.sum(axis=0), 1), np.nan)
    return per_baseline, _interval(absolute, average_relative)


PAIRED_DEFINITION = (
    "Every cell of a training seed is evaluated on the same episodes (same scenes and episode seeds), so two "
    "methods can be compared episode by episode. For the general reward against a baseline, per split, over "
    "the episodes both were evaluated on (every task and seed): 'general only' counts episodes where general "
    "succeeded (success_once) and the baseline did not, 'baseline only' the reverse. The p-value is the exact "
    "two-sided McNemar test on those two counts (the episodes both or neither solved carry no information about "
    "the difference). It is far more sensitive than comparing two pooled intervals, but it too treats episodes "
    "as independent and leaves out the variation between training seeds."
)


@dataclass(frozen=True)
class PairedComparison:
    """The general reward against one baseline on the episodes both were evaluated on (one split)."""

    baseline: str
    split: str
    episodes: int
    """Episodes evaluated for both methods (matched on training seed, task, scene and episode seed)."""
    ours_only: int
    """Episodes where ours succeeded (success_once) and the baseline did not."""
    baseline_only: int
    p_value: float
    """Exact two-sided McNemar p-value (1.0 when the methods never differ)."""


def mcnemar_exact_p(ours_only: int, baseline_only: int) -> float:
    """Two-sided exact McNemar p-value: P(a Binomial(n, 1/2) is at least as far from n/2 as observed),
    n = ours_only + baseline_only. Raises ValueError on a negative count."""
    if ours_only < 0 or baseline_only < 0:
        raise ValueError(f"discordant counts must be >= 0, got {ours_only} and {baseline_only}")
    n, low = ours_only + baseline_only, min(ours_only, baseline_only)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(low + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def paired_comparisons(run: RunData, ours: str = OURS) -> list[PairedComparison]:
    """`ours` against every other evaluated method, per split, on their shared episodes.

    Returns:
        One PairedComparison per (baseline, split) with at least one shared episode, baselines in run
        order; empty when `ours` has no evaluation results.
    """
    mine = episodes_by_key(run, ours)
    comparisons = []
    for baseline in run.methods if mine else []:
        if baseline == ours:
            continue
        theirs = episodes_by_key(run, baseline)
        shared = [key for key in mine if key in theirs]
        for split in split_order({mine[key]["split"] for key in shared}):
            pairs = [(bool(mine[k]["success_once"]), bool(theirs[k]["success_once"]))
                     for k in shared if mine[k]["split"] == split]
            ours_only = sum(a and not b for a, b in pairs)
            baseline_only = sum(b and not a for a, b in pairs)
            comparisons.append(PairedComparison(baseline, split, len(pairs), ours_only, baseline_only,
                                                mcnemar_exact_p(ours_only, baseline_only)))
    return comparisons
