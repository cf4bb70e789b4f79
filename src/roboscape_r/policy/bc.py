"""Behaviour cloning from a collected dataset: a policy checkpoint PPO can start from (`bc_init`)
and a baseline of its own.

Every step t of a chosen episode gives one sample: frame `obs/rgb[t]` and the instruction
embedding of the episode (its `instruction` attribute, embedded once per distinct string)
-> target `actions[t]`, clipped to the action bounds [-1, 1] (the env clips anything outside,
so the policy cannot gain by predicting beyond them). The whole selection is held in memory
as uint8 frames (64x64: 12 KB a frame, 100k frames = 1.2 GB); with frame_preprocess='tokenizer'
the frames are round-tripped once at load time.

Run folder `out_dir`: checkpoints/ckpt_NNNNNNNN.pt (kind "policy"), metrics.jsonl, config.json, tb/.
Calling `train_bc` again on the folder resumes exactly (weights, optimizer, schedule, RNG, data position).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from roboscape_r.atomic import atomic_write_json
from roboscape_r.checkpoint import (
    CheckpointError,
    checkpoint_path,
    config_differences,
    latest_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from roboscape_r.data.dataset import split_episodes
from roboscape_r.data.format import iter_episode_meta, read_episode, read_manifest
from roboscape_r.policy.checkpoint import (
    POLICY_KIND,
    actor_critic_from_checkpoint,
    build_actor_critic,
    policy_checkpoint_config,
    read_policy_checkpoint,
)
from roboscape_r.policy.config import BCConfig, resume_relevant
from roboscape_r.policy.network import ActorCritic
from roboscape_r.policy.runtime import NonFiniteError, append_metrics, resolve_device, seed_everything, truncate_metrics
from roboscape_r.tokenizer.train import StepBatchSampler, WarmupCosine


class BCResult(NamedTuple):
    """What `train_bc` returns."""

    checkpoint_path: Path
    """Newest checkpoint (a policy: `load_policy` reads it, `train_ppo(bc_init=...)` starts from it)."""
    step: int
    """Optimizer steps done so far (over all calls)."""
    finished: bool
    """True once config.steps is reached."""
    metrics: dict[str, Any]
    """The last metrics row (train loss, and the validation action error once measured)."""


class BCData(NamedTuple):
    """Samples of one split, in memory."""

    frames: torch.Tensor
    """uint8 (M, S, S, 3), already through the policy's frame preprocessing."""
    actions: torch.Tensor
    """float32 (M, A), clipped to [-1, 1]."""
    instruction_ids: torch.Tensor
    """long (M,), rows of `embeddings`."""
    embeddings: torch.Tensor
    """float32 (U, D), one per distinct instruction of the split."""
    episodes: int
    """Number of episodes the samples come from."""


def select_episodes(dataset_dir: Path, config: BCConfig) -> list[dict]:
    """Manifest entries (with their shard name) of the episodes `config` asks for.

    Raises:
        DatasetError: not a dataset folder.
        ValueError: the frame size differs from PolicyConfig.image_size, or no episode passes the filters.
    """
    manifest = read_manifest(dataset_dir)
    image_size = manifest.get("config", {}).get("image_size")
    if image_size is not None and int(image_size) != config.policy.image_size:
        raise ValueError(f"dataset {dataset_dir} has {image_size}x{image_size} frames but PolicyConfig.image_size is "
                         f"{config.policy.image_size}; set policy.image_size={image_size}")
    metas = [dict(meta, shard=shard) for shard, meta in iter_episode_meta(manifest)]
    chosen = [m for m in metas if m["source"] in config.sources and (not config.success_only or m["success_once"])
              and (config.tasks is None or m["task"] in config.tasks)]
    if not chosen:
        sources = sorted({m["source"] for m in metas})
        successes = sum(m["success_once"] for m in metas)
        raise ValueError(
            f"no episode of {dataset_dir} passes the filters (sources {list(config.sources)}, success_only="
            f"{config.success_only}, tasks {config.tasks}); it has {len(metas)} episodes, sources {sources}, "
            f"{successes} successful, tasks {sorted({m['task'] for m in metas})}"
        )
    return chosen


