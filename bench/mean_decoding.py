"""Point estimates of WM_act's open-loop frames: a sample of the model against its expected frame,
scored on held-out episodes against copy-the-last-frame.

Full-frame PSNR rewards the mean of the model's predictive distribution, not one sharp sample: a
sharp object in a slightly wrong place costs twice (the missed object and the drawn one). The
rollout always feeds its greedy tokens back (as `roboscape eval-wm` does); what differs is the
frame drawn from each step's prediction:

* hard: the greedy tokens, drawn on the last real frame by the context decoder (the shipped
  `eval-wm` number, "context decoder");
* expected code: each cell's LFQ code averaged over the model's token distribution
  (softmax(logits) @ codes, a point in [-1, 1]^bits), drawn by the same decoder. It uses nothing
  but the model's own probabilities;
* shrink w: the last real frame plus w times the hard frame's change from it. w = 0 is copying,
  w = 1 the hard frame. With `--calib-data`, w is chosen there (an in-domain collection that is
  neither WM_act's training data nor the held-out set) and only then scored on `--data`.

For each, per split group (in-domain, all OOD factors together) and horizon: full-frame PSNR and
PSNR on the moving pixels (target differs from the last real frame by more than 8 levels), with
copy-last beside them. One open-loop window per episode, context one frame, as `eval-wm` does.

Usage: python bench/mean_decoding.py --data data/heldout [--calib-data data/calib]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from roboscape_r.tokenizer import load_tokenizer
from roboscape_r.tokenizer.context_decoder import load_context_decoder
from roboscape_r.tokenizer.model import to_model_space, to_uint8_frames
from roboscape_r.worldmodel import frame_metrics as M
from roboscape_r.worldmodel.evaluate import load_heldout_episodes, open_loop_tokens, sample_windows, window_batch
from roboscape_r.worldmodel.rollout import WorldModelRollout
from roboscape_r.worldmodel.train import load_world_model

HORIZONS = (1, 4, 8, 16)
SELECT_HORIZONS = (8, 16)  # the world-model issue's full-frame horizons: w is chosen on their mean PSNR


class ExpectedCodeRollout(WorldModelRollout):
    """A greedy rollout that also keeps, for every step, each cell's code expected under the
    model's token distribution (B, bits, h, w) in `expected_codes`, from the same logits the
    rollout samples from (the token head runs once)."""

    def __init__(self, *args, code_table: torch.Tensor, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.spatial_head is not None:
            raise SystemExit("mean_decoding.py scores a world model without a spatial head")
        self.code_table = code_table  # (V, bits)
        self.expected_codes: list[torch.Tensor] = []
        self._rows: list[torch.Tensor] = []  # this step's expected codes, chunk by chunk

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        self._rows.append(logits.float().softmax(-1) @ self.code_table)  # (chunk, bits)
        return super()._sample(logits)

    def _predict_tokens(self, hidden: torch.Tensor, current_tokens: torch.Tensor) -> torch.Tensor:
        self._rows = []
        tokens = super()._predict_tokens(hidden, current_tokens)
        codes = torch.cat(self._rows).view(hidden.shape[0], self.config.grid_h, self.config.grid_w, -1)
        self.expected_codes.append(codes.permute(0, 3, 1, 2))
        return tokens


def codebook(tokenizer, h: int, w: int) -> torch.Tensor:
    """float (V, bits): the code of every token id (ids laid out as whole (h, w) grids)."""
    V = tokenizer.codebook_size
    ids = torch.arange(-(-V // (h * w)) * h * w) % V  # padded to whole grids
    codes = tokenizer.indices_to_codes(ids.view(-1, h, w))  # (G, bits, h, w)
    return codes.permute(0, 2, 3, 1).reshape(-1, codes.shape[1])[:V]


@torch.inference_mode()
def score(data: Path, tokenizer, wm_act, decoder, episodes_per_split: int, shrinks: list[float]) -> dict:
    """(variant, group, metric) -> mean over windows, a list over HORIZONS."""
    episodes = load_heldout_episodes(data, tokenizer, episodes_per_split=episodes_per_split, seed=0,
                                     action_dim=wm_act.config.action_dim, hysteresis=wm_act.config.token_hysteresis)
    windows, _ = sample_windows(episodes, 1, max(HORIZONS), 1, np.random.default_rng(0))
    groups = ["in-domain" if episodes[e].split == "in-domain" else "ood" for e, _ in windows]
    print(f"{data}: {len(windows)} windows ({groups.count('in-domain')} in-domain, {groups.count('ood')} OOD)", flush=True)
    code_table = codebook(tokenizer, wm_act.config.grid_h, wm_act.config.grid_w)
    columns = torch.tensor(HORIZONS) - 1
    scores = defaultdict(list)
    for first in range(0, len(windows), 32):
        chunk = windows[first:first + 32]
        B, S = len(chunk), len(HORIZONS)
        frames, tokens, actions = window_batch(episodes, chunk, 1, max(HORIZONS))  # (B, 17, ...)
        rollout = ExpectedCodeRollout(wm_act, tokenizer, temperature=0.0, seed=0, code_table=code_table)
        predicted = open_loop_tokens(rollout, tokens[:, :1], actions, max(HORIZONS))[:, columns]  # (B, S, h, w)
        expected = torch.stack(rollout.expected_codes, dim=1)[:, columns]  # (B, S, bits, h, w)
        targets = frames[:, 1:][:, columns].flatten(0, 1)  # (B*S, H, W, 3)
        last = frames[:, 0, None].expand(B, S, *frames.shape[2:]).flatten(0, 1)
        mask = M.moving_mask(targets, last, 8)
        context_codes = tokenizer.indices_to_codes(tokens[:, 0]).repeat_interleave(S, dim=0)
        context_images = to_model_space(last)
        drawn = {
            "hard": to_uint8_frames(decoder(tokenizer.indices_to_codes(predicted.flatten(0, 1)), context_codes, context_images)),
            "expected code": to_uint8_frames(decoder(expected.flatten(0, 1), context_codes, context_images)),
        }
        change = drawn["hard"].float() - last.float()
        for w in shrinks:
            drawn[f"shrink {w:g}"] = (last.float() + w * change).round().clamp(0, 255).to(torch.uint8)
        drawn["copy-last"] = last
        for name, frame in drawn.items():
            for metric, value in (("full", M.psnr(frame, targets)), ("moving", M.psnr(frame, targets, mask))):
                for i, group in enumerate(groups[first:first + B]):
                    scores[(name, group, metric)].append(value.view(B, S)[i])
    return {key: torch.stack(values).nanmean(0).tolist() for key, values in scores.items()}


def print_table(means: dict, title: str) -> None:
    fmt = lambda values: " / ".join(f"{v:.2f}" for v in values)  # noqa: E731
    print(f"\n{title}: PSNR in dB at horizons {HORIZONS}, full frame | moving pixels")
    for group in ("in-domain", "ood"):
        names = list(dict.fromkeys(n for n, g, _ in means if g == group))
        if names:
            print(f"  {group}")
        for name in names:
            print(f"    {name:<14} {fmt(means[(name, group, 'full')])} | {fmt(means[(name, group, 'moving')])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/heldout"))
    parser.add_argument("--calib-data", type=Path, default=None,
                        help="in-domain episodes on which the shrink factor is chosen (not the held-out set)")
    parser.add_argument("--tokenizer", type=Path, default=Path("checkpoints/small/tokenizer.pt"))
    parser.add_argument("--wm-act", type=Path, default=Path("checkpoints/small/wm_act.pt"))
    parser.add_argument("--context-decoder", type=Path, default=Path("checkpoints/small/context_decoder.pt"))
    parser.add_argument("--episodes-per-split", type=int, default=48)
    parser.add_argument("--shrinks", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(args.tokenizer).eval()
    wm_act = load_world_model(args.wm_act, "act")
    decoder = load_context_decoder(args.context_decoder).eval()
    if decoder.tokenizer_config != tokenizer.config:
        raise SystemExit(f"{args.context_decoder} was fitted to another tokenizer than {args.tokenizer}")
    print(f"{args.wm_act}, {args.context_decoder}; greedy rollout, context 1 frame")
    if args.calib_data is not None:
        calib = score(args.calib_data, tokenizer, wm_act, decoder, args.episodes_per_split, args.shrinks)
        print_table(calib, f"calibration ({args.calib_data})")
        cols = [HORIZONS.index(h) for h in SELECT_HORIZONS]
        candidates = {0.0: "copy-last", 1.0: "hard", **{w: f"shrink {w:g}" for w in args.shrinks}}
        best = max(candidates, key=lambda w: np.mean([calib[(candidates[w], "in-domain", "full")][c] for c in cols]))
        print(f"\nchosen on {args.calib_data}: w = {best:g} (best in-domain full-frame PSNR at h{SELECT_HORIZONS})")
    held = score(args.data, tokenizer, wm_act, decoder, args.episodes_per_split, args.shrinks)
    print_table(held, f"held out ({args.data})")


if __name__ == "__main__":
    main()
