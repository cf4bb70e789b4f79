"""Write an augmented copy of a dataset: each episode recoloured and/or shifted as a whole.

A world model trained on a few scenes learns what they look like at each place of the token grid
and, shown an unfamiliar scene, draws a familiar one instead of keeping what does not move
(`eval-wm`'s token keep rates: 82-94% of still cells kept in-domain and under new object colours,
sizes and distractors, 18-37% under an unseen camera, lighting or table). An augmented copy shows
it the same motions looking otherwise (`roboscape_r.tokenizer.augment.augment_episode`):

* ``--recolour``: the tokenizer's photometric augmentation (brightness, contrast, per-channel
  gain, channel permutations);
* ``--shift N``: the whole picture translated by up to N pixels each way (edges repeated), so
  that no place of the grid has one fixed look.

Each episode gets one draw for all its frames, so what is still stays still. Pass the copy to
``roboscape train-wm --extra-data``.

Usage:
    python scripts/augment_dataset.py data/train data/train_recoloured --recolour --seed 0
    python scripts/augment_dataset.py data/train data/train_shifted --recolour --shift 6 --seed 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm import tqdm

from roboscape_r.atomic import atomic_write_json
from roboscape_r.data.format import (iter_episode_meta, manifest_counts, new_manifest, read_episode, read_manifest,
                                     write_shard)
from roboscape_r.tokenizer.augment import augment_episode

EPISODES_PER_SHARD = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="dataset folder to read")
    parser.add_argument("out", type=Path, help="new dataset folder (must not exist)")
    parser.add_argument("--recolour", action="store_true", help="recolour each episode")
    parser.add_argument("--shift", type=int, default=0, help="translate each episode by up to this many pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the augmentations")
    args = parser.parse_args()
    if not args.recolour and args.shift <= 0:
        raise SystemExit("nothing to do: pass --recolour and/or --shift N (N > 0)")
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; pass a new folder")
    manifest = read_manifest(args.source)
    rows = list(iter_episode_meta(manifest))
    augment = {"recolour": args.recolour, "shift": args.shift, "seed": args.seed}
    out_manifest = new_manifest({**manifest["config"], "augmented_from": str(args.source), "augment": augment})
    args.out.mkdir(parents=True)
    batch = []
    for number, (shard, meta) in enumerate(tqdm(rows, desc="augmenting", unit="episode")):
        episode = read_episode(args.source / shard, meta["episode_index"])
        frames = augment_episode(torch.from_numpy(episode["frames"]), recolour=args.recolour, shift=args.shift,
                                 seed=args.seed * 1_000_003 + meta["episode_index"])
        episode["frames"] = frames.numpy()
        batch.append(episode)
        if len(batch) == EPISODES_PER_SHARD or number == len(rows) - 1:
            name = f"shard_{len(out_manifest['shards']):05d}.h5"
            out_manifest["shards"][name] = write_shard(args.out / name, batch)
            batch = []
    out_manifest["episodes"] = len(rows)
    out_manifest["counts"] = manifest_counts(out_manifest)
    atomic_write_json(args.out / "manifest.json", out_manifest)
    print(f"wrote {len(rows)} augmented episodes to {args.out}")


if __name__ == "__main__":
    main()
