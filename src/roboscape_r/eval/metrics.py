"""Evaluation metrics: success rates with Wilson intervals, aggregated over cells, splits and factors.

An episode record (a dict, one per evaluated episode) holds at least ``task``, ``scene``,
``env_id``, ``split``, ``factor``, ``success_once``, ``success_at_end``, ``episode_length`` and
``return``. :func:`aggregate` groups records several ways and summarises each group with
:func:`summarize`. Pooling treats the episodes of a group as independent draws, which they are
(distinct seeds, deterministic policy).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

Z_95 = 1.959963984540054
"""Two-sided 95 % standard normal quantile."""

GROUPINGS: dict[str, tuple[str, ...]] = {
    "cells": ("task", "scene"),
    "task_split": ("task", "split"),
    "split": ("split",),
    "factor": ("split", "factor"),
    "task_factor": ("task", "split", "factor"),
}
"""Result tables and the episode fields each groups by."""

METRIC_DEFINITIONS = {
    "success_once": "the task's success flag was true at any step of the episode",
    "success_at_end": "the task's success flag was true at the last step (the time limit)",
    "episode_length": "steps until the first success, or the full horizon when the episode never succeeds "
                      "(the length the episode would have had with ManiSkill's terminate-on-success)",
    "return": "sum of ManiSkill's normalized dense reward over the full horizon (no early termination)",
    "ci95": "95% Wilson score interval of the success rate",
}


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion.

    Args:
        successes: number of successes, in ``[0, trials]``.
        trials: number of trials, > 0.
        z: standard normal quantile (1.96 for a 95 % interval).

    Returns:
        ``(low, high)`` with ``0 <= low <= successes/trials <= high <= 1``.

    Raises:
        ValueError: ``trials <= 0`` or ``successes`` outside ``[0, trials]``.
    """
    if trials <= 0:
        raise ValueError(f"trials must be > 0, got {trials}")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in [0, {trials}], got {successes}")
    p = successes / trials
    z2 = z * z
    denom = 1.0 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denom
    # At p = 0 (p = 1) the lower (upper) bound is exactly 0 (1) analytically; floats leave ~1e-17.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def _rate(flags: Sequence[bool]) -> dict:
    count = int(sum(bool(f) for f in flags))
    low, high = wilson_interval(count, len(flags))
    return {"rate": count / len(flags), "count": count, "ci95": [low, high]}


def summarize(episodes: Sequence[dict]) -> dict:
    """Summary of a non-empty group of episode records.

    Returns:
        ``{"episodes": n, "success_once": {rate, count, ci95}, "success_at_end": {...},
        "mean_episode_length", "mean_return", "std_return"}``.

    Raises:
        ValueError: an empty group.
    """
    if not episodes:
        raise ValueError("cannot summarize an empty group of episodes")
    returns = np.asarray([e["return"] for e in episodes], dtype=np.float64)
    lengths = np.asarray([e["episode_length"] for e in episodes], dtype=np.float64)
    return {
        "episodes": len(episodes),
        "success_once": _rate([e["success_once"] for e in episodes]),
        "success_at_end": _rate([e["success_at_end"] for e in episodes]),
        "mean_episode_length": float(lengths.mean()),
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std(ddof=1)) if len(returns) > 1 else 0.0,
    }


def group_by(episodes: Iterable[dict], keys: Sequence[str]) -> dict[tuple, list[dict]]:
    """Episode records grouped by the values of ``keys``, groups in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for episode in episodes:
        groups.setdefault(tuple(episode[k] for k in keys), []).append(episode)
    return groups


def aggregate(episodes: Sequence[dict]) -> dict[str, list[dict]]:
    """Summaries of ``episodes`` for every grouping of :data:`GROUPINGS`.

    Returns:
        ``{grouping: [ {**group key fields, **summarize(group)} ]}``; the ``cells`` rows also carry
        the cell's ``env_id``, ``split``, ``factor`` and ``severity``.

    Raises:
        ValueError: no episodes, or a record missing a required field.
    """
    if not episodes:
        raise ValueError("no episodes to aggregate")
    required = ("task", "scene", "env_id", "split", "factor", "success_once", "success_at_end",
                "episode_length", "return")
    for i, episode in enumerate(episodes):
        missing = [k for k in required if k not in episode]
        if missing:
            raise ValueError(f"episode record {i} lacks {missing}; records need {list(required)}")
    tables: dict[str, list[dict]] = {}
    for name, keys in GROUPINGS.items():
        rows = []
        for key, group in group_by(episodes, keys).items():
            row = dict(zip(keys, key))
            if name == "cells":
                first = group[0]
                row.update(env_id=first["env_id"], split=first["split"], factor=first["factor"],
                           severity=first.get("severity", 0))
            rows.append({**row, **summarize(group)})
        tables[name] = rows
    return tables


def format_table(tables: dict[str, list[dict]], grouping: str = "task_split") -> str:
    """A plain-text table of one grouping: success rates with their intervals, length and return."""
    keys = GROUPINGS[grouping]
    header = "".join(f"{k:<22}" for k in keys) + f"{'n':>5}  {'success_once':<22}{'success_at_end':<22}{'len':>7}{'return':>9}"
    lines = [header]
    for row in tables[grouping]:
        def cell(metric: str) -> str:
            m = row[metric]
            return f"{m['rate']:.2f} [{m['ci95'][0]:.2f}, {m['ci95'][1]:.2f}]"

        lines.append("".join(f"{str(row[k]):<22}" for k in keys)
                     + f"{row['episodes']:>5}  {cell('success_once'):<22}{cell('success_at_end'):<22}"
                     + f"{row['mean_episode_length']:>7.1f}{row['mean_return']:>9.2f}")
    return "\n".join(lines)
