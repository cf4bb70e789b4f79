"""How often the tokenizer changes a cell's token between consecutive real frames, and what LFQ
hysteresis (`Tokenizer.encode_sequence`) does to that and to the reconstruction.

For every other episode of a dataset (first `--frames` frames each) it prints, per hysteresis:
the share of cells whose token changes from one frame to the next; the share of "still" cells
(no pixel of the cell changed by more than `--still-levels` of 255) that change all the same; and
the reconstruction PSNR of the frames decoded from those tokens. Also where the flipped bits sit:
the smaller |latent| of the two frames, for flipped bits and for all bits.

Usage: python bench/token_flicker.py --data data/heldout [--tokenizer checkpoints/small/tokenizer.pt]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from roboscape_r.data.format import iter_episode_meta, read_episode, read_manifest
from roboscape_r.tokenizer import load_tokenizer
from roboscape_r.worldmodel import frame_metrics as M


def still_cells(frames: torch.Tensor, grid: int, levels: int) -> torch.Tensor:
    """bool (T-1, grid, grid): no pixel of the cell changed by more than `levels` from frame t to t+1."""
    moved = (frames[1:].int() - frames[:-1].int()).abs().amax(-1) > levels  # (T-1, H, W)
    T, H, W = moved.shape
    cells = moved.view(T, grid, H // grid, grid, W // grid).any(4).any(2)
    return ~cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/heldout"))
    parser.add_argument("--tokenizer", type=Path, default=Path("checkpoints/small/tokenizer.pt"))
    parser.add_argument("--episodes", type=int, default=28, help="every other episode, up to this many")
    parser.add_argument("--frames", type=int, default=60, help="first frames of each episode")
    parser.add_argument("--still-levels", type=int, default=10)
    parser.add_argument("--hysteresis", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.5])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(args.tokenizer).eval()
    grid = tokenizer.grid_size
    metas = list(iter_episode_meta(read_manifest(args.data)))[::2][: args.episodes]
    rows = {h: {"changed": [], "still_changed": [], "psnr": []} for h in args.hysteresis}
    flipped_margin, all_margin = [], []
    for shard, meta in metas:
        frames = torch.from_numpy(read_episode(args.data / shard, meta["episode_index"])["frames"][: args.frames])
        still = still_cells(frames, grid, args.still_levels)
        with torch.inference_mode():
            latents = tokenizer.encode_latents(frames)  # (T, bits, h, w)
            margin = torch.minimum(latents[1:].abs(), latents[:-1].abs())
            flipped_margin.append(margin[(latents[1:] > 0) != (latents[:-1] > 0)])
            all_margin.append(margin.flatten())
            for h, row in rows.items():
                tokens = tokenizer.encode_sequence(frames, hysteresis=h, inference_mode=True)
                changed = tokens[1:] != tokens[:-1]  # (T-1, h, w)
                row["changed"].append(changed.float().mean().item())
                row["still_changed"].append(changed[still].float().mean().item() if still.any() else float("nan"))
                row["psnr"].append(M.psnr(tokenizer.decode(tokens), frames).mean().item())
    flipped, every = torch.cat(flipped_margin), torch.cat(all_margin)
    print(f"tokenizer {args.tokenizer}, {len(metas)} episodes of {args.data} (first {args.frames} frames), "
          f"still = no pixel of the cell changed by more than {args.still_levels}/255")
    print(f"median min|latent| of the two frames: flipped bits {flipped.median().item():.3f}, all bits "
          f"{every.median().item():.3f}; within 0.2 of zero: {(flipped < 0.2).float().mean().item():.1%} of "
          f"flipped bits, {(every < 0.2).float().mean().item():.1%} of all bits")
    print(f"{'hysteresis':>10}  {'cells changing token':>20}  {'still cells changing':>20}  {'recon PSNR dB':>13}")
    for h, row in rows.items():
        print(f"{h:>10g}  {np.mean(row['changed']):>20.1%}  {np.nanmean(row['still_changed']):>20.1%}  "
              f"{np.mean(row['psnr']):>13.2f}")


if __name__ == "__main__":
    main()
