"""Videos and frame strips of evaluation episodes (MP4, GIF and PNG, written atomically).

Frames are upscaled by pixel repetition (64x64 is too small to watch). A frame strip is one row
of frames every few steps; each frame has a thin border, green from the first step at which the
task's success flag is true, grey before: a figure for the report that shows at a glance what
the policy did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from roboscape_r.atomic import atomic_write_bytes

SUCCESS_RGB = (40, 200, 60)
PENDING_RGB = (128, 128, 128)


def upscale(frames_uint8: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of (..., H, W, 3) frames by an integer factor."""
    if scale < 1:
        raise ValueError(f"video scale must be >= 1, got {scale}")
    if scale == 1:
        return frames_uint8
    return frames_uint8.repeat(scale, axis=-3).repeat(scale, axis=-2)


def frame_strip(frames_uint8: np.ndarray, success_per_step: np.ndarray, every: int, scale: int = 2,
                border: int = 2) -> np.ndarray:
    """One row of frames 0, every, 2*every, ... and the last, each framed green once succeeded.

    Args:
        frames_uint8: (L+1, H, W, 3) uint8, the reset frame then one per step.
        success_per_step: (L,) bool, the success flag after each step.
        every: steps between shown frames (>= 1).
        scale: upscaling factor of each frame.
        border: border width in output pixels.

    Returns:
        (H*scale + 2*border, n*(W*scale + 2*border), 3) uint8.
    """
    if every < 1:
        raise ValueError(f"strip interval must be >= 1, got {every}")
    steps = list(range(0, len(frames_uint8), every))
    if steps[-1] != len(frames_uint8) - 1:
        steps.append(len(frames_uint8) - 1)
    succeeded = np.concatenate([[False], np.maximum.accumulate(np.asarray(success_per_step, bool))])
    tiles = []
    for t in steps:
        tile = upscale(frames_uint8[t], scale)
        color = SUCCESS_RGB if succeeded[t] else PENDING_RGB
        tiles.append(np.pad(tile, ((border, border), (border, border), (0, 0)), constant_values=0))
        tiles[-1][:border], tiles[-1][-border:] = color, color
        tiles[-1][:, :border], tiles[-1][:, -border:] = color, color
    return np.concatenate(tiles, axis=1)


def write_episode_media(record: dict, out_dir: Path, fps: int = 20, scale: int = 4, strip_every: int = 10) -> dict:
    """Write ``<stem>.mp4``, ``<stem>.gif`` and ``<stem>_strip.png`` for one recorded episode.

    Args:
        record: an episode record with ``frames`` (L+1, H, W, 3) uint8 and ``success_per_step``.
        out_dir: folder for the files (created).

    Returns:
        ``{"task", "scene", "env_id", "episode_index", "seed", "mp4", "gif", "strip"}`` with
        paths relative to ``out_dir``'s parent.
    """
    import imageio.v3 as iio

    frames = upscale(record["frames"], scale)
    stem = f"{record['task']}__{record['scene']}__ep{record['episode_index']:03d}"
    out_dir = Path(out_dir)
    paths = {"mp4": out_dir / f"{stem}.mp4", "gif": out_dir / f"{stem}.gif", "strip": out_dir / f"{stem}_strip.png"}
    atomic_write_bytes(paths["mp4"], iio.imwrite("<bytes>", frames, extension=".mp4", fps=fps))
    atomic_write_bytes(paths["gif"], iio.imwrite("<bytes>", frames, extension=".gif", duration=1000 / fps, loop=0))
    strip = frame_strip(record["frames"], record["success_per_step"], strip_every, scale=max(1, scale // 2))
    atomic_write_bytes(paths["strip"], iio.imwrite("<bytes>", strip, extension=".png"))
    return {"task": record["task"], "scene": record["scene"], "env_id": record["env_id"],
            "episode_index": record["episode_index"],
            "seed": record["seed"], **{k: str(p.relative_to(out_dir.parent)) for k, p in paths.items()}}
