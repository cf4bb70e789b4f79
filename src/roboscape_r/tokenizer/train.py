"""Training loop of the tokenizer: Adam, warm-up + cosine schedule, atomic checkpoints, exact resume.

`train_tokenizer(config, frames_source, out_dir)` trains on any map-style dataset of uint8
frames and can be called again on the same `out_dir` to continue where it stopped: the
weights, optimizer, schedule, RNG states and data position come back from the newest
checkpoint, so N steps in one call and N/2 + N/2 in two calls give the same weights.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from roboscape_r.atomic import atomic_write_json
from roboscape_r.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from roboscape_r.runconfig import resume_relevant
from roboscape_r.tokenizer.augment import photometric_augment
from roboscape_r.tokenizer.config import TokenizerTrainConfig
from roboscape_r.tokenizer.losses import LossTerms, TokenizerLoss
from roboscape_r.tokenizer.model import CHECKPOINT_KIND, Tokenizer

METRIC_NAMES = ("losses/total", "losses/l1", "losses/l2", "losses/perceptual", "losses/entropy",
                "losses/commitment", "charts/per_sample_entropy", "charts/batch_entropy", "charts/grad_norm")


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient norm became NaN or infinite during training."""


class TrainResult(NamedTuple):
    """What `train_tokenizer` returns."""

    checkpoint_path: Path
    """Newest checkpoint (load it with `load_tokenizer`)."""
    step: int
    """Optimizer steps done so far in this run (over all calls)."""
    finished: bool
    """True once `step == config.steps`; False after a run_steps/time_limit_s stop."""
    metrics: dict[str, float]
    """Last logged scalars (interval means), e.g. "losses/total", "charts/psnr_db"."""


class WarmupCosine:
    """LR multiplier: linear warm-up to 1 over `warmup_steps`, then cosine down to `min_ratio` at `total_steps`.

    A class rather than a lambda so that LambdaLR's state_dict stores its settings.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class StepBatchSampler(Sampler[list[int]]):
    """Index batches for steps `start_step` .. `end_step - 1`; the batch of a step depends only on (seed, step).

    The items form one stream of shuffled epochs (a fresh permutation per epoch, seeded by
    (seed, epoch)); step s takes stream positions [s * batch_size, (s + 1) * batch_size). The data
    position of a resumed run is therefore just its step.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, start_step: int, end_step: int) -> None:
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.end_step = end_step
        self._epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.end_step):
            yield self.batch_indices(step)

    def batch_indices(self, step: int) -> list[int]:
        """Dataset indices of the batch of `step`."""
        indices = []
        for position in range(step * self.batch_size, (step + 1) * self.batch_size):
            epoch, offset = divmod(position, self.num_items)
            if epoch != self._epoch:
                generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                self._perm = torch.randperm(self.num_items, generator=generator)
                self._epoch = epoch
            indices.append(int(self._perm[offset]))
        return indices


def collate_frames(items: list[Any]) -> torch.Tensor:
    """Stack dataset items, each a uint8 (H, W, 3) frame or (N, H, W, 3) clip, into (sum N, H, W, 3)."""
    frames = [torch.as_tensor(item) for item in items]
    for item in frames:
        if item.dtype != torch.uint8:
            raise ValueError(f"dataset items must be uint8 frames (H, W, 3) or (N, H, W, 3), got dtype {item.dtype}")
    return torch.cat([item if item.ndim == 4 else item.unsqueeze(0) for item in frames])


