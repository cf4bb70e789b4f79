"""Write a recoloured copy of a dataset: every episode recoloured as a whole, one draw per episode.

A world model trained on a few scenes learns their look by heart and, shown an unfamiliar scene,
draws a familiar one instead of keeping what does not move. A recoloured copy (the tokenizer's
photometric augmentation: brightness, contrast, per-channel gain, channel permutations) shows
it the same motions in other colours. Each episode gets one recolouring for all its frames, so
what is still stays still. Pass the copy to ``roboscape train-wm --extra-data``.

Usage:
    python scripts/recolour_dataset.py data/train data/train_recoloured --seed 0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm import tqdm

from roboscape_r.atomic import atomic_write_json
from roboscape_r.data.format import (iter_episode_meta, manifest_counts, new_manifest, read_episode, read_manifest,
                                     write_shard)
from roboscape_r.tokenizer.augment import photometric_augment

EPISODES_PER_SHARD = 4


def recolour_episode(frames, generator_seed: int):
    """uint8 (T, H, W, 3) frames recoloured with one draw of `photometric_augment` for all of them."""
    frames = torch.from_numpy(frames)
    T, H, W, _ = frames.shape
    wide = frames.permute(1, 0, 2, 3).reshape(1, H, T * W, 3)  # the frames side by side: one image
    torch.manual_seed(generator_seed)
    wide = photometric_augment(wide, 1.0)
    return wide.reshape(H, T, W, 3).permute(1, 0, 2, 3).contiguous().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="dataset folder to read")
    parser.add_argument("out", type=Path, help="new dataset folder (must not exist)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the recolourings")
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; pass a new folder")
    manifest = read_manifest(args.source)
    rows = list(iter_episode_meta(manifest))
    out_manifest = new_manifest({**manifest["config"], "recoloured_from": str(args.source), "recolour_seed": args.seed})
    args.out.mkdir(parents=True)
    batch = []
    for number, (shard, meta) in enumerate(tqdm(rows, desc="recolouring", unit="episode")):
        episode = read_episode(args.source / shard, meta["episode_index"])
        episode["frames"] = recolour_episode(episode["frames"], args.seed * 1_000_003 + meta["episode_index"])
        batch.append(episode)
        if len(batch) == EPISODES_PER_SHARD or number == len(rows) - 1:
            name = f"shard_{len(out_manifest['shards']):05d}.h5"
            out_manifest["shards"][name] = write_shard(args.out / name, batch)
            batch = []
    out_manifest["episodes"] = len(rows)
    out_manifest["counts"] = manifest_counts(out_manifest)
    atomic_write_json(args.out / "manifest.json", out_manifest)
    print(f"wrote {len(rows)} recoloured episodes to {args.out}")


if __name__ == "__main__":
    main()
