"""The policy's tokenizer round trip (decode(encode(frame))) in the default vs channels-last layout.

Every policy step in ManiSkill round-trips its frames through the tokenizer (the policy sees frames
as the world model draws them); in an evaluation that is 43% of a worker's time (`bench/RESULTS.md`).
oneDNN convolutions can run on channels-last (NHWC) tensors instead. This times both layouts on
the same frames, interleaved so that load changes hit both alike, prints the median time per
round trip and the ratio, and checks that both give the same uint8 frames.

Usage: python bench/tokenizer_layout.py [--tokenizer checkpoints/small/tokenizer.pt] [--batches 4 64]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from pathlib import Path

import torch


def heldout_frames(count: int, size: int) -> tuple[torch.Tensor, str]:
    """Up to `count` real frames from data/heldout (first frames onwards), else seeded noise."""
    try:
        from roboscape_r.data.format import iter_episode_meta, read_episode, read_manifest

        root = Path("data/heldout")
        frames = []
        for shard, meta in iter_episode_meta(read_manifest(root)):
            frames.append(torch.from_numpy(read_episode(root / shard, meta["episode_index"])["frames"][::8]))
            if sum(len(f) for f in frames) >= count:
                break
        stacked = torch.cat(frames)[:count]
        if stacked.shape[1:3] == (size, size):
            return stacked, "data/heldout frames"
    except Exception as error:  # noqa: BLE001  (no dataset here: noise still times the layouts)
        print(f"(no held-out frames: {error}; using seeded noise)")
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (count, size, size, 3), dtype=torch.uint8, generator=generator), "seeded noise"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", default="checkpoints/small/tokenizer.pt")
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 64])
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions per layout (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (an evaluation worker uses 1)")
    args = parser.parse_args()

    from roboscape_r.tokenizer.model import load_tokenizer

    torch.set_num_threads(args.threads)
    default = load_tokenizer(args.tokenizer).eval()
    channels_last = copy.deepcopy(default).to(memory_format=torch.channels_last)
    size = default.config.image_size
    frames, source = heldout_frames(max(args.batches), size)

    @torch.inference_mode()
    def round_trip(tokenizer, batch: torch.Tensor) -> torch.Tensor:
        return tokenizer.decode(tokenizer.encode(batch))

    print(f"tokenizer {args.tokenizer}, {size}x{size} {source}, {args.threads} torch thread(s), "
          f"load average at start {os.getloadavg()[0]:.2f}")
    print(f"{'batch':>5}  {'default ms':>10}  {'channels-last ms':>16}  {'speed-up':>8}  uint8 frames equal")
    for batch_size in args.batches:
        batch = frames[:batch_size]
        times = {"default": [], "channels_last": []}
        for tokenizer in (default, channels_last):
            round_trip(tokenizer, batch)  # warm-up: oneDNN picks its kernels on the first call
        for _ in range(args.reps):
            for name, tokenizer in (("default", default), ("channels_last", channels_last)):
                start = time.perf_counter()
                round_trip(tokenizer, batch)
                times[name].append(time.perf_counter() - start)
        plain, last = statistics.median(times["default"]), statistics.median(times["channels_last"])
        a, b = round_trip(default, batch), round_trip(channels_last, batch)
        differing = int((a != b).sum())
        print(f"{len(batch):>5}  {1000 * plain:>10.1f}  {1000 * last:>16.1f}  {plain / last:>7.2f}x  "
              f"{'yes' if differing == 0 else f'no: {differing} of {a.numel()} values differ'}")


if __name__ == "__main__":
    main()
