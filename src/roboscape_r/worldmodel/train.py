"""Training of WM_act / WM_txt on clips of frame tokens: one readable loop.

Clips come from a map-style dataset of dicts (see `train_world_model`). Frames are tokenised
on the fly by the frozen tokenizer, unless the clips already carry "tokens" (much faster on
CPU). Losses: cross-entropy of the next frame's tokens + BCE of the done head.

Exact resume: the data order is a function of (seed, epoch) and the position a function of
the step, and every step reseeds torch's RNG from (seed, rank, step), so dropout masks and
clip crops do not depend on how the run was split into calls, nor on the rank count at save.
DDP: launch with `torchrun --nproc_per_node=N`; gloo on CPU, NCCL on CUDA; `batch_size` is
the global batch, split across ranks; only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from tqdm import tqdm

from roboscape_r.atomic import atomic_write_json
from roboscape_r.checkpoint import (
    CheckpointError,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from roboscape_r.runconfig import RUNTIME_FIELDS, resume_relevant
from roboscape_r.worldmodel.config import WMTrainConfig, WorldModelConfig
from roboscape_r.worldmodel.text_encoder import TextEncoder, make_text_encoder
from roboscape_r.worldmodel.world_model import WorldModel, world_model_losses

__all__ = [
    "RUNTIME_FIELDS",
    "NonFiniteLossError",
    "WMTrainConfig",
    "WMTrainResult",
    "load_world_model",
    "train_world_model",
]


class NonFiniteLossError(RuntimeError):
    """Training stopped because a loss or gradient became NaN/inf; no checkpoint was written for it."""


class WMTrainResult(NamedTuple):
    """What a call of `train_world_model` leaves behind."""

    checkpoint: Path
    """The newest checkpoint of the run."""
    step: int
    """Optimizer steps done so far in the run."""
    model_config: WorldModelConfig
    """The architecture actually trained (grid and vocabulary filled in from the data)."""
    last_losses: dict[str, float]
    """Losses of the last step of this call (empty if it took no step)."""


# ------------------------------------------------------------------------------- public API


def train_world_model(
    config: WMTrainConfig,
    clips_dataset: Dataset | Sequence[dict[str, Any]],
    tokenizer: Any | None,
    out_dir: str | Path,
    *,
    text_encoder: TextEncoder | None = None,
) -> WMTrainResult:
    """Train (or resume training) a world model on clips.

    Args:
        config: the run's WMTrainConfig.
        clips_dataset: map-style dataset of dicts: "frames" uint8 (T, H, W, 3) and/or
            "tokens" int (T, h, w) (used instead of frames when every clip of a batch has it),
            "actions" float32 (T, A) (action t applied after frame t; WM_act),
            "success"/"done" bool (T,) (label t describes the state after action t),
            "instruction" str (WM_txt); other keys are ignored.
        tokenizer: frozen frame tokenizer with `encode(uint8 (B,H,W,3)) -> long (B,h,w)`;
            may be None when every clip carries "tokens".
        out_dir: run folder: config.json, tb/ (TensorBoard), checkpoints/ckpt_00001234.pt (one per saved step).
        text_encoder: WM_txt's instruction encoder (default: `make_text_encoder(config.text_encoder)`).

    Returns:
        WMTrainResult(checkpoint, step, model_config, last_losses).

    Raises:
        ValueError: bad clips (shapes, missing keys, too few clips for one batch).
        NonFiniteLossError: the loss or gradient became NaN/inf; names the step and the last
            good checkpoint, which is left untouched.
        roboscape_r.checkpoint.CheckpointError: a checkpoint in out_dir does not fit this config,
            or resume=False and out_dir already holds checkpoints.
    """
    out_dir = Path(out_dir)
    clips_dataset = select_successful(clips_dataset) if config.uses_success_only else clips_dataset
    rank, world_size, local_rank, own_group = _init_distributed(config.device)
    try:
        return _train(config, clips_dataset, tokenizer, out_dir, text_encoder, rank, world_size, local_rank)
    finally:
        if own_group:
            dist.destroy_process_group()


def select_successful(clips_dataset: Dataset | Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The clips (episodes) whose "success" label is true at some step.

    Raises:
        ValueError: none succeeds, or a clip has no "success" key.
    """
    kept = []
    for i in range(len(clips_dataset)):
        clip = clips_dataset[i]
        if "success" not in clip:
            raise ValueError(f"clip {i} has no 'success' labels; success_only training needs them")
        if bool(torch.as_tensor(clip["success"]).any()):
            kept.append(clip)
    if not kept:
        raise ValueError(f"none of the {len(clips_dataset)} episodes succeeds; train WM_txt on a dataset with "
                         "successful (expert) episodes, or pass success_only=False")
    return kept


