"""Fit a spatial autoregressive head on a frozen world model (`roboscape train-spatial-head`).

1. Tokenise the fitting episodes (--data) and the validation episodes (--val-data, a collection
   the backbone never saw; or an episode split of --data), keeping successful episodes only for
   WM_txt (the episodes it was trained to imagine).
2. Compute the backbone's hidden states of every step, teacher-forced on the real frames
   (`teacher_forced_hidden`), once: the backbone is frozen.
3. Train the head (see `spatial_head.py`) with AdamW on minibatches of frames, minimising the
   cross-entropy of (backbone logits + head correction) against the true next-frame tokens;
   score the validation cross-entropy every `eval_every` steps and keep the best head.

Output: `spatial_head.pt` (kind "spatial_head", tied to the world model's weights by digest) and
`spatial_head.json` (before/after cross-entropy and token accuracy on both splits, the curve).
The backbone's own cross-entropy is the reference: the head can only lower it by modelling how the
tokens of one frame depend on each other.

Measured on the shipped WM_txt (checkpoints/small/README.md): fitted on the backbone's own training
episodes, validation cross-entropy rose from the first check (2.313 -> 2.333); fitted on 27 fresh
successful episodes it fell from 2.807 to 2.799 and then rose. Fit on episodes the backbone never
saw, and many of them.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from roboscape_r.atomic import atomic_write_json
from roboscape_r.tokenizer.train import StepBatchSampler, WarmupCosine


@dataclass(frozen=True)
class SpatialHeadTrainConfig:
    """Fit a spatial autoregressive head on a frozen WM_txt (or WM_act)."""

    wm: Path = Path("checkpoints/small/wm_txt.pt")
    """World-model checkpoint (file or run folder) the head decodes for."""
    tokenizer: Path = Path("checkpoints/small/tokenizer.pt")
    """The tokenizer the world model was trained with."""
    data: Path = Path("data/train")
    """Dataset the head is fitted on (all of it with --val-data, else split by episode)."""
    val_data: Path | None = Path("data/calib")
    """Validation dataset the head is chosen on (episodes the backbone never saw). None: split
    --data by episode instead (--val-fraction)."""
    out: Path = Path("runs/spatial_head")
    """Output folder: spatial_head.pt and spatial_head.json. While training, train_state.pt holds the
    state at the last validation, and a rerun with the same options resumes from it."""
    successful_only: bool | None = None
    """Keep only episodes that succeed at some step; default: yes for WM_txt, no for WM_act."""
    val_fraction: float = 0.25
    """Share of --data's episodes held out for choosing the head (without --val-data)."""
    split_seed: int = 0
    """Seed of the train/validation episode split."""
    width: int = 128
    """Width of the head's transformer."""
    n_layers: int = 2
    """Causal transformer blocks."""
    n_heads: int = 4
    """Attention heads per block."""
    steps: int = 3000
    """Optimizer steps."""
    batch_size: int = 64
    """Frames per step."""
    lr: float = 1e-3
    """Peak AdamW learning rate (cosine decay to a tenth after a 100-step warm-up)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    eval_every: int = 250
    """Validation interval (steps)."""
    seed: int = 0
    """Seed of the head's initialisation and the minibatch order."""
    num_threads: int | None = None
    """torch CPU threads (None leaves torch's default)."""
    progress: bool = True
    """Show progress bars."""
    cache_dir: Path | None = None
    """Where tokenised episodes are cached (default OUT/token_cache)."""
    text_encoder: Literal["minilm", "t5"] = "minilm"
    """Instruction encoder WM_txt was trained with."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "width", "n_layers", "n_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")


STATE_KIND = "spatial_head_train_state"
"""`kind` of the resumable training state (train_state.pt)."""


@dataclass
class FrameSet:
    """Every step of some episodes: the backbone's hidden states, current and next tokens."""

    hidden: torch.Tensor
    """float (S, N, D)."""
    current: torch.Tensor
    """long (S, N), tokens of the input frame (for the backbone's copy bonus)."""
    target: torch.Tensor
    """long (S, N), tokens of the next frame."""


