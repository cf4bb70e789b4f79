"""Two decoding-time ideas for WM_act's full-frame PSNR, scored with anchored decoding on held-out
episodes against copy-the-last-frame: settling weak bit changes, and a keep-token bias.

Every predicted frame is drawn on the last real frame (`rollout.anchor_frames`): the frame decoded
from the predicted tokens plus the tokenizer's reconstruction error of that real frame, so a cell
whose token did not change shows the real pixels. Two ways to change fewer tokens were tried:

* settle (dead zone d): before decoding, every predicted bit whose latent in the last real frame
  lies within d of zero takes that frame's value (LFQ bits near zero flip on a few pixel levels,
  see bench/token_flicker.py); only changes of firmly set bits are drawn.
* keep bias (b): b is added to WM_act's learned copy logit, so the greedy rollout keeps a cell's
  token unless another wins by more than b.

For each setting it prints, per split group (in-domain, all OOD factors together) and horizon,
full-frame PSNR of the anchored frames and of copy-last, PSNR on the moving pixels (target differs
from the last real frame by more than 8 levels) of both, and the share of cells whose token differs
from the last real frame's. One open-loop window per episode, context one frame, greedy decoding,
as `roboscape eval-wm` does. Also the share of changed bits at h1 that lie within 0.2 of zero in
the last real frame, for WM_act's prediction and for the real next frame.

Usage: python bench/anchored_decoding.py --data data/heldout [--episodes-per-split 48]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from roboscape_r.tokenizer import load_tokenizer
from roboscape_r.worldmodel import frame_metrics as M
from roboscape_r.worldmodel.evaluate import load_heldout_episodes, open_loop_tokens, sample_windows, window_batch
from roboscape_r.worldmodel.rollout import WorldModelRollout, anchor_frames
from roboscape_r.worldmodel.train import load_world_model

HORIZONS = (1, 4, 8, 16)


def settle(tokenizer, predicted: torch.Tensor, anchor_latents: torch.Tensor, dead_zone: float) -> torch.Tensor:
    """long (B, S, h, w): predicted tokens whose bits inside the dead zone take the anchor's sign."""
    B, S, h, w = predicted.shape
    codes = tokenizer.indices_to_codes(predicted.flatten(0, 1)).view(B, S, -1, h, w)  # (B, S, bits, h, w)
    codes = torch.where((anchor_latents.abs() < dead_zone)[:, None], anchor_latents[:, None], codes)
    return tokenizer.codes_to_indices(codes.flatten(0, 1)).view(B, S, h, w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/heldout"))
    parser.add_argument("--tokenizer", type=Path, default=Path("checkpoints/small/tokenizer.pt"))
    parser.add_argument("--wm-act", type=Path, default=Path("checkpoints/small/wm_act.pt"))
    parser.add_argument("--episodes-per-split", type=int, default=48)
    parser.add_argument("--dead-zones", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.5])
    parser.add_argument("--keep-biases", type=float, nargs="+", default=[2.0, 4.0, 8.0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(args.tokenizer).eval()
    wm_act = load_world_model(args.wm_act, "act")
    if wm_act.copy_logit is None:
        raise SystemExit(f"{args.wm_act} has no copy logit: the keep-bias sweep needs one")
    learned_copy_logit = wm_act.copy_logit.data.clone()
    episodes = load_heldout_episodes(args.data, tokenizer, episodes_per_split=args.episodes_per_split, seed=0,
                                     action_dim=wm_act.config.action_dim, hysteresis=wm_act.config.token_hysteresis)
    windows, _ = sample_windows(episodes, 1, max(HORIZONS), 1, np.random.default_rng(0))
    groups = ["in-domain" if episodes[e].split == "in-domain" else "ood" for e, _ in windows]
    print(f"{args.wm_act} on {len(windows)} windows of {args.data} ({groups.count('in-domain')} in-domain, "
          f"{groups.count('ood')} OOD), context 1 frame, greedy")
    columns = torch.tensor(HORIZONS) - 1
    settings = [("settle", d) for d in args.dead_zones] + [("keep bias", b) for b in args.keep_biases]
    scores = defaultdict(list)  # (setting, group, metric) -> list of (S,) tensors
    flips = defaultdict(list)
    for bias in sorted({0.0, *args.keep_biases}):
        wm_act.copy_logit.data = learned_copy_logit + bias
        rollout = WorldModelRollout(wm_act, tokenizer, temperature=0.0, seed=0)
        for first in range(0, len(windows), 32):
            chunk = windows[first:first + 32]
            B, S = len(chunk), len(HORIZONS)
            frames, tokens, actions = window_batch(episodes, chunk, 1, max(HORIZONS))  # (B, 17, ...)
            predicted = open_loop_tokens(rollout, tokens[:, :1], actions, max(HORIZONS))[:, columns]  # (B, S, h, w)
            targets = frames[:, 1:][:, columns].flatten(0, 1)  # (B*S, H, W, 3)
            last = frames[:, 0, None].expand(B, S, *frames.shape[2:]).flatten(0, 1)
            mask = M.moving_mask(targets, last, 8)
            with torch.inference_mode():
                latents = tokenizer.encode_latents(frames[:, 0])  # (B, bits, h, w)
                anchor_decoded = tokenizer.decode(tokens[:, 0])
                if bias == 0.0:
                    bits = lambda t: tokenizer.indices_to_codes(t) > 0  # noqa: E731
                    for name, changed in (("WM_act", bits(predicted[:, 0]) != (latents > 0)),
                                          ("real", bits(tokens[:, 1]) != (latents > 0))):
                        flips[name].append(((changed & (latents.abs() < 0.2)).sum().item(), changed.sum().item()))
                runs = [(("keep bias", bias), predicted)] if bias else [
                    (("settle", d), settle(tokenizer, predicted, latents, d)) for d in args.dead_zones]
                for setting, drawn_tokens in runs:
                    decoded = tokenizer.decode(drawn_tokens.flatten(0, 1)).view(B, S, *frames.shape[2:])
                    drawn = anchor_frames(decoded, frames[:, 0], anchor_decoded).flatten(0, 1)
                    values = {"psnr": M.psnr(drawn, targets), "moving": M.psnr(drawn, targets, mask),
                              "copy_psnr": M.psnr(last, targets), "copy_moving": M.psnr(last, targets, mask),
                              "cells": (drawn_tokens != tokens[:, :1]).flatten(-2).float().mean(-1).flatten()}
                    for metric, value in values.items():
                        for i, group in enumerate(groups[first:first + B]):
                            scores[(setting, group, metric)].append(value.view(B, S)[i])
    wm_act.copy_logit.data = learned_copy_logit
    for name, counts in flips.items():
        weak, total = np.sum(counts, axis=0)
        print(f"bits changed at h1 against the last real frame ({name}): {weak / max(total, 1):.1%} within 0.2 of zero")
    mean = lambda key: torch.stack(scores[key]).nanmean(0).tolist()  # noqa: E731
    fmt = lambda values, digits=1: " / ".join(f"{v:.{digits}f}" for v in values)  # noqa: E731
    print(f"\nhorizons {HORIZONS}; PSNR in dB, anchored vs copy-last; cells = share whose token differs from the last real frame")
    for group in (g for g in ("in-domain", "ood") if g in groups):
        print(f"\n{group}: copy-last full {fmt(mean((settings[0], group, 'copy_psnr')))}, "
              f"moving {fmt(mean((settings[0], group, 'copy_moving')))}")
        for setting in settings:
            print(f"  {setting[0]} {setting[1]:<4}: full {fmt(mean((setting, group, 'psnr')))}  "
                  f"moving {fmt(mean((setting, group, 'moving')))}  cells {fmt(mean((setting, group, 'cells')), 2)}")


if __name__ == "__main__":
    main()
