"""On-disk dataset format: HDF5 shards plus a JSON manifest.

Follows ManiSkill's trajectory conventions where they fit: one group ``traj_{episode}`` per
episode with ``obs/rgb`` (L+1, H, W, 3) uint8 (chunked one frame per chunk, gzip), ``actions``
(L, A) float32, ``rewards`` (L,), ``success``/``terminated``/``truncated`` (L,) bool, and the
episode's metadata as group attributes. ``actions[t]`` is applied to ``obs/rgb[t]`` and leads to
``obs/rgb[t + 1]``; ``success[t]`` etc. describe the state after that step.

A shard is written whole to a temporary file, fsynced and renamed, so no reader ever sees half a
shard; the manifest (``manifest.json``, also written atomically) lists every finished shard with
its SHA-256, size and episodes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

from roboscape_r.atomic import atomic_path, atomic_write_bytes, atomic_write_json  # noqa: F401 (part of this module's API)

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
EPISODE_ARRAYS = ("actions", "rewards", "success", "terminated", "truncated")
EPISODE_ATTRS = ("episode_index", "task", "scene", "env_id", "seed", "control_mode", "instruction", "source")


class DatasetError(ValueError):
    """A dataset folder, shard or manifest is missing, corrupt or inconsistent."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def validate_episode(episode: dict) -> None:
    """Raise DatasetError unless ``episode`` holds consistent arrays and all metadata."""
    frames = episode.get("frames")
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise DatasetError(f"episode frames must be uint8 (L+1, H, W, 3), got "
                           f"{getattr(frames, 'dtype', type(frames))} {getattr(frames, 'shape', '')}")
    length = frames.shape[0] - 1
    if length < 1:
        raise DatasetError("an episode needs at least one step (two frames)")
    for key in EPISODE_ARRAYS:
        arr = episode.get(key)
        if arr is None or len(arr) != length:
            raise DatasetError(f"episode {key} must have {length} entries (one per step), "
                               f"got {None if arr is None else len(arr)}")
    if not np.isfinite(episode["actions"]).all() or not np.isfinite(episode["rewards"]).all():
        raise DatasetError(f"episode {episode.get('episode_index')} has NaN/inf actions or rewards")
    missing = [k for k in EPISODE_ATTRS if k not in episode]
    if missing:
        raise DatasetError(f"episode is missing metadata {missing}")


def write_shard(path: Path, episodes: list[dict]) -> dict:
    """Write ``episodes`` (dicts with frames/actions/... and metadata) as one shard, atomically.

    Returns the shard's manifest entry: sha256, bytes and per-episode metadata.
    """
    path = Path(path)
    for episode in episodes:
        validate_episode(episode)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["schema_version"] = SCHEMA_VERSION
            for episode in episodes:
                group = f.create_group(f"traj_{episode['episode_index']}")
                frames = episode["frames"]
                group.create_dataset("obs/rgb", data=frames, chunks=(1, *frames.shape[1:]),
                                     compression="gzip", compression_opts=4, shuffle=True)
                for key in EPISODE_ARRAYS:
                    dtype = np.float32 if key in ("actions", "rewards") else bool
                    group.create_dataset(key, data=np.asarray(episode[key], dtype=dtype))
                for key in EPISODE_ATTRS:
                    group.attrs[key] = episode[key]
        entry = {"sha256": sha256_file(tmp), "bytes": os.path.getsize(tmp),
                 "episodes": [episode_meta(e) for e in episodes]}
    return entry


def episode_meta(episode: dict) -> dict:
    """The manifest's summary of one episode."""
    meta = {k: (int(episode[k]) if k in ("episode_index", "seed") else str(episode[k])) for k in EPISODE_ATTRS}
    meta["length"] = int(len(episode["actions"]))
    meta["success_once"] = bool(np.any(episode["success"]))
    meta["success_at_end"] = bool(episode["success"][-1])
    return meta