def check_frames_source(frames_source: Any, image_size: int) -> None:
    """Raise TypeError/ValueError unless `frames_source` is a non-empty map-style dataset of uint8
    (image_size, image_size, 3) frames or (N, image_size, image_size, 3) clips (checked on item 0)."""
    if not (hasattr(frames_source, "__len__") and hasattr(frames_source, "__getitem__")):
        raise TypeError(
            "frames_source must be a map-style dataset (len() and [i]) whose items are uint8 (H, W, 3) "
            f"tensors, got {type(frames_source).__name__}; a uint8 tensor (N, H, W, 3) also works"
        )
    if len(frames_source) == 0:
        raise ValueError("frames_source is empty")
    first = torch.as_tensor(frames_source[0])
    expected = f"uint8 frames ({image_size}, {image_size}, 3) or clips (N, {image_size}, {image_size}, 3)"
    if first.dtype != torch.uint8:
        raise ValueError(f"frames_source items must be {expected}, got dtype {first.dtype}")
    if first.ndim not in (3, 4) or tuple(first.shape[-3:]) != (image_size, image_size, 3):
        hint = " (channel-first? permute to (H, W, 3))" if first.ndim in (3, 4) and first.shape[-3] == 3 else ""
        raise ValueError(
            f"frames_source items must be {expected} to match TokenizerConfig.image_size, got shape "
            f"{tuple(first.shape)}{hint}"
        )


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA if available else CPU; anything else is passed to torch.device (CUDA checked)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available; use device='cpu'")
    return resolved


