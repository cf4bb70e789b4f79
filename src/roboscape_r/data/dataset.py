"""PyTorch datasets over a collected dataset folder: fixed-length clips and single frames."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from roboscape_r.data.format import DatasetError, iter_episode_meta, read_manifest

SPLIT_NAMES = ("train", "val", "all")


def split_episodes(metas: list[dict], split: str, val_fraction: float, seed: int) -> list[dict]:
    """Split episodes (not clips, so no episode leaks across) into train/val deterministically."""
    if split not in SPLIT_NAMES:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLIT_NAMES)}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if split == "all":
        return metas
    order = np.random.default_rng(seed).permutation(len(metas))
    n_val = int(round(len(metas) * val_fraction))
    val_set = set(order[:n_val].tolist())
    keep = (lambda i: i in val_set) if split == "val" else (lambda i: i not in val_set)
    return [m for i, m in enumerate(metas) if keep(i)]


class _ShardReader:
    """Opens shards lazily, one handle per shard per process (h5py handles must not cross fork)."""

    def __init__(self, root: Path):
        self.root = root
        self._files: dict[str, h5py.File] = {}
        self._pid = None

    def group(self, shard: str, episode_index: int) -> h5py.Group:
        import os

        if self._pid != os.getpid():
            self._files, self._pid = {}, os.getpid()
        if shard not in self._files:
            try:
                self._files[shard] = h5py.File(self.root / shard, "r")
            except OSError as err:
                raise DatasetError(f"shard {self.root / shard} is corrupt or truncated ({err}); "
                                   "run `roboscape data check` and re-collect it") from err
        return self._files[shard][f"traj_{episode_index}"]

    def __getstate__(self):
        return {"root": self.root, "_files": {}, "_pid": None}


class ClipDataset(Dataset):
    """Fixed-length clips with random access.

    Item ``k`` is a dict: ``frames`` uint8 (T, H, W, 3), ``actions`` float32 (T, A) (``actions[t]``
    is applied after ``frames[t]``), ``done`` and ``success`` bool (T,) (the state after action t),
    ``rewards`` float32 (T,), ``instruction`` str, ``task`` str, ``task_id`` int, ``scene`` str.
    Clips start every ``stride`` steps; episodes shorter than ``clip_len`` steps are skipped
    (counted in ``skipped_episodes``).
    """

    def __init__(self, root: str | Path, clip_len: int = 8, split: str = "train", val_fraction: float = 0.1,
                 stride: int = 1, seed: int = 0, tasks: list[str] | None = None):
        self.root = Path(root)
        if clip_len < 1 or stride < 1:
            raise ValueError(f"clip_len and stride must be >= 1, got {clip_len}, {stride}")
        manifest = read_manifest(self.root)
        metas = [dict(m, shard=shard) for shard, m in iter_episode_meta(manifest)]
        self.task_names = sorted({m["task"] for m in metas})
        if tasks is not None:
            unknown = sorted(set(tasks) - set(self.task_names))
            if unknown:
                raise ValueError(f"tasks {unknown} are not in {self.root}; it has {self.task_names}")
            metas = [m for m in metas if m["task"] in tasks]
        self.episodes = split_episodes(metas, split, val_fraction, seed)
        self.clip_len = clip_len
        self.index: list[tuple[int, int]] = []
        self.skipped_episodes = 0
        for e, meta in enumerate(self.episodes):
            if meta["length"] < clip_len:
                self.skipped_episodes += 1
                continue
            self.index += [(e, start) for start in range(0, meta["length"] - clip_len + 1, stride)]
        self._reader = _ShardReader(self.root)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> dict:
        e, start = self.index[k]
        meta = self.episodes[e]
        group = self._reader.group(meta["shard"], meta["episode_index"])
        stop = start + self.clip_len
        terminated = group["terminated"][start:stop]
        truncated = group["truncated"][start:stop]
        return {
            "frames": torch.from_numpy(group["obs/rgb"][start:stop]),  # (T, H, W, 3) uint8
            "actions": torch.from_numpy(group["actions"][start:stop]),
            "rewards": torch.from_numpy(group["rewards"][start:stop]),
            "success": torch.from_numpy(group["success"][start:stop]),
            "done": torch.from_numpy(terminated | truncated),
            "instruction": meta["instruction"],
            "task": meta["task"],
            "task_id": self.task_names.index(meta["task"]),
            "scene": meta["scene"],
        }


class FrameDataset(Dataset):
    """Every frame of the chosen episodes as a uint8 (H, W, 3) tensor (for the tokenizer)."""

    def __init__(self, root: str | Path, split: str = "train", val_fraction: float = 0.1, seed: int = 0):
        clips = ClipDataset(root, clip_len=1, split=split, val_fraction=val_fraction, seed=seed)
        self.episodes = clips.episodes
        self._reader = clips._reader
        self.index = [(e, t) for e, m in enumerate(self.episodes) for t in range(m["length"] + 1)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> torch.Tensor:
        e, t = self.index[k]
        meta = self.episodes[e]
        return torch.from_numpy(self._reader.group(meta["shard"], meta["episode_index"])["obs/rgb"][t])