def config_hash(content: dict) -> str:
    """Short stable hash of a JSON-serialisable config."""
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def new_manifest(config: dict) -> dict:
    """An empty manifest for a dataset made with ``config`` (a JSON-serialisable dict)."""
    return {"schema_version": SCHEMA_VERSION, "config": config, "config_hash": config_hash(config), "shards": {}}


def manifest_counts(manifest: dict) -> dict:
    """Episode and step counts, in total and per task, scene and source."""
    metas = [m for entry in manifest["shards"].values() for m in entry["episodes"]]
    counts: dict = {"shards": len(manifest["shards"]), "episodes": len(metas), "steps": sum(m["length"] for m in metas)}
    for key in ("task", "scene", "source"):
        per: dict[str, int] = {}
        for m in metas:
            per[m[key]] = per.get(m[key], 0) + 1
        counts[f"episodes_per_{key}"] = dict(sorted(per.items()))
    return counts


def read_manifest(root: Path) -> dict:
    """Load ``root/manifest.json`` or raise DatasetError naming the problem and the fix."""
    path = Path(root) / MANIFEST_NAME
    if not path.exists():
        raise DatasetError(f"{path} not found: {root} is not a roboscape dataset (make one with `roboscape collect`)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} is not valid JSON ({err}); re-run `roboscape collect --resume` to rebuild it") from err
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise DatasetError(f"{path} has schema version {manifest.get('schema_version')}, this code reads {SCHEMA_VERSION}")
    return manifest


def read_episode(shard_path: Path, episode_index: int, frames: bool = True) -> dict:
    """Read one episode (arrays and metadata) from a shard; DatasetError names a corrupt shard."""
    try:
        with h5py.File(shard_path, "r") as f:
            group = f[f"traj_{episode_index}"]
            episode = {key: group[key][()] for key in EPISODE_ARRAYS}
            if frames:
                episode["frames"] = group["obs/rgb"][()]
            episode.update({k: (v.item() if isinstance(v, np.generic) else v) for k, v in group.attrs.items()})
    except (OSError, KeyError) as err:
        raise DatasetError(f"shard {shard_path} is corrupt or truncated ({err}); "
                           f"delete it and re-run `roboscape collect --resume` to re-collect its episodes") from err
    return episode


def iter_episode_meta(manifest: dict):
    """Yield (shard name, episode metadata) for every episode in the manifest, in index order."""
    rows = [(shard, meta) for shard, entry in manifest["shards"].items() for meta in entry["episodes"]]
    yield from sorted(rows, key=lambda row: row[1]["episode_index"])


def check_dataset(root: Path) -> list[str]:
    """Verify every shard's checksum, readability and array shapes. Returns a list of problems."""
    root = Path(root)
    try:
        manifest = read_manifest(root)
    except DatasetError as err:
        return [str(err)]
    problems = []
    image_size = manifest["config"].get("image_size")
    for shard, entry in sorted(manifest["shards"].items()):
        path = root / shard
        if not path.exists():
            problems.append(f"{path}: missing (listed in the manifest)")
            continue
        if os.path.getsize(path) != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            problems.append(f"{path}: checksum mismatch (corrupt or truncated)")
            continue
        for meta in entry["episodes"]:
            try:
                episode = read_episode(path, meta["episode_index"])
                validate_episode(episode)
            except DatasetError as err:
                problems.append(f"{path}: episode {meta['episode_index']}: {err}")
                continue
            shape = episode["frames"].shape
            if image_size and shape[1:3] != (image_size, image_size):
                problems.append(f"{path}: episode {meta['episode_index']} frames are {shape[1:3]}, "
                                f"the manifest says {image_size}x{image_size}")
            if len(episode["actions"]) != meta["length"]:
                problems.append(f"{path}: episode {meta['episode_index']} has {len(episode['actions'])} steps, "
                                f"the manifest says {meta['length']}")
    return problems
