"""The figure and the printed table of `roboscape reward-check` (see `reward.check`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

COLORS = {"sim": "black", "general": "tab:red", "embedding": "tab:blue", "proxy": "tab:green"}


def min_max(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the array's own min and max; a constant array becomes all 0.5."""
    values = np.asarray(values, dtype=np.float64)
    span = values.max() - values.min()
    return np.full_like(values, 0.5) if span == 0 else (values - values.min()) / span


def write_example_figure(path: str | Path, episode: Any, rewards: dict[str, np.ndarray], kind: str,
                         thumbnails: int = 6) -> Path:
    """Plot every reward min-max normalised along one episode, under a strip of its frames.

    Args:
        path: PNG to write (atomically).
        episode: a `CheckEpisode` (frames uint8 (L+1, H, W, 3), scene, task, instruction).
        rewards: name -> float (L,) rewards r_1..r_L of this episode.
        kind: how the episode was chosen (shown in the title), e.g. "successful OOD PickCube".
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from roboscape_r.atomic import atomic_save_figure

    length = episode.length
    shown = np.unique(np.linspace(0, length, thumbnails).round().astype(int))
    fig = plt.figure(figsize=(max(8.0, 1.4 * len(shown)), 6.0))
    grid = fig.add_gridspec(2, len(shown), height_ratios=[1, 2.6])
    for column, t in enumerate(shown):
        axis = fig.add_subplot(grid[0, column])
        axis.imshow(episode.frames[t].numpy())
        axis.set_title(f"t={t}", fontsize=8)
        axis.axis("off")
    plot = fig.add_subplot(grid[1, :])
    steps = np.arange(1, length + 1)
    for name, values in rewards.items():
        plot.plot(steps, min_max(values), label=name, color=COLORS.get(name), linewidth=2.2 if name == "general" else 1.4)
    plot.set_xlabel("step t (frame after the t-th action)")
    plot.set_ylabel("reward, min-max normalised")
    plot.set_xlim(1, max(length, 2))
    plot.legend(loc="upper left", fontsize=8)
    plot.grid(alpha=0.3)
    fig.suptitle(f"{kind} episode: {episode.task}, scene {episode.scene}\n\"{episode.instruction}\"", fontsize=10)
    fig.tight_layout()
    return atomic_save_figure(fig, path)


def format_reward_check(result: dict[str, Any]) -> str:
    """A table of `run_reward_check`'s result: one row per split, Spearman and AUROC per reward,
    followed by the rewards that were skipped and why."""
    names = [name for name, entry in result["rewards"].items() if entry["status"] == "ok"]
    header = f"{'split':<22}{'episodes':>9}" + "".join(f"{name + ' rho/auroc':>22}" for name in names)
    lines = ["Spearman with progress on successful episodes / AUROC of the mean reward (success vs failure)",
             header, "-" * len(header)]
    for split, per_reward in result["splits"].items():
        first = per_reward[names[0]]
        row = f"{split:<22}{first['episodes']:>9}"
        for name in names:
            entry = per_reward[name]
            row += f"{_number(entry['spearman_progress']) + ' / ' + _number(entry['auroc_mean_return']):>22}"
        lines.append(row)
    components = result.get("components") or {}
    for split, per_term in components.items():
        lines.append(f"{split:<22}{'terms':>9}" + "".join(
            f"{name + ' ' + _number(entry['spearman_progress']) + ' / ' + _number(entry['auroc_mean_return']):>32}"
            for name, entry in per_term.items()))
    for name, entry in result["rewards"].items():
        if entry["status"] != "ok":
            lines.append(f"skipped {name}: {entry['reason']}")
    for key, note in result.get("notes", {}).items():
        lines.append(f"note ({key}): {note}")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