def load_bc_data(dataset_dir: Path, metas: list[dict], model: ActorCritic, text_encoder: Any,
                 progress: bool = True) -> BCData:
    """Read the episodes `metas` into memory, preprocess their frames and embed their instructions.

    Raises:
        DatasetError: a corrupt shard.
        ValueError: actions whose size differs from PolicyConfig.action_dim.
    """
    frames, actions, instruction_ids = [], [], []
    texts: dict[str, int] = {}
    for meta in tqdm(metas, desc="bc data", disable=not progress, leave=False):
        episode = read_episode(dataset_dir / meta["shard"], meta["episode_index"])
        if episode["actions"].shape[1] != model.config.action_dim:
            raise ValueError(f"episode {meta['episode_index']} has {episode['actions'].shape[1]}-d actions but "
                             f"PolicyConfig.action_dim is {model.config.action_dim}")
        length = len(episode["actions"])
        frames.append(model.prepare_frames(torch.from_numpy(episode["frames"][:length])))  # (L, S, S, 3)
        actions.append(torch.from_numpy(episode["actions"]).float().clamp(-1.0, 1.0))
        text = str(episode["instruction"])
        instruction_ids.append(torch.full((length,), texts.setdefault(text, len(texts)), dtype=torch.long))
    embeddings = text_encoder.encode(list(texts)).float()  # (U, D), each distinct string once
    return BCData(torch.cat(frames), torch.cat(actions), torch.cat(instruction_ids), embeddings, len(metas))


