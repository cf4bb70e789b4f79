"""Fig. 2: success rate against training env steps, one curve per method (mean over seeds with a
band), read from each cell's train/metrics.jsonl, with the final real ManiSkill in-domain
success of every method as a marker.

The curves show the success flag of the TRAINING env: for the world-model methods that is the
world model's own predicted success, not ManiSkill's; only the markers are measured in ManiSkill.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roboscape_r.report.run_folder import RunData

SUCCESS_KEY = "success_once"
"""Column of a PPO metrics row: mean success_once of the training episodes that ended in the update."""
STEP_KEY = "global_step"
"""Column of a PPO metrics row: env steps so far (BC rows have `step` instead and give no curve)."""
COLORS = {"general": "tab:red", "embedding": "tab:blue", "proxy": "tab:green", "sim": "black", "sim_per_task": "dimgray",
          "bc": "tab:purple"}
EXTRA_COLORS = ("tab:orange", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
"""Colours of methods not in COLORS, in order of appearance."""


def training_curve(rows: list[dict], smooth_updates: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(env steps, training success) of one run's metrics rows, the success averaged over a trailing
    window of `smooth_updates` rows that had finished episodes.

    Returns:
        Two float arrays of one length (empty when no row has both columns).

    Raises:
        ValueError: smooth_updates < 1.
    """
    if smooth_updates < 1:
        raise ValueError(f"smooth_updates must be >= 1, got {smooth_updates}")
    points = [(float(r[STEP_KEY]), float(r[SUCCESS_KEY])) for r in rows
              if r.get(STEP_KEY) is not None and r.get(SUCCESS_KEY) is not None]
    if not points:
        return np.zeros(0), np.zeros(0)
    steps, success = (np.array(column) for column in zip(*sorted(points)))
    cumulative = np.concatenate([[0.0], np.cumsum(success)])
    index = np.arange(1, len(success) + 1)
    start = np.maximum(index - smooth_updates, 0)
    return steps, (cumulative[index] - cumulative[start]) / (index - start)


@dataclass(frozen=True)
class MethodCurve:
    """The seeds of one method on a common step grid."""

    method: str
    steps: np.ndarray
    """(K,) env steps where every seed has data (between the latest first and the earliest last step)."""
    mean: np.ndarray
    std: np.ndarray
    """(K,) standard deviation over seeds (0 with one seed)."""
    seeds: int


def method_curve(method: str, curves: list[tuple[np.ndarray, np.ndarray]]) -> MethodCurve | None:
    """Mean and std over seeds of per-seed curves, linearly interpolated onto the union of their steps
    inside the range every seed covers; None when no seed has a curve."""
    curves = [(s, v) for s, v in curves if len(s)]
    if not curves:
        return None
    low, high = max(s[0] for s, _ in curves), min(s[-1] for s, _ in curves)
    grid = np.unique(np.concatenate([s for s, _ in curves]))
    grid = grid[(grid >= low) & (grid <= high)]
    if grid.size == 0:  # seeds whose step ranges do not overlap: fall back to the longest one
        steps, values = max(curves, key=lambda c: len(c[0]))
        return MethodCurve(method, steps, values, np.zeros_like(values), 1)
    table = np.stack([np.interp(grid, s, v) for s, v in curves])  # (seeds, K)
    return MethodCurve(method, grid, table.mean(axis=0), table.std(axis=0), len(curves))


def write_learning_curves(path: str | Path, run: RunData, final_in_domain: dict[str, dict],
                          smooth_updates: int = 5) -> Path | None:
    """Draw Fig. 2 to `path` (PNG, atomically).

    Args:
        run: the run folder's data (train metrics and env.json per cell).
        final_in_domain: {method: summarize() row of its pooled in-domain ManiSkill episodes}.
        smooth_updates: trailing window (in updates) of the training-success average.

    Returns:
        The path, or None when there is nothing to draw (no curve and no evaluation).
    """
    curves, kinds, final_steps = {}, {}, {}
    for method in run.methods:
        cells = run.cells_of(method)
        curve = method_curve(method, [training_curve(c.train_metrics, smooth_updates) for c in cells])
        if curve is not None:
            curves[method] = curve
        kinds[method] = next((c.training_env for c in cells if c.training_env), None)
        last_steps = [c.train_metrics[-1].get(STEP_KEY) for c in cells if c.train_metrics]
        last_steps = [s for s in last_steps if s is not None]
        if last_steps:
            final_steps[method] = float(np.mean(last_steps))
    if not curves and not final_in_domain:
        return None

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from roboscape_r.atomic import atomic_save_figure

    fig, axis = plt.subplots(figsize=(9.0, 5.2))
    x_max = max([c.steps[-1] for c in curves.values()] + list(final_steps.values()) + [1.0])
    extras = [m for m in run.methods if m not in COLORS]
    palette = dict(COLORS, **{m: EXTRA_COLORS[i % len(EXTRA_COLORS)] for i, m in enumerate(extras)})
    marked = [m for m in run.methods if m in final_in_domain and m in final_steps]
    for method in run.methods:
        color = palette[method]
        curve = curves.get(method)
        if curve is not None:
            where = {"wm": "WM-predicted", "sim": "ManiSkill"}.get(kinds[method], "training env")
            axis.plot(curve.steps, curve.mean, color=color, linestyle="--" if kinds[method] == "wm" else "-",
                      label=f"{method}: training success ({where}, {curve.seeds} seed{'s' * (curve.seeds != 1)})")
            low_band, high_band = np.clip(curve.mean - curve.std, 0, 1), np.clip(curve.mean + curve.std, 0, 1)
            axis.fill_between(curve.steps, low_band, high_band, color=color, alpha=0.15, linewidth=0)
        final = final_in_domain.get(method)
        if final is None:
            continue
        rate, (low, high) = final["success_once"]["rate"], final["success_once"]["ci95"]
        if method in final_steps:
            # Methods with the same budget end at the same step: spread their stars a little apart.
            offset = (marked.index(method) - (len(marked) - 1) / 2) * 0.012 * x_max
            axis.errorbar([final_steps[method] + offset], [rate], yerr=[[rate - low], [high - rate]], color=color,
                          marker="*", markersize=13, capsize=4, linestyle="none",
                          label=f"{method}: ManiSkill in-domain success_once (final)")
        else:  # trained without env steps (behaviour cloning): a level line over the whole axis
            axis.axhline(rate, color=color, linestyle=":", linewidth=1.6,
                         label=f"{method}: ManiSkill in-domain success_once (no env steps)")
            axis.axhspan(low, high, color=color, alpha=0.08, linewidth=0)
    axis.set_xlim(0, x_max * 1.06)
    axis.set_ylim(-0.02, 1.02)
    axis.set_xlabel("training env steps")
    axis.set_ylabel("success rate (success_once)")
    axis.set_title("Lines: training-env success (dashed: the world model's predicted success, not ManiSkill's),\n"
                   "mean over seeds +-1 std. Stars: final real ManiSkill in-domain success, 95% Wilson interval",
                   fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return atomic_save_figure(fig, path)
