"""Pack a dataset's episodes into one compressed .npz for a short run on a lent GPU machine.

HDF5 shards as recorded are about 8 KB per 64x64 frame; one deflate stream over all frames
is about 0.9 KB per frame (consecutive frames share most pixels), so the 320-episode training
set travels in about 25 MB. Usage: ``python scripts/pack_frames.py data/train pack.npz``.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

from roboscape_r.atomic import atomic_write_bytes
from roboscape_r.data.format import iter_episode_meta, read_episode, read_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    manifest = read_manifest(args.dataset)
    frames, actions, success, offsets, instructions, tasks, scenes = [], [], [], [0], [], [], []
    for shard, meta in iter_episode_meta(manifest):
        episode = read_episode(args.dataset / shard, meta["episode_index"])
        frames.append(episode["frames"])
        actions.append(episode["actions"])
        success.append(episode["success"])
        offsets.append(offsets[-1] + len(episode["frames"]))
        instructions.append(meta["instruction"])
        tasks.append(meta["task"])
        scenes.append(meta["scene"])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, frames=np.concatenate(frames), actions=np.concatenate(actions),
                        success=np.concatenate(success), frame_offsets=np.asarray(offsets),
                        instructions=np.asarray(instructions), tasks=np.asarray(tasks), scenes=np.asarray(scenes))
    atomic_write_bytes(args.out, buffer.getvalue())
    print(f"{args.out}: {len(instructions)} episodes, {offsets[-1]} frames, {len(buffer.getvalue()) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