def random_shift(frames_uint8: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ's augmentation: edge-pad (B, S, S, 3) frames by `pad` and crop each back at a random offset."""
    if pad == 0:
        return frames_uint8
    B, S = frames_uint8.shape[0], frames_uint8.shape[1]
    padded = torch.nn.functional.pad(frames_uint8.permute(0, 3, 1, 2).float(), (pad,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (B, 2), generator=generator, device=frames_uint8.device)
    arange = torch.arange(S, device=frames_uint8.device)
    rows = (offsets[:, 0:1] + arange)[:, :, None]  # (B, S, 1)
    cols = (offsets[:, 1:2] + arange)[:, None, :]  # (B, 1, S)
    batch = torch.arange(B, device=frames_uint8.device)[:, None, None]
    shifted = padded.permute(0, 2, 3, 1)[batch, rows, cols]  # (B, S, S, 3)
    return shifted.to(torch.uint8)


def bc_loss(model: ActorCritic, frames: torch.Tensor, embeddings: torch.Tensor, actions: torch.Tensor,
            kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, mean squared error of the mean action) of a batch; 'mse' or Gaussian 'nll' loss."""
    mean = model.action_mean(frames, embeddings)  # (B, A)
    mse = ((mean - actions) ** 2).mean()
    if kind == "mse":
        return mse, mse
    return -model.distribution(mean).log_prob(actions).sum(-1).mean(), mse


def train_bc(dataset_dir: str | Path, out_dir: str | Path, config: BCConfig, *, text_encoder: Any = None) -> BCResult:
    """Train (or continue training) a policy by behaviour cloning on a dataset folder.

    Args:
        dataset_dir: a dataset written by `roboscape collect`.
        out_dir: run folder (see the module docstring).
        config: BC settings (the policy architecture is config.policy).
        text_encoder: instruction encoder (anything with `encode(list[str]) -> (N, dim)` and `dim`);
            None builds config.policy.text_encoder (MiniLM by default).

    Returns:
        BCResult.

    Raises:
        DatasetError, ValueError: bad dataset, filters that select nothing, mismatched sizes.
        FileExistsError: `out_dir` has checkpoints and config.resume is False.
        roboscape_r.checkpoint.CheckpointError: the run's checkpoint does not match `config`.
        NonFiniteError: the loss became NaN/inf; nothing after it is saved.
    """
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    latest = latest_checkpoint(ckpt_dir)
    if latest is not None and not config.resume:
        raise FileExistsError(f"{out_dir} already holds checkpoints ({latest.name}); pass resume=True or a new folder")
    if text_encoder is None:
        from roboscape_r.worldmodel.text_encoder import make_text_encoder

        text_encoder = make_text_encoder(config.policy.text_encoder)
    if int(text_encoder.dim) != config.policy.instruction_dim:
        raise ValueError(f"the text encoder gives {text_encoder.dim}-d embeddings but PolicyConfig.instruction_dim is "
                         f"{config.policy.instruction_dim}")

    seed_everything(config.seed)
    ckpt = None
    if latest is not None:
        ckpt = read_policy_checkpoint(latest)
        differences = config_differences(ckpt["config"], {"trainer": "bc", "train": resume_relevant(config)})
        if differences:
            raise CheckpointError(f"cannot resume from {latest}: it was written with a different setup "
                                  f"({'; '.join(differences)}); use the same BCConfig or start a new run folder")
        model = actor_critic_from_checkpoint(ckpt)
    else:
        model = build_actor_critic(config.policy)
    metas = select_episodes(dataset_dir, config)
    splits = {name: split_episodes(metas, name, config.val_fraction, config.seed) for name in ("train", "val")}
    if not splits["train"]:
        raise ValueError(f"only {len(metas)} episode(s) selected and all went to validation; lower val_fraction")
    data = {name: load_bc_data(dataset_dir, chosen, model, text_encoder, config.progress)
            for name, chosen in splits.items() if chosen}
    train = data["train"]
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(config.warmup_steps, config.steps,
                                                                          config.min_lr_ratio))
    start_step = 0
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_step = ckpt["step"]
        restore_rng_state(ckpt)  # last: building the model drew random numbers
    if start_step >= config.steps:
        return BCResult(latest, start_step, True, {})

    checkpoint_config = policy_checkpoint_config(
        "bc", model, dataclasses.asdict(config), dataset=str(dataset_dir),
        episodes={name: d.episodes for name, d in data.items()})
    atomic_write_json(out_dir / "config.json", checkpoint_config)
    sampler = StepBatchSampler(train.frames.shape[0], config.batch_size, config.seed, start_step, config.steps)
    writer = SummaryWriter(str(out_dir / "tb"), purge_step=start_step if start_step > 0 else None)
    metrics_path = out_dir / "metrics.jsonl"
    truncate_metrics(metrics_path, "step", start_step)
    progress = tqdm(total=config.steps, initial=start_step, disable=not config.progress, desc="bc", dynamic_ncols=True)

    def save(at_step: int) -> Path:
        return save_checkpoint(checkpoint_path(ckpt_dir, at_step), kind=POLICY_KIND, config=checkpoint_config,
                               model_state=model.state_dict(), optimizer_state=optimizer.state_dict(),
                               scheduler_state=scheduler.state_dict(), step=at_step, keep_last=config.keep_last)

    row: dict[str, Any] = {}
    last_saved = latest
    loss_sum, mse_sum, interval, interval_start = 0.0, 0.0, 0, time.perf_counter()
    try:
        for step in range(start_step + 1, config.steps + 1):
            index = torch.tensor(sampler.batch_indices(step - 1))
            frames = random_shift(train.frames[index].to(device), config.shift_augment_pixels)
            embeddings = train.embeddings[train.instruction_ids[index]].to(device)
            loss, mse = bc_loss(model, frames, embeddings, train.actions[index].to(device), config.loss)
            if not bool(torch.isfinite(loss)):
                kept = latest_checkpoint(ckpt_dir)
                raise NonFiniteError(f"BC stopped at step {step}: the loss was NaN/inf; the last good checkpoint is "
                                     f"{kept if kept else '(none yet)'}. Lower lr or check the dataset's actions")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), config.grad_clip_norm)
            optimizer.step()
            scheduler.step()
            loss_sum, mse_sum, interval = loss_sum + float(loss.detach()), mse_sum + float(mse.detach()), interval + 1
            progress.update(1)

            at_end = step == config.steps
            if step % config.log_every == 0 or step % config.eval_every == 0 or at_end:
                row = {"step": step, "losses/bc_loss": loss_sum / interval, "losses/action_mse": mse_sum / interval,
                       "charts/learning_rate": scheduler.get_last_lr()[0],
                       "charts/action_std": float(model.actor_log_std.detach().exp().mean()),
                       "time/steps_per_s": interval / (time.perf_counter() - interval_start)}
                if "val" in data and (step % config.eval_every == 0 or at_end):
                    row.update(evaluate_bc(model, data["val"], config.loss, prefix="val/"))
                for key, value in row.items():
                    if key != "step" and value is not None:
                        writer.add_scalar(key, value, step)
                row = append_metrics(metrics_path, row)
                progress.set_postfix(loss=f"{row['losses/bc_loss']:.4f}")
                loss_sum, mse_sum, interval, interval_start = 0.0, 0.0, 0, time.perf_counter()
            if step % config.ckpt_every == 0 or at_end:
                last_saved = save(step)
    finally:
        progress.close()
        writer.close()
    return BCResult(last_saved, config.steps, True, row)


def evaluate_bc(model: ActorCritic, data: BCData, kind: str, prefix: str = "", batch_size: int = 256) -> dict[str, float]:
    """Loss and mean squared action error (deterministic clipped action vs target) over a whole split."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum, mse_sum = 0.0, 0.0
    with torch.no_grad():
        for start in range(0, data.frames.shape[0], batch_size):
            stop = start + batch_size
            frames = data.frames[start:stop].to(device)
            embeddings = data.embeddings[data.instruction_ids[start:stop]].to(device)
            targets = data.actions[start:stop].to(device)
            loss, _ = bc_loss(model, frames, embeddings, targets, kind)
            action = model.deterministic_action(frames, embeddings)
            loss_sum += float(loss) * frames.shape[0]
            mse_sum += float(((action - targets) ** 2).mean()) * frames.shape[0]
    model.train(was_training)
    count = data.frames.shape[0]
    return {f"{prefix}bc_loss": loss_sum / count, f"{prefix}action_mse": mse_sum / count}