def load_world_model(
    path: str | Path, kind: str | None = None, *, map_location: str | torch.device = "cpu"
) -> WorldModel:
    """Rebuild a trained world model from a checkpoint alone.

    Args:
        path: a checkpoint file or a run folder (its checkpoints/ or itself; newest checkpoint).
        kind: 'act'/'wm_act' or 'txt'/'wm_txt'; None accepts either.
        map_location: device of the weights.

    Returns:
        The WorldModel in eval mode.

    Raises:
        roboscape_r.checkpoint.CheckpointError: missing/corrupt file or a different kind.
    """
    path = Path(path)
    if path.is_dir() and (path / "checkpoints").is_dir():
        path = path / "checkpoints"
    if kind is None:
        newest = latest_checkpoint(path) if path.is_dir() else path
        kind = _peek_kind(newest if newest is not None else path)
    expected_kind = kind if kind.startswith("wm_") else f"wm_{kind}"
    if expected_kind not in ("wm_act", "wm_txt"):
        raise ValueError(f"kind must be 'act' or 'txt' (or 'wm_act'/'wm_txt'), got {kind!r}")
    ckpt = load_checkpoint(path, expected_kind=expected_kind, map_location=map_location)
    model = WorldModel(WorldModelConfig.from_dict(ckpt["config"]["model"]))
    model.load_state_dict(ckpt["model"])
    return model.to(map_location).eval()


# ------------------------------------------------------------------------------- the loop


