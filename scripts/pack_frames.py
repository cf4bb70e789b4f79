"""Pack datasets' episodes into one compressed .npz for a short run on a lent GPU machine.

HDF5 shards as recorded are about 8 KB per 64x64 frame; one deflate stream over all frames
is about 0.9 KB per frame (consecutive frames share most pixels), so the 320-episode training
set travels in about 25 MB. A call to the GPU machine carries at most 64 MiB, so larger sets
travel as tokens: with ``--tokenizer`` every frame is stored as its token grid (int16, 8x8 per
frame, the world models' input) and only the last ``--keep-frames`` episodes (those
``scripts/train_models_frames.py`` holds out) keep their frames, for the image metrics.

Usage:
    python scripts/pack_frames.py data/train pack.npz
    python scripts/pack_frames.py data/train data/train_seed3 pack.npz --tokenizer checkpoints/small/tokenizer.pt
    python scripts/pack_frames.py data/train pack-h02.npz --tokenizer checkpoints/small/tokenizer.pt --token-hysteresis 0.2
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import torch

from roboscape_r.atomic import atomic_write_bytes
from roboscape_r.data.format import iter_episode_meta, read_episode, read_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", type=Path, nargs="+", help="dataset folders, then the output .npz")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="store token grids from this tokenizer instead of frames (but for --keep-frames)")
    parser.add_argument("--keep-frames", type=int, default=16,
                        help="with --tokenizer: the last this many episodes keep their frames too")
    parser.add_argument("--token-hysteresis", type=float, default=0.0,
                        help="with --tokenizer: tokenise each episode as a sequence with this LFQ hysteresis "
                             "(Tokenizer.encode_sequence; the world models' token_hysteresis)")
    args = parser.parse_args()
    if len(args.paths) < 2:
        parser.error("give at least one dataset folder and the output file")
    if args.token_hysteresis and args.tokenizer is None:
        parser.error("--token-hysteresis needs --tokenizer")
    datasets, out = args.paths[:-1], args.paths[-1]
    tokenizer = None
    if args.tokenizer is not None:
        from roboscape_r.tokenizer import load_tokenizer
        from roboscape_r.checkpoint import weights_digest

        tokenizer = load_tokenizer(args.tokenizer).eval()
    frames, tokens, actions, success, offsets, instructions, tasks, scenes = [], [], [], [], [0], [], [], []
    for dataset in datasets:
        for shard, meta in iter_episode_meta(read_manifest(dataset)):
            episode = read_episode(dataset / shard, meta["episode_index"])
            frames.append(episode["frames"])
            if tokenizer is not None:
                with torch.inference_mode():
                    grids = tokenizer.encode_sequence(torch.from_numpy(episode["frames"]),
                                                      hysteresis=args.token_hysteresis, inference_mode=True)
                tokens.append(grids.numpy().astype(np.int16))
            actions.append(episode["actions"])
            success.append(episode["success"])
            offsets.append(offsets[-1] + len(episode["frames"]))
            instructions.append(meta["instruction"])
            tasks.append(meta["task"])
            scenes.append(meta["scene"])
    arrays = {"actions": np.concatenate(actions), "success": np.concatenate(success),
              "frame_offsets": np.asarray(offsets), "instructions": np.asarray(instructions),
              "tasks": np.asarray(tasks), "scenes": np.asarray(scenes)}
    if tokenizer is None:
        arrays["frames"] = np.concatenate(frames)
    else:
        keep = min(args.keep_frames, len(frames))
        arrays.update(tokens=np.concatenate(tokens), frames=np.concatenate(frames[len(frames) - keep:]),
                      frames_from_episode=np.asarray(len(frames) - keep),
                      tokenizer_digest=np.asarray(weights_digest(tokenizer)),
                      token_hysteresis=np.asarray(args.token_hysteresis))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(out, buffer.getvalue())
    kind = "frames" if tokenizer is None else (f"tokens, hysteresis {args.token_hysteresis:g} "
                                               f"(frames of the last {args.keep_frames} episodes)")
    print(f"{out}: {len(instructions)} episodes, {offsets[-1]} frames as {kind}, {len(buffer.getvalue()) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