def _frame_set(model, episodes: list[dict], text_encoder, progress: bool) -> FrameSet:
    from roboscape_r.worldmodel.evaluate import teacher_forced_hidden

    tokens = [e["tokens"].long() for e in episodes]
    if model.config.cond == "act":
        conditions = [e["actions"].float() for e in episodes]
    else:
        conditions = list(text_encoder.encode([e["instruction"] for e in episodes]).float())
    hidden = teacher_forced_hidden(model, tokens, conditions, progress=progress, desc="backbone hidden states")
    n = model.config.grid_h * model.config.grid_w
    return FrameSet(torch.cat(hidden),
                    torch.cat([t.reshape(len(t), n) for t in tokens]),
                    torch.cat([e["next_tokens"].long().reshape(len(e["next_tokens"]), n) for e in episodes]))


@torch.no_grad()
def score(model, head, frames: FrameSet, batch_size: int = 256) -> dict[str, float]:
    """Mean next-token cross-entropy and accuracy of the backbone alone and with the head."""
    totals = {"base_ce": 0.0, "head_ce": 0.0, "base_accuracy": 0.0, "head_accuracy": 0.0}
    count = 0
    for first in range(0, len(frames.hidden), batch_size):
        hidden = frames.hidden[first:first + batch_size]
        target = frames.target[first:first + batch_size]
        base = model.token_logits(hidden, frames.current[first:first + batch_size]).float()
        full = base + head.delta_logits(hidden, target).float()
        for name, logits in (("base", base), ("head", full)):
            totals[f"{name}_ce"] += F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="sum").item()
            totals[f"{name}_accuracy"] += (logits.argmax(-1) == target).sum().item()
        count += target.numel()
    return {k: v / count for k, v in totals.items()}