def _train(
    config: WMTrainConfig,
    dataset: Dataset | Sequence[dict[str, Any]],
    tokenizer: Any | None,
    out_dir: Path,
    text_encoder: TextEncoder | None,
    rank: int,
    world_size: int,
    local_rank: int,
) -> WMTrainResult:
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    device = _resolve_device(config.device, local_rank if world_size > 1 else None)
    if config.batch_size % world_size != 0:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by {world_size} ranks")
    rank_batch = config.batch_size // world_size
    if isinstance(tokenizer, torch.nn.Module):
        tokenizer.eval().requires_grad_(False)
    if config.kind == "txt" and text_encoder is None:
        text_encoder = make_text_encoder(config.text_encoder)

    model_config = _model_config(config, dataset, tokenizer, text_encoder)
    ckpt_dir = out_dir / "checkpoints"
    saved_config = {"model": model_config.to_dict(), "train": resume_relevant(config)}

    torch.manual_seed(config.seed)
    model = WorldModel(model_config).to(device)
    optimizer = _make_optimizer(model, config, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config))

    step = 0
    newest = latest_checkpoint(ckpt_dir)
    if newest is not None:
        if not config.resume:
            raise CheckpointError(f"{ckpt_dir} already holds checkpoints and resume=False; use a new out_dir")
        # Loaded on the CPU: RNG states must stay CPU tensors; load_state_dict moves the rest.
        ckpt = load_checkpoint(newest, expected_kind=model_config.kind, expected_config=saved_config)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        restore_rng_state(ckpt)
        step = ckpt["step"]
    elif config.init_weights is not None:
        init = load_world_model(config.init_weights, kind=model_config.kind)
        # A model without a spatial head may start one that has a new head (a zero correction at first).
        adds_head = init.config.spatial_head_layers == 0 and model_config.spatial_head_layers > 0
        head_fields = ("spatial_head_layers", "spatial_head_width") if adds_head else ()
        # Token hysteresis is how real frames are tokenised, not architecture: fine-tuning may change it.
        free_fields = (*head_fields, "token_hysteresis")
        comparable = dataclasses.replace(model_config, **{f: getattr(init.config, f) for f in free_fields})
        if init.config.to_dict() != comparable.to_dict():
            raise CheckpointError(f"init_weights {config.init_weights} has model config {init.config.to_dict()}, "
                                  f"this run builds {model_config.to_dict()}; fine-tune with the same architecture "
                                  "(adding a spatial head and changing token_hysteresis are the changes allowed)")
        missing, unexpected = model.load_state_dict(init.state_dict(), strict=not adds_head)
        if unexpected or any(not key.startswith("spatial_head.") for key in missing):
            raise CheckpointError(f"init_weights {config.init_weights} does not fit this model: missing {missing}, "
                                  f"unexpected {unexpected}")
    last_good = newest

    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        run_config = {"train": dataclasses.asdict(config), "model": model_config.to_dict(), "world_size": world_size}
        atomic_write_json(out_dir / "config.json", run_config)

    train_model: torch.nn.Module = model
    if world_size > 1:
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    end_step = config.steps if config.run_steps is None else min(config.steps, step + config.run_steps)
    batch_sampler = _ClipBatchSampler(len(dataset), rank_batch, config.seed, rank, world_size, step, end_step)
    loader = DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=config.num_workers,
        collate_fn=list,
        generator=torch.Generator(),  # keeps the loader from drawing on the global RNG
    )

    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out_dir / "tb"), purge_step=step)
        if step == 0:
            rows = "\n".join(f"|{k}|{v}|" for k, v in {**dataclasses.asdict(config), "model": model_config}.items())
            writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{rows}")
    progress = tqdm(
        total=config.steps, initial=step, desc=f"train {model_config.kind}", disable=rank != 0 or not config.progress
    )
    def save() -> Path:
        path = checkpoint_path(ckpt_dir, step)
        if rank == 0:
            save_checkpoint(
                path,
                kind=model_config.kind,
                config=saved_config,
                model_state=model.state_dict(),
                optimizer_state=optimizer.state_dict(),
                scheduler_state=scheduler.state_dict(),
                step=step,
                extra={"data_position": batch_sampler.position(step), "world_size": world_size},
                keep_last=config.keep_last,
            )
        if world_size > 1:
            dist.barrier()
        return path

    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=config.bf16)
    start_time = time.perf_counter()
    window_time, window_steps = time.perf_counter(), 0
    last_losses: dict[str, float] = {}
    train_model.train()
    try:
        for clips in loader:
            torch.manual_seed(_step_seed(config.seed, rank, step))
            tokens, actions, done, instructions = _collate(clips, config, model_config, tokenizer, device)
            instruction_embeddings = None
            if model_config.cond == "txt":
                instruction_embeddings = text_encoder.encode(instructions).to(device)
            with autocast:
                output = train_model(
                    tokens,
                    actions=actions if model_config.cond == "act" else None,
                    instruction_embeddings=instruction_embeddings,
                )
            losses = world_model_losses(output, tokens, done, config.done_weight)
            optimizer.zero_grad(set_to_none=True)
            losses.total.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            # DDP has averaged the gradients, so a NaN on any rank shows in every rank's grad_norm.
            if not (torch.isfinite(losses.total) and torch.isfinite(grad_norm)):
                raise NonFiniteLossError(
                    f"non-finite {'loss' if not torch.isfinite(losses.total) else 'gradient'} at step {step + 1} "
                    f"(token_ce={losses.token_ce.item():.4g}, done_bce={losses.done_bce.item():.4g}, "
                    f"grad_norm={grad_norm.item():.4g}); training stopped without saving it. "
                    f"Last good checkpoint: {last_good}"
                )
            optimizer.step()
            scheduler.step()
            step += 1
            window_steps += 1
            progress.update(1)

            if step % config.log_every == 0 or step == end_step:
                metrics = torch.stack([losses.total, losses.token_ce, losses.done_bce, losses.token_accuracy]).detach()
                if world_size > 1:
                    dist.all_reduce(metrics)
                    metrics /= world_size
                total, token_ce, done_bce, accuracy = metrics.tolist()
                last_losses = {"total": total, "token_ce": token_ce, "done_bce": done_bce, "token_accuracy": accuracy}
                now = time.perf_counter()
                steps_per_s = window_steps / max(now - window_time, 1e-9)
                window_time, window_steps = now, 0
                if writer is not None:
                    writer.add_scalar("losses/total", total, step)
                    writer.add_scalar("losses/token_ce", token_ce, step)
                    writer.add_scalar("losses/done_bce", done_bce, step)
                    writer.add_scalar("charts/token_accuracy", accuracy, step)
                    writer.add_scalar("charts/lr", scheduler.get_last_lr()[0], step)
                    writer.add_scalar("charts/grad_norm", grad_norm.item(), step)
                    writer.add_scalar("time/steps_per_s", steps_per_s, step)
                    frames_per_step = tokens.shape[0] * tokens.shape[1] * world_size
                    writer.add_scalar("time/frames_per_s", steps_per_s * frames_per_step, step)
                progress.set_postfix(loss=f"{total:.3f}", acc=f"{accuracy:.3f}")

            out_of_time = _out_of_time(config.time_limit_s, start_time, world_size, device)
            if step % config.ckpt_every == 0 or step == end_step or out_of_time:
                last_good = save()
            if out_of_time:
                break
    finally:  # also when a NaN or an interrupt stops the loop
        progress.close()
        if writer is not None:
            writer.close()
    if last_good is None or _step_of(last_good) != step:
        last_good = save()
    return WMTrainResult(last_good, step, model_config, last_losses)