def train_tokenizer(config: TokenizerTrainConfig, frames_source: Any, out_dir: str | Path) -> TrainResult:
    """Train (or continue training) a tokenizer, writing checkpoints and TensorBoard logs to `out_dir`.

    Args:
        config: the run's settings; on resume every field outside `roboscape_r.runconfig.RUNTIME_FIELDS` must
            match the checkpoint's.
        frames_source: map-style dataset whose items are uint8 frames (H, W, 3) or clips
            (N, H, W, 3), H = W = config.model.image_size; a uint8 tensor (N, H, W, 3) works too.
        out_dir: run folder: `ckpt_NNNNNNNN.pt` files, `config.json` and TensorBoard logs in `tb/`.

    Returns:
        TrainResult (newest checkpoint, step, whether config.steps was reached, last metrics).

    Raises:
        TypeError, ValueError: bad frames_source or device.
        FileExistsError: `out_dir` has checkpoints and config.resume is False.
        roboscape_r.checkpoint.CheckpointError: the newest checkpoint does not match `config`.
        NonFiniteLossError: the loss or gradient norm became NaN/inf; names the step. Nothing is
            saved after it, so the newest checkpoint in `out_dir` is the last good one.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    check_frames_source(frames_source, config.model.image_size)
    latest = latest_checkpoint(out_dir)
    if latest is not None and not config.resume:
        raise FileExistsError(f"{out_dir} already holds checkpoints ({latest.name}); pass resume=True or a new folder")

    torch.manual_seed(config.seed)
    model = Tokenizer(config.model, entropy_sample_fraction=config.entropy_sample_fraction).to(device)
    loss_fn = TokenizerLoss(config, model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.adam_betas)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupCosine(config.warmup_steps, config.steps, config.min_lr_ratio)
    )
    ckpt = None
    start_step = 0
    if latest is not None:
        ckpt = load_checkpoint(latest, expected_kind=CHECKPOINT_KIND, expected_config=resume_relevant(config))
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        loss_fn.load_state_dict(ckpt["extra"]["loss_state"])
        start_step = ckpt["step"]
    end_step = config.steps if config.run_steps is None else min(config.steps, start_step + config.run_steps)
    if start_step >= end_step:
        return TrainResult(latest, start_step, start_step >= config.steps, {})

    atomic_write_json(out_dir / "config.json", dataclasses.asdict(config))
    loader = DataLoader(
        frames_source,
        batch_sampler=StepBatchSampler(len(frames_source), config.batch_size, config.seed, start_step, end_step),
        collate_fn=collate_frames,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        # Its own generator: creating the loader must not draw from the global RNG, or a
        # resumed run would continue from a different RNG state than an uninterrupted one.
        generator=torch.Generator().manual_seed(config.seed),
    )
    batches = iter(loader)
    if ckpt is not None:
        restore_rng_state(ckpt)  # last, after everything that draws random numbers while building

    writer = SummaryWriter(str(out_dir / "tb"), purge_step=start_step if start_step > 0 else None)
    writer.add_text("hyperparameters", _markdown_table(dataclasses.asdict(config)), global_step=start_step)
    progress = tqdm(total=config.steps, initial=start_step, disable=not config.progress, desc="tokenizer",
                    dynamic_ncols=True)

    def save(step: int) -> Path:
        return save_checkpoint(
            checkpoint_path(out_dir, step),
            kind=CHECKPOINT_KIND,
            config=dataclasses.asdict(config),
            model_state=model.state_dict(),
            optimizer_state=optimizer.state_dict(),
            scheduler_state=scheduler.state_dict(),
            step=step,
            extra={"data_position": step * config.batch_size, "loss_state": loss_fn.state_dict()},
            keep_last=config.keep_last,
        )

    # Bookkeeping stays on the device; it is read (one sync) only when logging or saving.
    metric_sums = torch.zeros(len(METRIC_NAMES), device=device)
    first_bad_step = torch.full((), -1, dtype=torch.long, device=device)
    interval_steps, interval_frames, interval_start = 0, 0, time.perf_counter()
    call_start = time.monotonic()
    metrics: dict[str, float] = {}
    last_saved: Path | None = latest
    step = start_step
    model.train()
    try:
        while step < end_step:
            frames_uint8 = next(batches).to(device, non_blocking=True)  # (B, H, W, 3)
            frames_uint8 = photometric_augment(frames_uint8, config.augment_prob)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
                output = model(frames_uint8)
                terms: LossTerms = loss_fn(output, frames_uint8)
            optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            optimizer.step()
            scheduler.step()
            loss_fn.update_ema(model)
            step += 1

            finite = torch.isfinite(terms.total) & torch.isfinite(grad_norm)
            first_bad_step = torch.where(finite | (first_bad_step >= 0), first_bad_step, step)
            metric_sums += torch.stack([
                *(term.detach().float() for term in terms),
                output.per_sample_entropy.detach().float(), output.batch_entropy.detach().float(),
                grad_norm.detach().float(),
            ])
            interval_steps += 1
            interval_frames += frames_uint8.shape[0]
            progress.update(1)

            out_of_time = config.time_limit_s is not None and time.monotonic() - call_start > config.time_limit_s
            stopping = step == end_step or out_of_time
            if step % config.log_every == 0 or step % config.ckpt_every == 0 or stopping:
                _raise_if_nonfinite(first_bad_step, out_dir)
                elapsed = time.perf_counter() - interval_start
                metrics = dict(zip(METRIC_NAMES, (metric_sums / interval_steps).tolist()))
                metrics["charts/psnr_db"] = -10.0 * math.log10(max(metrics["losses/l2"], 1e-10))
                metrics["charts/lr"] = scheduler.get_last_lr()[0]
                metrics["charts/codebook_usage"] = (
                    output.indices.unique().numel() / min(model.config.codebook_size, output.indices.numel())
                )
                metrics["time/steps_per_s"] = interval_steps / elapsed
                metrics["time/frames_per_s"] = interval_frames / elapsed
                for name, value in metrics.items():
                    writer.add_scalar(name, value, step)
                progress.set_postfix(loss=f"{metrics['losses/total']:.4f}", psnr=f"{metrics['charts/psnr_db']:.1f}")
                metric_sums.zero_()
                interval_steps, interval_frames, interval_start = 0, 0, time.perf_counter()
            if step % config.ckpt_every == 0 or stopping:
                last_saved = save(step)
            if out_of_time:
                break
    finally:
        progress.close()
        writer.close()
    return TrainResult(last_saved, step, step >= config.steps, metrics)


def _raise_if_nonfinite(first_bad_step: torch.Tensor, out_dir: Path) -> None:
    bad_step = int(first_bad_step)
    if bad_step >= 0:
        kept = latest_checkpoint(out_dir)
        raise NonFiniteLossError(
            f"tokenizer training stopped: the loss or gradient norm was NaN/inf at step {bad_step}; nothing "
            f"after it was saved, the last good checkpoint is {kept if kept else '(none yet)'}. Lower lr or check "
            "the data, then start a new run folder"
        )


def _markdown_table(values: dict[str, Any], prefix: str = "") -> str:
    rows = []
    for key, value in values.items():
        if isinstance(value, dict):
            rows.append(_markdown_table(value, f"{prefix}{key}.").split("\n", 2)[2])
        else:
            rows.append(f"|{prefix}{key}|{value}|")
    return "|param|value|\n|-|-|\n" + "\n".join(rows)