def run_train_spatial_head(config: SpatialHeadTrainConfig) -> dict[str, Any]:
    """Fit the head as the module docstring says; returns the dict written to spatial_head.json.

    Raises:
        roboscape_r.checkpoint.CheckpointError: a missing/corrupt checkpoint or one of the wrong kind.
        roboscape_r.data.format.DatasetError: no dataset at --data or --val-data.
        ValueError: tokenizer and world model disagree, or a split has no (successful) episodes.
    """
    from roboscape_r.checkpoint import load_checkpoint, save_checkpoint
    from roboscape_r.tokenizer import load_tokenizer
    from roboscape_r.worldmodel.data import fit_and_val_episodes
    from roboscape_r.worldmodel.evaluate import check_compatible
    from roboscape_r.worldmodel.spatial_head import SPATIAL_HEAD_KIND, SpatialARHead, SpatialHeadConfig, weights_digest
    from roboscape_r.worldmodel.train import load_world_model

    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    started = time.time()
    model = load_world_model(config.wm).requires_grad_(False)
    tokenizer = load_tokenizer(config.tokenizer)
    check_compatible(tokenizer, model, "--wm")
    successful_only = model.config.cond == "txt" if config.successful_only is None else config.successful_only
    cache = config.cache_dir or Path(config.out) / "token_cache"
    splits = fit_and_val_episodes(Path(config.data), config.val_data, tokenizer, Path(config.tokenizer), cache,
                                  val_fraction=config.val_fraction, split_seed=config.split_seed,
                                  hysteresis=model.config.token_hysteresis, progress=config.progress,
                                  keep=(lambda e: bool(e["success"].any())) if successful_only else None,
                                  kept="successful " if successful_only else "")
    text_encoder = None
    if model.config.cond == "txt":
        from roboscape_r.worldmodel.text_encoder import make_text_encoder

        text_encoder = make_text_encoder(config.text_encoder)
        if int(text_encoder.dim) != model.config.text_dim:
            raise ValueError(f"--text-encoder {config.text_encoder} gives {text_encoder.dim}-d embeddings but --wm "
                             f"takes {model.config.text_dim}-d ones; pass the encoder it was trained with")
    train, val = (_frame_set(model, splits[name], text_encoder, config.progress) for name in ("train", "val"))

    torch.manual_seed(config.seed)
    head = SpatialARHead(SpatialHeadConfig.for_world_model(model.config, width=config.width, n_layers=config.n_layers,
                                                           n_heads=config.n_heads))
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(min(100, config.steps // 10), config.steps, 0.1))
    sampler = StepBatchSampler(len(train.hidden), config.batch_size, config.seed, 0, config.steps)
    out = Path(config.out)
    state_path = out / "train_state.pt"
    # Options that change the training; the others (out, threads, progress, cache) may differ on resume.
    resume_config = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()
                     if k not in ("out", "num_threads", "progress", "cache_dir")}
    resume_config["world_model_digest"] = weights_digest(model)
    if state_path.is_file():
        state = load_checkpoint(state_path, expected_kind=STATE_KIND, expected_config=resume_config)
        head.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, extra = int(state["step"]), state["extra"]
        before, best, best_state, curve = extra["before"], extra["best"], extra["best_state"], extra["curve"]
        print(f"[spatial head] resuming from step {start} ({state_path})")
    else:
        start = 0
        head.eval()
        before = {"train": score(model, head, train), "val": score(model, head, val)}
        best = {"step": 0, **before["val"]}
        best_state = {k: v.clone() for k, v in head.state_dict().items()}
        curve = []
    bar = tqdm(range(start + 1, config.steps + 1), initial=start, total=config.steps, desc="spatial head",
               unit="step", disable=not config.progress)
    for step in bar:
        head.train()
        index = torch.tensor(sampler.batch_indices(step - 1))
        hidden, target = train.hidden[index], train.target[index]
        with torch.no_grad():
            base = model.token_logits(hidden, train.current[index]).float()
        loss = F.cross_entropy((base + head.delta_logits(hidden, target)).flatten(0, 1), target.flatten())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"spatial head loss is {loss.item()} at step {step}; the best head so far "
                                     f"(step {best['step']}) is kept in memory only, nothing was written")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if step % config.eval_every == 0 or step == config.steps:
            head.eval()
            val_scores = score(model, head, val)
            curve.append({"step": step, "train_loss": loss.item(), **{f"val_{k}": v for k, v in val_scores.items()}})
            bar.set_postfix(val_ce=f"{val_scores['head_ce']:.3f}", base=f"{val_scores['base_ce']:.3f}")
            if val_scores["head_ce"] < best["head_ce"]:
                best = {"step": step, **val_scores}
                best_state = {k: v.clone() for k, v in head.state_dict().items()}
            # The minibatch of a step depends on the step alone (StepBatchSampler), so a resumed run
            # continues exactly where this one would have.
            save_checkpoint(state_path, kind=STATE_KIND, config=resume_config, model_state=head.state_dict(),
                            optimizer_state=optimizer.state_dict(), scheduler_state=scheduler.state_dict(), step=step,
                            extra={"before": before, "best": best, "best_state": best_state, "curve": curve})
    head.load_state_dict(best_state)
    head.eval()
    after = {"train": score(model, head, train), "val": score(model, head, val)}

    out.mkdir(parents=True, exist_ok=True)
    report = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()},
        "world_model": {"path": str(config.wm), "kind": f"wm_{model.config.cond}", "digest": weights_digest(model)},
        "successful_only": successful_only,
        "episodes": {name: len(eps) for name, eps in splits.items()},
        "frames": {"train": len(train.hidden), "val": len(val.hidden)},
        "before": before, "after": after, "chosen_step": best["step"], "curve": curve,
        "parameters": sum(p.numel() for p in head.parameters()),
        "wall_s": time.time() - started,
    }
    save_checkpoint(out / "spatial_head.pt", kind=SPATIAL_HEAD_KIND, model_state=head.state_dict(), step=best["step"],
                    config={"head": head.config.to_dict(), "world_model_digest": report["world_model"]["digest"],
                            "world_model_path": str(config.wm), "train": report["config"]},
                    extra={"scores": {"before": before, "after": after}})
    atomic_write_json(out / "spatial_head.json", report)
    state_path.unlink(missing_ok=True)  # finished: a rerun starts afresh
    return report