# ------------------------------------------------------------------------------- data


class _ClipBatchSampler(Sampler[list[int]]):
    """Yields this rank's clip indices for steps [start_step, end_step).

    Epoch e's order is DistributedSampler's permutation for seed and e (drop_last), so the
    batch of any step is known without replaying the earlier ones.
    """

    def __init__(
        self, num_clips: int, rank_batch: int, seed: int, rank: int, world_size: int, start_step: int, end_step: int
    ) -> None:
        self.sampler = DistributedSampler(
            range(num_clips), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.rank_batch = rank_batch
        self.batches_per_epoch = len(self.sampler) // rank_batch
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"the dataset has {num_clips} clips, fewer than one batch of {rank_batch} per rank "
                f"x {world_size} ranks; lower batch_size or add clips"
            )
        self.start_step, self.end_step = start_step, end_step

    def position(self, step: int) -> dict[str, int]:
        """Data position of the batch taken at `step` (0-based): epoch and batch within it."""
        epoch, batch = divmod(step, self.batches_per_epoch)
        return {"epoch": epoch, "batch_in_epoch": batch}

    def __len__(self) -> int:
        return max(self.end_step - self.start_step, 0)

    def __iter__(self):
        epoch, order = None, []
        for step in range(self.start_step, self.end_step):
            position = self.position(step)
            if position["epoch"] != epoch:
                epoch = position["epoch"]
                self.sampler.set_epoch(epoch)
                order = list(self.sampler)
            first = position["batch_in_epoch"] * self.rank_batch
            yield order[first : first + self.rank_batch]


