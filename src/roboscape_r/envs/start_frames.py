"""Start frames of world-model episodes: the first frame of every dataset episode of chosen tasks and scenes.

The world model cannot invent a scene from nothing: each imagined episode starts from a real
first frame (a ManiSkill reset recorded by `roboscape collect`) together with that episode's
task and language instruction. `load_start_frames` reads only frame 0 of each matching
episode, so a dataset of hundreds of episodes loads in about a second and takes
12 KiB per 64x64 start.

    starts = load_start_frames("data/train", tasks=["PickCube", "PushCube"], scenes=["in-domain"])
    indices = starts.sample(num_envs, rng)          # task-balanced, with replacement
    starts.frames[indices]                          # uint8 (N, H, W, 3)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from roboscape_r.data.format import DatasetError, iter_episode_meta, read_manifest
from roboscape_r.data.scenes import check_tasks, resolve_scenes


@dataclass(frozen=True)
class StartFrames:
    """E start frames with their task, scene and instruction, sorted by task.

    Sorting by task lets `sample` draw task-balanced indices with array arithmetic alone.
    """

    frames: torch.Tensor
    """uint8 (E, H, W, 3): frame 0 of each episode."""
    tasks: tuple[str, ...]
    """Task of each start frame."""
    scenes: tuple[str, ...]
    """Scene name of each start frame."""
    instructions: tuple[str, ...]
    """Language instruction recorded with each episode."""
    episode_indices: tuple[int, ...]
    """Dataset episode index of each start frame (a stable key across runs)."""
    shards: tuple[str, ...]
    """Shard file (relative to the dataset folder) holding each start frame's episode."""
    task_names: tuple[str, ...]
    """The tasks present, in the order of their blocks in `frames`."""
    task_offsets: np.ndarray
    """int64 (num_tasks,): index of each task's first start frame."""
    task_counts: np.ndarray
    """int64 (num_tasks,): number of start frames of each task."""

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the frames."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """Draw `count` start indices, int64 (count,): a task uniformly, then one of its episodes.

        Balancing over tasks (not episodes) keeps every task in each batch even when the
        dataset holds more episodes of one task.
        """
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        task = rng.integers(0, len(self.task_names), size=count)  # (count,)
        within = np.floor(rng.random(count) * self.task_counts[task]).astype(np.int64)
        return self.task_offsets[task] + within

    def summary(self) -> dict[str, int]:
        """Start frames per "task/scene", for run configs."""
        return dict(sorted(Counter(f"{t}/{s}" for t, s in zip(self.tasks, self.scenes)).items()))


def load_start_frames(root: str | Path, tasks: Sequence[str], scenes: Sequence[str],
                      successful_only: bool = False) -> StartFrames:
    """Read frame 0 of every episode of `tasks` recorded in `scenes`.

    Args:
        root: dataset folder written by `roboscape collect` (holds manifest.json).
        tasks: task names (see `roboscape_r.data.scenes.TASKS`); each must have episodes.
        scenes: scene names, splits ("in-domain", "ood") or registered env ids; an episode
            matches when its scene or its env id is listed.
        successful_only: keep only episodes that succeeded at some step (`success_once`).

    Returns:
        StartFrames sorted by task (in the order of `tasks`), then by episode index.

    Raises:
        DatasetError: missing/corrupt manifest or shard, or frames of different sizes.
        ValueError: unknown task or scene, or a requested task with no episode in these scenes
            (the message lists what the dataset holds).
    """
    root = Path(root)
    tasks = check_tasks(list(tasks))
    scene_names = set(resolve_scenes(list(scenes)))
    manifest = read_manifest(root)
    rows = [
        (shard, meta)
        for shard, meta in iter_episode_meta(manifest)
        if meta["task"] in tasks and (meta["scene"] in scene_names or meta["env_id"] in scene_names)
        and (not successful_only or meta.get("success_once"))
    ]
    found = Counter(meta["task"] for _, meta in rows)
    missing = [task for task in tasks if found[task] == 0]
    if missing:
        held = Counter(f"{meta['task']}/{meta['scene']}" for _, meta in iter_episode_meta(manifest))
        raise ValueError(
            f"dataset {root} has no {'successful ' if successful_only else ''}episodes of task(s) {missing} in "
            f"scenes {sorted(scene_names)}; it holds "
            f"{dict(sorted(held.items())) or 'no episodes'}. Pass only tasks it has, or collect them with "
            "`roboscape collect`"
        )
    rows.sort(key=lambda row: (tasks.index(row[1]["task"]), row[1]["episode_index"]))
    frames = _read_first_frames(root, rows)

    counts = np.array([found[task] for task in tasks], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return StartFrames(
        frames=frames,
        tasks=tuple(meta["task"] for _, meta in rows),
        scenes=tuple(meta["scene"] for _, meta in rows),
        instructions=tuple(meta["instruction"] for _, meta in rows),
        episode_indices=tuple(int(meta["episode_index"]) for _, meta in rows),
        shards=tuple(shard for shard, _ in rows),
        task_names=tuple(tasks),
        task_offsets=offsets,
        task_counts=counts,
    )


def _read_first_frames(root: Path, rows: list[tuple[str, dict]]) -> torch.Tensor:
    """uint8 (E, H, W, 3) frame 0 of each (shard, meta) row, opening each shard once."""
    by_shard: dict[str, list[int]] = {}
    for position, (shard, _) in enumerate(rows):
        by_shard.setdefault(shard, []).append(position)
    frames: list[np.ndarray | None] = [None] * len(rows)
    for shard, positions in by_shard.items():
        path = root / shard
        try:
            with h5py.File(path, "r") as handle:
                for position in positions:
                    frames[position] = handle[f"traj_{rows[position][1]['episode_index']}/obs/rgb"][0]
        except (OSError, KeyError) as error:
            raise DatasetError(
                f"shard {path} is missing, corrupt or truncated ({error}); run `roboscape data check {root}` "
                "and re-collect it"
            ) from error
    shapes = Counter(frame.shape for frame in frames)
    if len(shapes) != 1:
        raise DatasetError(f"dataset {root} mixes frame sizes {dict(shapes)}; start frames must share one size")
    stacked = np.stack(frames)
    if stacked.dtype != np.uint8 or stacked.ndim != 4 or stacked.shape[-1] != 3:
        raise DatasetError(f"dataset {root} frames must be uint8 (H, W, 3), got {stacked.dtype} {stacked.shape[1:]}")
    return torch.from_numpy(stacked)
