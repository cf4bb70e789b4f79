"""Fit a context decoder to a tokenizer and WM_act (`roboscape train-context-decoder`).

The decoder (`roboscape_r.tokenizer.context_decoder`) draws a frame's tokens on top of a real
context frame. It is fitted on pairs (context frame s, target frame s + k) of the fitting
episodes, k in 0..horizon, whose target tokens are the tokenizer's encoding of the real frame
s + k, or, with probability `predicted_fraction`, WM_act's own open-loop prediction of frame s + k
from frame s and the true actions (k >= 1).

Fit it on episodes WM_act never saw (the default --data is a separate collection, seed 3): on its
own training episodes WM_act's predictions are nearly exact, so a decoder fitted there learns to trust
tokens that drift on new episodes. Measured with the shipped models, on `data/train`'s validation
windows (mostly episodes WM_act trained on), PSNR at h1 / h4 / h8 / h16: real tokens only 36.4 /
31.1 / 27.4 / 25.1 dB, half predictions 33.7 / 29.9 / 26.5 / 24.6, copy-the-context-frame 36.9 /
30.7 / 26.4 / 24.0; but on the held-out episodes of `roboscape eval-wm` the real-token decoder
fell behind copy-last (in-domain h8 24.4 vs 25.1 dB). Fitted on 96 unseen episodes with three
quarters predicted tokens it scored 24.5 there, and 22.9 vs 23.2 at h16. The shipped decoder, fitted
with the defaults below on 581 unseen episodes, scores 26.6 vs 25.1 and 25.1 vs 23.2
(checkpoints/small/README.md).

Three choices aim the fit at what `eval-wm` scores, the mean over windows of each frame's PSNR:
* `--loss psnr` trains on minus that mean. A pixel-mean loss weighs each pair by its error, so it
  spends the decoder on the windows that move most.
* `--recoloured-fraction`: WM_act's tokens drift from the context frame's tokens where nothing moves
  when a scene looks unlike its training (unseen lighting, textures, camera), and a decoder fitted
  on training-like scenes draws that drift. Recolouring a share of the fitting windows shows it
  such drift without naming any test condition.
* A dead zone (`ContextDecoderConfig.dead_zone`), chosen on the validation windows: changes below
  it are not drawn. A few percent of windows do not change at all (a still robot), where
  copy-the-last-frame scores the PSNR cap (100 dB) and a change of a level or two costs 40 dB.

Every `eval_every` steps the decoder is scored on the validation episodes' open-loop windows (PSNR
of WM_act's predictions decoded on the context frame, beside plain decoding and copy-the-context
frame) and the best one by mean PSNR over the horizons is kept. The untrained decoder, which is
exactly copy-the-context-frame, is reported but never chosen.

Output: `context_decoder.pt` (kind "context_decoder") and `context_decoder.json` (scores, curve).
While training, `train_state.pt` holds the state at the last validation; a rerun with the same
options resumes from it, and each step's minibatch depends on (seed, step) alone.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from roboscape_r.atomic import atomic_write_json
from roboscape_r.tokenizer.model import to_model_space
from roboscape_r.tokenizer.train import WarmupCosine
from roboscape_r.worldmodel import frame_metrics as M

STATE_KIND = "context_decoder_train_state"
"""`kind` of the resumable training state (train_state.pt)."""

PSNR_LOSS_FLOOR = 1e-4
"""MSE floor of the "psnr" loss, in model space ([-1, 1] pixels): 46 dB, above what copying the context
frame scores one step ahead, so a nearly exact pair stops pulling harder than the rest."""


@dataclass(frozen=True)
class ContextDecoderFitConfig:
    """Fit a context decoder (frames drawn on a real context frame) to a tokenizer and WM_act."""

    tokenizer: Path = Path("checkpoints/small/tokenizer.pt")
    """Tokenizer whose tokens the decoder draws."""
    wm_act: Path = Path("checkpoints/small/wm_act.pt")
    """WM_act whose open-loop predictions the decoder learns to draw (trained with --tokenizer)."""
    data: Path = Path("data/train_seed3")
    """Dataset of episodes WM_act never saw, split by episode into fitting and validation episodes
    (`roboscape collect --out data/train_seed3 --scenes in-domain --episodes 960 --seed 3`)."""
    out: Path = Path("runs/context_decoder")
    """Output folder: context_decoder.pt, context_decoder.json (and train_state.pt while training)."""
    val_fraction: float = 0.05
    """Share of --data's episodes held out for choosing the decoder."""
    split_seed: int = 0
    """Seed of the episode split."""
    horizon: int = 16
    """Largest gap between the context frame and the target frame (open-loop steps)."""
    predicted_windows: int = 4096
    """Open-loop windows of the fitting episodes whose WM_act predictions are computed once, up front
    (only with --predicted-fraction > 0)."""
    predicted_fraction: float = 0.75
    """Share of training pairs whose target tokens are WM_act's prediction rather than the real encoding."""
    recoloured_fraction: float = 0.5
    """Share of the predicted windows recoloured before they are tokenised and rolled out: one random
    brightness, contrast and channel gain (and, for a third, channel order) for the whole window
    (`roboscape_r.tokenizer.augment`). The decoder then also sees WM_act's predictions on scenes that
    look unlike its training, where its tokens drift even where nothing moves."""
    loss: Literal["psnr", "l1_mse"] = "psnr"
    """Training loss: "psnr" is minus the mean per-pair PSNR (10 log10 of each pair's MSE, floored at
    PSNR_LOSS_FLOOR), the quantity that validation and `eval-wm` average; "l1_mse" is the mean absolute
    plus the mean squared error over all pixels. A pixel mean weighs a pair by its error, so it spends
    the decoder on the windows that move most, while a mean of PSNRs punishes any change drawn on a
    still frame, where copying the context frame is exact."""
    val_windows_per_episode: int = 4
    """Open-loop windows per validation episode."""
    channels: int = 64
    """Decoder width (ContextDecoderConfig.channels)."""
    num_res_blocks: int = 2
    """Residual blocks per resolution (ContextDecoderConfig.num_res_blocks)."""
    dead_zones: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
    """Candidate ContextDecoderConfig.dead_zone values (uint8 levels); the chosen decoder keeps the one
    with the best mean validation PSNR (the smallest among equals)."""
    steps: int = 6000
    """Optimizer steps."""
    batch_size: int = 32
    """Pairs per step."""
    lr: float = 1e-3
    """Peak AdamW learning rate (cosine to zero after a 100-step warm-up)."""
    eval_every: int = 500
    """Validation interval (steps)."""
    seed: int = 0
    """Seed of the initialisation, the predicted windows and the minibatches."""
    num_threads: int | None = None
    """torch CPU threads (None leaves torch's default)."""
    progress: bool = True
    """Show progress bars."""
    cache_dir: Path | None = None
    """Where tokenised episodes are cached (default OUT/token_cache)."""

    def __post_init__(self) -> None:
        for name in ("horizon", "predicted_windows", "val_windows_per_episode", "channels", "num_res_blocks",
                     "steps", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        for name in ("predicted_fraction", "recoloured_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(self, name)}")
        if not self.dead_zones or any(not 0 <= z < 256 for z in self.dead_zones):
            raise ValueError(f"--dead-zones must be one or more levels in [0, 256), got {self.dead_zones}")
        if self.loss not in ("psnr", "l1_mse"):
            raise ValueError(f"--loss must be psnr or l1_mse, got {self.loss!r}")


@dataclass
class EpisodeSet:
    """Frames, tokens and actions of whole episodes, and open-loop windows over them."""

    frames: list[torch.Tensor]
    """uint8 (L+1, H, W, 3) per episode."""
    tokens: list[torch.Tensor]
    """long (L+1, h, w) per episode."""
    actions: list[torch.Tensor]
    """float (L, A) per episode."""
    windows: list[tuple[int, int]]
    """(episode, start) of the open-loop windows (start + horizon <= L)."""
    predicted: torch.Tensor
    """long (num_windows, horizon, h, w): WM_act's open-loop tokens of frames start+1 .. start+horizon."""
    window_frames: torch.Tensor | None = None
    """uint8 (num_windows, horizon+1, H, W, 3): the frames start .. start+horizon that `predicted` was
    rolled out from (recoloured ones included); None for the validation set, which reads `frames`."""
    window_tokens: torch.Tensor | None = None
    """long (num_windows, horizon+1, h, w): their tokens."""


def _load_episodes(root: Path, tokenized: list[dict], split: str, config: ContextDecoderFitConfig) -> list[dict]:
    """The frames of the tokenised episodes of one split (same order as `tokenized`)."""
    from roboscape_r.data.dataset import split_episodes
    from roboscape_r.data.format import iter_episode_meta, read_episode, read_manifest

    metas = [dict(m, shard=shard) for shard, m in iter_episode_meta(read_manifest(root))]
    chosen = split_episodes(metas, split, config.val_fraction, config.split_seed)
    if len(chosen) != len(tokenized):
        raise ValueError(f"{root} changed while it was read ({len(chosen)} episodes vs {len(tokenized)} tokenised)")
    return [read_episode(root / meta["shard"], meta["episode_index"]) for meta in chosen]


def episode_set(root: Path, tokenized: list[dict], split: str, rollout, config: ContextDecoderFitConfig,
                windows: list[tuple[int, int]], progress: bool, recolour: list[bool] | None = None) -> EpisodeSet:
    """Gather one split's episodes and WM_act's open-loop predictions for `windows`.

    `recolour` (one flag per window, training set only) marks the windows recoloured as a whole
    before they are tokenised (`photometric_augment`, torch's global RNG) and rolled out; the set
    then keeps every window's frames and tokens (`window_frames`, `window_tokens`).
    """
    from roboscape_r.tokenizer.augment import photometric_augment
    from roboscape_r.worldmodel.data import encode_episode
    from roboscape_r.worldmodel.evaluate import open_loop_tokens

    raw = _load_episodes(root, tokenized, split, config)
    frames = [torch.from_numpy(ep["frames"]) for ep in raw]
    tokens = [torch.cat([e["tokens"], e["next_tokens"][-1:]]).long() for e in tokenized]
    actions = [e["actions"].float() for e in tokenized]
    tokenizer = rollout.tokenizer
    hysteresis = rollout.model.config.token_hysteresis
    span = config.horizon + 1
    predicted, window_frames, window_tokens = [], [], []
    batch = 64
    with torch.inference_mode():
        for first in tqdm(range(0, len(windows), batch), desc=f"WM_act open loop ({split})", unit="batch",
                          disable=not progress):
            chunk = windows[first:first + batch]
            if recolour is None:
                context = torch.stack([tokens[e][s] for e, s in chunk])[:, None]  # (B, 1, h, w)
            else:
                clip_frames, clip_tokens = [], []
                for (e, s), paint in zip(chunk, recolour[first:first + batch]):
                    clip = frames[e][s:s + span]  # (span, H, W, 3)
                    if paint:  # one recolouring for the whole window: lay its frames side by side
                        H, W = clip.shape[1:3]
                        wide = clip.permute(1, 0, 2, 3).reshape(1, H, span * W, 3)
                        clip = photometric_augment(wide, 1.0).reshape(H, span, W, 3).permute(1, 0, 2, 3)
                        clip_tokens.append(encode_episode(tokenizer, clip, hysteresis).long())
                    else:
                        clip_tokens.append(tokens[e][s:s + span])
                    clip_frames.append(clip)
                window_frames.append(torch.stack(clip_frames))
                window_tokens.append(torch.stack(clip_tokens))
                context = window_tokens[-1][:, :1]  # (B, 1, h, w)
            future = torch.stack([actions[e][s:s + config.horizon] for e, s in chunk])  # (B, horizon, A)
            predicted.append(open_loop_tokens(rollout, context, future, config.horizon))
    grid = tokens[0].shape[1:]
    predicted = torch.cat(predicted) if predicted else torch.zeros(0, config.horizon, *grid, dtype=torch.long)
    if recolour is None:
        return EpisodeSet(frames, tokens, actions, windows, predicted)
    return EpisodeSet(frames, tokens, actions, windows, predicted,
                      torch.cat(window_frames) if window_frames else None,
                      torch.cat(window_tokens) if window_tokens else None)


def sample_windows(lengths: list[int], horizon: int, count: int | None, per_episode: int | None,
                   rng: np.random.Generator) -> list[tuple[int, int]]:
    """Open-loop windows (episode, start) with start + horizon <= length: `count` drawn over all
    episodes, or `per_episode` distinct starts from each episode."""
    usable = [e for e, length in enumerate(lengths) if length >= horizon]
    if not usable:
        raise ValueError(f"no episode has {horizon} steps; lower --horizon")
    if per_episode is not None:
        windows = []
        for e in usable:
            starts = rng.choice(lengths[e] - horizon + 1, min(per_episode, lengths[e] - horizon + 1), replace=False)
            windows += [(e, int(s)) for s in sorted(starts)]
        return windows
    picks = rng.choice(usable, size=count)
    return [(int(e), int(rng.integers(lengths[e] - horizon + 1))) for e in picks]


def fit_loss(predicted: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    """The decoder's training loss (ContextDecoderFitConfig.loss) of model-space frames (B, 3, H, W)."""
    if kind == "l1_mse":
        return (predicted - targets).abs().mean() + (predicted - targets).pow(2).mean()
    mse = (predicted - targets).pow(2).mean(dim=(1, 2, 3))  # (B,)
    return 10 * torch.log10(mse + PSNR_LOSS_FLOOR).mean()  # minus the mean PSNR, up to a constant


def training_batch(tokenizer, train: EpisodeSet, config: ContextDecoderFitConfig, step: int) -> tuple[torch.Tensor, ...]:
    """(codes, context codes, context frames, target frames) in model space; depends on (seed, step) only."""
    rng = np.random.default_rng([config.seed, step])
    context_frames, context_tokens, target_frames, target_tokens = [], [], [], []
    for _ in range(config.batch_size):
        if rng.random() < config.predicted_fraction:  # a window's frames (maybe recoloured) and WM_act's tokens
            w = int(rng.integers(len(train.windows)))
            k = int(rng.integers(1, config.horizon + 1))
            frames, tokens, predicted = train.window_frames[w], train.window_tokens[w], train.predicted[w, k - 1]
            s = 0
        else:  # a real pair and the real target's tokens
            e = int(rng.integers(len(train.frames)))
            frames, tokens = train.frames[e], train.tokens[e]
            s = int(rng.integers(len(frames)))
            k = min(int(rng.integers(0, config.horizon + 1)), len(frames) - 1 - s)
            predicted = tokens[s + k]
        context_frames.append(frames[s])
        context_tokens.append(tokens[s])
        target_frames.append(frames[s + k])
        target_tokens.append(predicted)
    with torch.no_grad():
        codes = tokenizer.indices_to_codes(torch.stack(target_tokens))
        context_codes = tokenizer.indices_to_codes(torch.stack(context_tokens))
    return codes, context_codes, to_model_space(torch.stack(context_frames)), to_model_space(torch.stack(target_frames))


@torch.no_grad()
def validation_scores(decoder, tokenizer, val: EpisodeSet, horizons: list[int]) -> dict[str, dict[str, float]]:
    """Mean full-frame PSNR (dB) per horizon of WM_act's predictions decoded plainly, decoded on the
    context frame, and of copying the context frame: {"context_decoder"|"plain"|"copy_last": {"h<k>": dB}}."""
    decoder.eval()
    context_frames = torch.stack([val.frames[e][s] for e, s in val.windows])
    context_tokens = torch.stack([val.tokens[e][s] for e, s in val.windows])
    scores: dict[str, dict[str, float]] = {"context_decoder": {}, "plain": {}, "copy_last": {}}
    for k in horizons:
        targets = torch.stack([val.frames[e][s + k] for e, s in val.windows])
        predicted = val.predicted[:, k - 1]
        drawn = decoder.decode(tokenizer, predicted, context_tokens, context_frames)
        scores["context_decoder"][f"h{k}"] = M.psnr(drawn, targets).mean().item()
        scores["plain"][f"h{k}"] = M.psnr(tokenizer.decode(predicted), targets).mean().item()
        scores["copy_last"][f"h{k}"] = M.psnr(context_frames, targets).mean().item()
    decoder.train()
    return scores


def choose_dead_zone(decoder, tokenizer, val: EpisodeSet, horizons: list[int],
                     candidates: tuple[float, ...]) -> tuple[float, dict[str, float]]:
    """Set decoder.config.dead_zone to the candidate with the best mean validation PSNR over `horizons`
    (the smallest among equals); returns it and every candidate's score {"<levels>": dB}."""
    scores = {}
    for zone in sorted(candidates):
        decoder.config = dataclasses.replace(decoder.config, dead_zone=float(zone))
        per_horizon = validation_scores(decoder, tokenizer, val, horizons)["context_decoder"]
        scores[f"{zone:g}"] = float(np.mean(list(per_horizon.values())))
    best = max(sorted(candidates), key=lambda zone: (scores[f"{zone:g}"], -zone))
    decoder.config = dataclasses.replace(decoder.config, dead_zone=float(best))
    return float(best), scores


def run_fit_context_decoder(config: ContextDecoderFitConfig) -> dict[str, Any]:
    """Fit the decoder as the module docstring says; returns the dict written to context_decoder.json.

    Raises:
        roboscape_r.checkpoint.CheckpointError: a missing/corrupt checkpoint or one of the wrong kind.
        roboscape_r.data.format.DatasetError: no dataset at --data.
        ValueError: tokenizer and WM_act disagree, or a split has no usable episodes.
    """
    from roboscape_r.checkpoint import load_checkpoint, save_checkpoint, weights_digest
    from roboscape_r.tokenizer import load_tokenizer
    from roboscape_r.tokenizer.context_decoder import CHECKPOINT_KIND, ContextDecoder, ContextDecoderConfig
    from roboscape_r.worldmodel.data import fit_and_val_episodes
    from roboscape_r.worldmodel.evaluate import check_compatible
    from roboscape_r.worldmodel.rollout import WorldModelRollout
    from roboscape_r.worldmodel.train import load_world_model

    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    started = time.time()
    tokenizer = load_tokenizer(config.tokenizer)
    wm_act = load_world_model(config.wm_act, "wm_act")
    check_compatible(tokenizer, wm_act, "--wm-act")
    out = Path(config.out)
    cache = config.cache_dir or out / "token_cache"
    tokenized = fit_and_val_episodes(Path(config.data), None, tokenizer, Path(config.tokenizer), cache,
                                     val_fraction=config.val_fraction, split_seed=config.split_seed,
                                     hysteresis=wm_act.config.token_hysteresis, progress=config.progress)
    rng = np.random.default_rng(config.seed)
    rollout = WorldModelRollout(wm_act, tokenizer, temperature=0.0, seed=config.seed)
    sets = {}
    for name, count, per_episode in (("train", config.predicted_windows, None),
                                     ("val", None, config.val_windows_per_episode)):
        lengths = [len(e["actions"]) for e in tokenized[name]]
        windows = sample_windows(lengths, config.horizon, count, per_episode, rng)
        recolour = None
        if name == "train":
            if config.predicted_fraction == 0:
                windows = []  # drawn all the same, so the validation windows do not depend on the fraction
            recolour = [bool(x) for x in np.random.default_rng([config.seed, 1]).random(len(windows))
                        < config.recoloured_fraction]
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            sets[name] = episode_set(Path(config.data), tokenized[name], name, rollout, config, windows,
                                     config.progress, recolour)
    train, val = sets["train"], sets["val"]
    horizons = sorted({1, 4, 8, config.horizon} & set(range(1, config.horizon + 1)))

    torch.manual_seed(config.seed)
    decoder = ContextDecoder(tokenizer.config, ContextDecoderConfig(channels=config.channels,
                                                                    num_res_blocks=config.num_res_blocks))
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=config.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(min(100, config.steps // 10), config.steps, 0.0))
    state_path = out / "train_state.pt"
    # Options that change the training; the others (out, threads, progress, cache) may differ on resume.
    resume_config = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()
                     if k not in ("out", "num_threads", "progress", "cache_dir")}
    resume_config["digests"] = {"tokenizer": weights_digest(tokenizer), "wm_act": weights_digest(wm_act)}
    if state_path.is_file():
        state = load_checkpoint(state_path, expected_kind=STATE_KIND, expected_config=resume_config)
        decoder.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, extra = int(state["step"]), state["extra"]
        before, best, best_state, curve = extra["before"], extra["best"], extra["best_state"], extra["curve"]
        print(f"[context decoder] resuming from step {start} ({state_path})")
    else:
        start = 0
        before = validation_scores(decoder, tokenizer, val, horizons)  # an untrained decoder copies the context
        best, best_state, curve = None, None, []
    bar = tqdm(range(start + 1, config.steps + 1), initial=start, total=config.steps, desc="context decoder",
               unit="step", disable=not config.progress)
    decoder.train()
    for step in bar:
        codes, context_codes, context_images, targets = training_batch(tokenizer, train, config, step)
        predicted = decoder(codes, context_codes, context_images)
        loss = fit_loss(predicted, targets, config.loss)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"context decoder loss is {loss.item()} at step {step}; the last good state "
                                     f"is in {state_path} (step {start if not curve else curve[-1]['step']})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if step % config.eval_every == 0 or step == config.steps:
            scores = validation_scores(decoder, tokenizer, val, horizons)
            mean_psnr = float(np.mean(list(scores["context_decoder"].values())))
            curve.append({"step": step, "train_loss": loss.item(), "val_mean_psnr": mean_psnr,
                          **{f"val_{k}": v for k, v in scores["context_decoder"].items()}})
            bar.set_postfix(val_psnr=f"{mean_psnr:.2f}")
            if best is None or mean_psnr > best["mean_psnr"]:
                best = {"step": step, "mean_psnr": mean_psnr}
                best_state = {k: v.clone() for k, v in decoder.state_dict().items()}
            save_checkpoint(state_path, kind=STATE_KIND, config=resume_config, model_state=decoder.state_dict(),
                            optimizer_state=optimizer.state_dict(), scheduler_state=scheduler.state_dict(), step=step,
                            extra={"before": before, "best": best, "best_state": best_state, "curve": curve})
    decoder.load_state_dict(best_state)
    without_dead_zone = validation_scores(decoder, tokenizer, val, horizons)
    dead_zone, dead_zone_scores = choose_dead_zone(decoder, tokenizer, val, horizons, config.dead_zones)
    after = validation_scores(decoder, tokenizer, val, horizons)
    decoder.eval()
    report = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()},
        "digests": resume_config["digests"],
        "episodes": {name: len(s.frames) for name, s in sets.items()},
        "windows": {name: len(s.windows) for name, s in sets.items()},
        "val_psnr_db": {"untrained (copies the context frame)": before["context_decoder"], "chosen": after["context_decoder"],
                        "chosen, no dead zone": without_dead_zone["context_decoder"],
                        "plain_decoder": after["plain"], "copy_last": after["copy_last"]},
        "chosen_step": best["step"], "curve": curve,
        "dead_zone": {"chosen": dead_zone, "val_mean_psnr_db": dead_zone_scores},
        "parameters": sum(p.numel() for p in decoder.parameters()),
        "wall_s": time.time() - started,
    }
    save_checkpoint(out / "context_decoder.pt", kind=CHECKPOINT_KIND, config=decoder.checkpoint_config(),
                    model_state=decoder.state_dict(), step=best["step"],
                    extra={"tokenizer_digest": resume_config["digests"]["tokenizer"],
                           "wm_act_digest": resume_config["digests"]["wm_act"], "val_psnr_db": report["val_psnr_db"]})
    atomic_write_json(out / "context_decoder.json", report)
    state_path.unlink(missing_ok=True)  # finished: a rerun starts afresh
    return report