def _collate(
    clips: list[dict[str, Any]],
    config: WMTrainConfig,
    model_config: WorldModelConfig,
    tokenizer: Any | None,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, list[str]]:
    """Crop clips to one length and stack: tokens (B,T,h,w), actions (B,T,A), done (B,T), instructions."""
    lengths = [_clip_length(clip, i) for i, clip in enumerate(clips)]
    T = min(config.clip_len, *lengths)
    if T < 2:
        raise ValueError(f"clips need at least 2 frames to predict a next frame; got lengths {lengths}")
    starts = [int(torch.randint(0, length - T + 1, ())) for length in lengths]

    def crops(key: str, dtype: np.dtype | None = None) -> torch.Tensor:
        try:
            arrays = [np.asarray(clip[key][start : start + T], dtype=dtype) for clip, start in zip(clips, starts)]
            return torch.stack([torch.as_tensor(array) for array in arrays])
        except KeyError as error:
            raise ValueError(f"every clip must carry {key!r}; got keys {sorted(clips[0])}") from error

    if all("tokens" in clip for clip in clips):
        tokens = crops("tokens").to(device, torch.long)  # (B, T, h, w)
    elif tokenizer is None:
        raise ValueError("clips carry no 'tokens' and no tokenizer was given to tokenise their 'frames'")
    elif model_config.token_hysteresis:
        raise ValueError(f"token_hysteresis {model_config.token_hysteresis:g} needs whole episodes tokenised in order, "
                         "not random crops of frames: give clips with 'tokens' "
                         "(roboscape_r.worldmodel.data.tokenized_episodes with hysteresis=...)")
    else:
        tokens = _tokenize(crops("frames"), tokenizer, device)  # (B, T, h, w)
    B = len(clips)
    if tuple(tokens.shape[2:]) != (model_config.grid_h, model_config.grid_w):
        expected = (model_config.grid_h, model_config.grid_w)
        raise ValueError(f"clip tokens have grid {tuple(tokens.shape[2:])}, the model expects {expected}")
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= model_config.codebook_size:
        raise ValueError(f"clip tokens span [{low}, {high}], outside the codebook [0, {model_config.codebook_size})")
    actions = None
    if model_config.cond == "act":
        actions = crops("actions", np.float32)  # (B, T, A)
        if tuple(actions.shape) != (B, T, model_config.action_dim):
            raise ValueError(f"clip actions must be (T, {model_config.action_dim}), got {tuple(actions.shape[1:])}")
        actions = actions.to(device)
    if config.token_remap_prob > 0:
        tokens = remap_token_ids(tokens, model_config.codebook_size, config.token_remap_prob, config.token_remap_fraction)
    done = crops(config.done_key, np.float32).to(device)  # (B, T)
    instructions = [str(c.get("instruction", "")) for c in clips]
    return tokens, actions, done, instructions


def remap_token_ids(tokens: torch.Tensor, codebook_size: int, prob: float, max_fraction: float) -> torch.Tensor:
    """Scramble the token identities of a random share `prob` of the clips (training augmentation).

    For each chosen clip a random subset of the codebook (a share drawn uniformly from
    (0, max_fraction]) is permuted among itself, and the permutation is applied to every cell of
    every frame of that clip. It is a bijection, so a cell that keeps its token keeps it and a
    cell that changes still changes: the clip's dynamics are intact, only what each token looks
    like has moved. Draws from the global torch RNG (seeded per step by the trainer).

    Args:
        tokens: long (B, T, h, w) token ids in [0, codebook_size).
        codebook_size: number of token ids.
        prob: probability that a clip is scrambled.
        max_fraction: largest share of the codebook that is permuted.

    Returns:
        long (B, T, h, w): a new tensor; unchosen clips are unchanged.
    """
    B = tokens.shape[0]
    tables = torch.arange(codebook_size, device=tokens.device).repeat(B, 1)  # (B, V): identity per clip
    for b in torch.nonzero(torch.rand(B) < prob).flatten().tolist():  # a few clips a step, not per-token work
        count = max(2, int(torch.rand(()) * max_fraction * codebook_size))
        chosen = torch.randperm(codebook_size)[:count]
        tables[b, chosen.to(tokens.device)] = chosen[torch.randperm(count)].to(tokens.device)
    return torch.gather(tables, 1, tokens.flatten(1)).view_as(tokens)


def _clip_length(clip: dict[str, Any], index: int) -> int:
    if "tokens" in clip:
        return len(clip["tokens"])
    if "frames" in clip:
        return len(clip["frames"])
    raise ValueError(f"clip {index} has neither 'frames' nor 'tokens' (keys: {sorted(clip)})")


