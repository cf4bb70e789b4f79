"""Shared test fixtures: a synthetic dataset folder written with the real format code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from roboscape_r.cpu import use_lavapipe

use_lavapipe()


def make_episode(index: int, length: int, size: int = 16, task: str = "PickCube", scene: str = "id-default-wood",
                 source: str = "expert") -> dict:
    """A fake episode whose frames encode (episode, step) so tests can check what they read."""
    frames = np.zeros((length + 1, size, size, 3), np.uint8)
    frames[..., 0] = index
    frames[..., 1] = np.arange(length + 1, dtype=np.uint8)[:, None, None]
    actions = np.tile(np.arange(length, dtype=np.float32)[:, None], (1, 7)) + index * 1000
    success = np.zeros(length, bool)
    success[-1] = index % 2 == 0
    return dict(frames=frames, actions=actions, rewards=np.linspace(0, 1, length, dtype=np.float32),
                success=success, terminated=success.copy(), truncated=~success & (np.arange(length) == length - 1),
                episode_index=index, task=task, scene=scene, env_id=f"RoboScapeR-{task}-{scene}-v1", seed=index,
                control_mode="pd_ee_delta_pose", instruction=f"do {task} number {index}", source=source)


def write_fake_dataset(root: Path, lengths: list[int], per_shard: int = 2, size: int = 16) -> Path:
    from roboscape_r.data.format import MANIFEST_NAME, atomic_write_json, new_manifest, write_shard

    root.mkdir(parents=True, exist_ok=True)
    manifest = new_manifest({"image_size": size, "seed": 0})
    tasks = ["PickCube", "PushCube"]
    episodes = [make_episode(i, n, size, task=tasks[i % 2]) for i, n in enumerate(lengths)]
    for k in range(0, len(episodes), per_shard):
        name = f"shard_{k // per_shard:05d}.h5"
        manifest["shards"][name] = write_shard(root / name, episodes[k:k + per_shard])
    atomic_write_json(root / MANIFEST_NAME, manifest)
    return root


@pytest.fixture
def fake_dataset(tmp_path: Path) -> Path:
    return write_fake_dataset(tmp_path / "ds", [12, 9, 15, 4, 10, 11, 8, 13])