def _tokenize(frames: torch.Tensor, tokenizer: Any, device: torch.device) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> long (B, T, h, w) with the frozen tokenizer."""
    B, T = frames.shape[:2]
    tokenizer_device = _module_device(tokenizer, device)
    with torch.no_grad():  # not inference_mode: the tokens index an embedding that is trained
        tokens = tokenizer.encode(frames.flatten(0, 1).to(tokenizer_device))  # (B*T, h, w)
    return tokens.view(B, T, *tokens.shape[1:]).to(device, torch.long)


def _model_config(
    config: WMTrainConfig, dataset: Any, tokenizer: Any | None, text_encoder: TextEncoder | None
) -> WorldModelConfig:
    """The trained architecture: config.model with cond, grid, vocabulary and text size filled in."""
    if len(dataset) == 0:
        raise ValueError("the clips dataset is empty")
    first = dataset[0]
    if "tokens" in first:
        grid = tuple(np.asarray(first["tokens"]).shape[1:])
    else:
        if tokenizer is None:
            raise ValueError("clips carry no 'tokens' and no tokenizer was given to tokenise their 'frames'")
        one_frame = torch.as_tensor(np.asarray(first["frames"][:1]))[None]  # (1, 1, H, W, 3)
        grid = tuple(_tokenize(one_frame, tokenizer, torch.device("cpu")).shape[2:])
    if len(grid) != 2:
        raise ValueError(f"clip tokens must be (T, h, w), got grid {grid}")
    updates: dict[str, Any] = {"cond": config.kind, "grid_h": int(grid[0]), "grid_w": int(grid[1])}
    codebook_size = _tokenizer_attribute(tokenizer, "codebook_size")
    if codebook_size is not None:
        updates["codebook_size"] = int(codebook_size)
    if config.kind == "txt" and text_encoder is not None:
        updates["text_dim"] = int(text_encoder.dim)
    if config.kind == "act" and "actions" in first:
        action_dim = np.asarray(first["actions"]).shape[-1]
        if action_dim != config.model.action_dim:
            raise ValueError(
                f"clip actions have {action_dim} dims, WMTrainConfig.model.action_dim is {config.model.action_dim}"
            )
    return dataclasses.replace(config.model, **updates)


def _tokenizer_attribute(tokenizer: Any | None, name: str) -> Any | None:
    if tokenizer is None:
        return None
    if hasattr(tokenizer, name):
        return getattr(tokenizer, name)
    return getattr(getattr(tokenizer, "config", None), name, None)


def _module_device(obj: Any, default: torch.device) -> torch.device:
    if isinstance(obj, torch.nn.Module):
        for tensor in obj.parameters():
            return tensor.device
    return default


# ------------------------------------------------------------------------------- helpers


def _make_optimizer(model: WorldModel, config: WMTrainConfig, device: torch.device) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.adam_betas, fused=device.type == "cuda")


def _lr_lambda(config: WMTrainConfig):
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / (config.warmup_steps + 1)
        progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine

    return factor


def _step_seed(seed: int, rank: int, step: int) -> int:
    return hash((seed, rank, step)) & 0x7FFF_FFFF_FFFF



def _step_of(path: Path) -> int:
    return int(path.stem.split("_")[-1])


def _out_of_time(time_limit_s: float | None, start_time: float, world_size: int, device: torch.device) -> bool:
    if time_limit_s is None:
        return False
    out = torch.tensor(float(time.perf_counter() - start_time > time_limit_s), device=device)
    if world_size > 1:  # rank 0's clock decides, so that every rank stops at the same step
        dist.broadcast(out, src=0)
    return bool(out.item())


def _peek_kind(path: Path) -> str:
    for kind in ("wm_act", "wm_txt"):
        try:
            load_checkpoint(path, expected_kind=kind)
            return kind
        except CheckpointError as error:
            if "was expected" not in str(error):
                raise
    raise CheckpointError(f"checkpoint {path} holds neither a 'wm_act' nor a 'wm_txt' model")


def _resolve_device(device: str, local_rank: int | None) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available")
        if local_rank is not None:
            resolved = torch.device("cuda", local_rank)
        elif resolved.index is None:
            resolved = torch.device("cuda", 0)
        torch.cuda.set_device(resolved)
    return resolved


def _init_distributed(device: str) -> tuple[int, int, int, bool]:
    """(rank, world_size, local_rank, whether we created the process group) from torchrun's env."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, 0, False
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return rank, world_size, local_rank, False
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return rank, world_size, local_rank, True
