"""Training of the proxy reward network on a dataset's frames (`roboscape train-proxy-reward`).

Each step of an episode gives one example: the frame after the action (obs/rgb[t + 1]), the
task, and the dataset's `rewards[t]` (ManiSkill's normalised dense reward of that state) and
`success[t]`. Loss = MSE(predicted reward, reward) + success_loss_weight * BCE(success logit,
success). Validation holds out whole episodes (no frame of a validation episode is trained on).

`train_proxy_reward(dataset_dir, out_dir, config)` resumes from the newest checkpoint in
`out_dir`: the batch of a step depends only on (seed, step), so a stopped run continues exactly.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from roboscape_r.atomic import atomic_write_json
from roboscape_r.checkpoint import checkpoint_path, latest_checkpoint, load_checkpoint, restore_rng_state, save_checkpoint
from roboscape_r.data.dataset import split_episodes
from roboscape_r.data.format import iter_episode_meta, read_episode, read_manifest
from roboscape_r.reward.proxy import CHECKPOINT_KIND, ProxyRewardConfig, ProxyRewardNet
from roboscape_r.runconfig import RunOptions, resume_relevant
from roboscape_r.tokenizer.augment import photometric_augment
from roboscape_r.tokenizer.train import StepBatchSampler, WarmupCosine, resolve_device
from roboscape_r.worldmodel.frame_metrics import auroc


@dataclass(frozen=True)
class ProxyTrainConfig(RunOptions):
    """One proxy-reward training run (num_workers is unused: the examples are held in memory)."""

    model: ProxyRewardConfig = field(default_factory=ProxyRewardConfig)
    """Network architecture (its `tasks` must cover the dataset's tasks)."""
    steps: int = 3000
    """Total optimizer steps (the cosine schedule ends here)."""
    batch_size: int = 64
    """Frames per step."""
    lr: float = 1e-3
    """Peak AdamW learning rate."""
    min_lr_ratio: float = 0.1
    """Final learning rate of the cosine schedule as a fraction of lr."""
    warmup_steps: int = 100
    """Steps of linear learning-rate warm-up."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    grad_clip_norm: float = 1.0
    """Global gradient-norm clip."""
    success_loss_weight: float = 0.5
    """Weight of the success BCE next to the reward MSE."""
    augment_prob: float = 0.5
    """Probability that a training frame is recoloured (the tokenizer's photometric augmentation),
    so that the proxy gets the same help towards unseen colours and lighting as the tokenizer."""
    val_fraction: float = 0.1
    """Fraction of episodes held out for validation (whole episodes)."""
    eval_every: int = 250
    """Steps between validation passes (one also runs at the end of every call)."""
    seed: int = 0
    """Seed of initialisation, the train/val split, data order and augmentation."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "ckpt_every", "keep_last", "eval_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ProxyTrainConfig.{name} must be a positive int, got {value!r}")
        if self.lr <= 0 or not 0.0 <= self.min_lr_ratio <= 1.0 or self.warmup_steps < 0:
            raise ValueError(f"ProxyTrainConfig: need lr > 0, 0 <= min_lr_ratio <= 1, warmup_steps >= 0; got "
                             f"{self.lr}, {self.min_lr_ratio}, {self.warmup_steps}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"ProxyTrainConfig.val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 <= self.augment_prob <= 1.0 or self.success_loss_weight < 0:
            raise ValueError(f"ProxyTrainConfig: need augment_prob in [0, 1] and success_loss_weight >= 0, got "
                             f"{self.augment_prob}, {self.success_loss_weight}")

    @classmethod
    def from_dict(cls, values: dict) -> ProxyTrainConfig:
        """Rebuild from `dataclasses.asdict` output."""
        values = dict(values)
        values["model"] = ProxyRewardConfig.from_dict(values["model"])
        return cls(**values)


@dataclass(frozen=True)
class TrainProxyArgs:
    """Train the proxy reward network on a dataset's frames (resumes from --out)."""

    data: Path = Path("data/train")
    """Dataset folder written by `roboscape collect` (training scenes only)."""
    out: Path = Path("runs/proxy_reward")
    """Run folder: config.json, TensorBoard logs in tb/, ckpt_NNNNNNNN.pt checkpoints."""
    train: ProxyTrainConfig = field(default_factory=ProxyTrainConfig)
    """Training options."""


class ProxyExamples(NamedTuple):
    """Training examples held in memory (a 320-episode 64x64 set is about 330 MB)."""

    frames: torch.Tensor
    """uint8 (N, H, W, 3): the frame after each action."""
    rewards: torch.Tensor
    """float32 (N,) dense reward of that frame's state."""
    success: torch.Tensor
    """float32 (N,) 1 where that state is a success."""
    task_ids: torch.Tensor
    """long (N,) index into the model config's tasks."""
    episode_ids: torch.Tensor
    """long (N,) which of the loaded episodes the example comes from."""


class ProxyTrainResult(NamedTuple):
    """What `train_proxy_reward` returns."""

    checkpoint_path: Path
    step: int
    finished: bool
    """True once config.steps is reached."""
    metrics: dict[str, float]
    """Last logged training scalars and the last validation metrics ("eval/...")."""


def load_examples(root: Path, metas: list[dict], config: ProxyRewardConfig, progress: bool = True) -> ProxyExamples:
    """Read the examples of the given episodes (manifest metadata with a `shard` key).

    Raises:
        ValueError: frames of another size than the network's, a task it does not know, or
            rewards outside [0, 1] (the network predicts through a sigmoid).
    """
    frames, rewards, success, task_ids, episode_ids = [], [], [], [], []
    for e, meta in enumerate(tqdm(metas, desc="proxy data", unit="episode", disable=not progress)):
        if meta["task"] not in config.tasks:
            raise ValueError(f"episode {meta['episode_index']} of {root} is task {meta['task']!r}, which is not in "
                             f"--train.model.tasks {list(config.tasks)}")
        episode = read_episode(root / meta["shard"], meta["episode_index"])
        if tuple(episode["frames"].shape[1:3]) != (config.image_size, config.image_size):
            raise ValueError(f"{root} has {episode['frames'].shape[1]}x{episode['frames'].shape[2]} frames but the "
                             f"network takes {config.image_size}x{config.image_size}; set --train.model.image-size")
        if episode["rewards"].min() < 0 or episode["rewards"].max() > 1:
            raise ValueError(f"episode {meta['episode_index']} of {root} has rewards in [{episode['rewards'].min():.3g}, "
                             f"{episode['rewards'].max():.3g}]; the proxy predicts normalised dense rewards in [0, 1]")
        length = len(episode["actions"])
        frames.append(torch.from_numpy(episode["frames"][1:]))  # frame t+1 shows the state rewards[t] describes
        rewards.append(torch.from_numpy(episode["rewards"].astype(np.float32)))
        success.append(torch.from_numpy(episode["success"].astype(np.float32)))
        task_ids.append(torch.full((length,), config.tasks.index(meta["task"]), dtype=torch.long))
        episode_ids.append(torch.full((length,), e, dtype=torch.long))
    return ProxyExamples(*(torch.cat(parts) for parts in (frames, rewards, success, task_ids, episode_ids)))


@torch.inference_mode()
def evaluate_proxy(net: ProxyRewardNet, examples: ProxyExamples, device: torch.device,
                   batch_size: int = 512) -> dict[str, float]:
    """Validation metrics: reward MSE and Pearson correlation, success BCE and AUROC (None if one class)."""
    net.eval()
    predicted, logits = [], []
    for start in range(0, len(examples.rewards), batch_size):
        part = slice(start, start + batch_size)
        prediction = net(examples.frames[part].to(device), examples.task_ids[part].to(device))
        predicted.append(prediction.reward.float().cpu())
        logits.append(prediction.success_logit.float().cpu())
    reward, logit = torch.cat(predicted), torch.cat(logits)
    target = examples.rewards
    corr = float(np.corrcoef(reward.numpy(), target.numpy())[0, 1]) if reward.std() > 0 and target.std() > 0 else None
    return {"eval/reward_mse": float(F.mse_loss(reward, target)), "eval/reward_corr": corr,
            "eval/success_bce": float(F.binary_cross_entropy_with_logits(logit, examples.success)),
            "eval/success_auroc": auroc(logit.numpy(), examples.success.numpy() > 0.5)}


def train_proxy_reward(dataset_dir: str | Path, out_dir: str | Path,
                       config: ProxyTrainConfig = ProxyTrainConfig()) -> ProxyTrainResult:
    """Train (or continue training) the proxy reward network.

    Args:
        dataset_dir: dataset written by `roboscape collect` (use the training scenes only).
        out_dir: run folder for ckpt_NNNNNNNN.pt files (kind "proxy_reward"), config.json, tb/.
        config: run settings; on resume, everything but the RunOptions fields must match.

    Returns:
        ProxyTrainResult (newest checkpoint, step, finished, last metrics).

    Raises:
        roboscape_r.data.format.DatasetError: no dataset at `dataset_dir`.
        ValueError: an empty dataset or training split, or data the network cannot take.
        FileExistsError: `out_dir` has checkpoints and config.resume is False.
        roboscape_r.checkpoint.CheckpointError: the newest checkpoint does not match `config`.
        RuntimeError: the loss became NaN/inf.
    """
    root, out_dir = Path(dataset_dir), Path(out_dir)
    metas = [dict(meta, shard=shard) for shard, meta in iter_episode_meta(read_manifest(root))]
    if not metas:
        raise ValueError(f"dataset {root} holds no episodes; collect some with `roboscape collect`")
    train_metas = split_episodes(metas, "train", config.val_fraction, config.seed)
    val_metas = split_episodes(metas, "val", config.val_fraction, config.seed)
    if not train_metas:
        raise ValueError(f"--train.val-fraction {config.val_fraction} leaves no training episode of {len(metas)}")
    latest = latest_checkpoint(out_dir)
    if latest is not None and not config.resume:
        raise FileExistsError(f"{out_dir} already holds checkpoints ({latest.name}); pass resume or a new folder")
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    train_set = load_examples(root, train_metas, config.model, config.progress)
    val_set = load_examples(root, val_metas, config.model, config.progress) if val_metas else None

    torch.manual_seed(config.seed)
    net = ProxyRewardNet(config.model).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(config.warmup_steps, config.steps,
                                                                          config.min_lr_ratio))
    start_step, ckpt = 0, None
    if latest is not None:
        ckpt = load_checkpoint(latest, expected_kind=CHECKPOINT_KIND, expected_config=resume_relevant(config))
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_step = ckpt["step"]
        restore_rng_state(ckpt)
    end_step = config.steps if config.run_steps is None else min(config.steps, start_step + config.run_steps)
    if start_step >= end_step:
        return ProxyTrainResult(latest, start_step, start_step >= config.steps, dict(ckpt["extra"].get("val", {})))

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "config.json", {**dataclasses.asdict(config), "data": str(root),
                                                "train_episodes": len(train_metas), "val_episodes": len(val_metas)})
    sampler = StepBatchSampler(len(train_set.rewards), config.batch_size, config.seed, start_step, end_step)
    writer = SummaryWriter(str(out_dir / "tb"), purge_step=start_step if start_step > 0 else None)
    writer.add_text("hyperparameters", "\n".join(f"|{k}|{v}|" for k, v in dataclasses.asdict(config).items()),
                    start_step)
    progress = tqdm(total=config.steps, initial=start_step, disable=not config.progress, desc="proxy reward",
                    dynamic_ncols=True)
    metrics: dict[str, float] = {}
    val_metrics: dict[str, float] = dict(ckpt["extra"].get("val", {})) if ckpt is not None else {}
    sums = torch.zeros(3, device=device)  # mse, bce, total
    interval_steps, interval_start, call_start = 0, time.perf_counter(), time.monotonic()
    step, last_saved = start_step, latest

    def save(at_step: int) -> Path:
        return save_checkpoint(checkpoint_path(out_dir, at_step), kind=CHECKPOINT_KIND,
                               config=dataclasses.asdict(config), model_state=net.state_dict(),
                               optimizer_state=optimizer.state_dict(), scheduler_state=scheduler.state_dict(),
                               step=at_step, extra={"val": val_metrics, "data": str(root)},
                               keep_last=config.keep_last)

    try:
        for indices in sampler:
            net.train()
            index = torch.tensor(indices)
            frames = photometric_augment(train_set.frames[index].to(device), config.augment_prob)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
                prediction = net(frames, train_set.task_ids[index].to(device))
            mse = F.mse_loss(prediction.reward.float(), train_set.rewards[index].to(device))
            bce = F.binary_cross_entropy_with_logits(prediction.success_logit.float(),
                                                     train_set.success[index].to(device))
            loss = mse + config.success_loss_weight * bce
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            sums += torch.stack([mse.detach(), bce.detach(), loss.detach()])
            interval_steps += 1
            progress.update(1)
            out_of_time = config.time_limit_s is not None and time.monotonic() - call_start > config.time_limit_s
            stopping = step == end_step or out_of_time
            if step % config.log_every == 0 or stopping:
                values = (sums / interval_steps).tolist()
                if not all(np.isfinite(values)):
                    raise RuntimeError(f"proxy reward training: the loss became NaN/inf near step {step}; lower "
                                       f"--train.lr (last good checkpoint: {latest_checkpoint(out_dir)})")
                metrics = {"losses/reward_mse": values[0], "losses/success_bce": values[1], "losses/total": values[2],
                           "charts/lr": scheduler.get_last_lr()[0],
                           "time/steps_per_s": interval_steps / (time.perf_counter() - interval_start)}
                for name, value in metrics.items():
                    writer.add_scalar(name, value, step)
                progress.set_postfix(mse=f"{values[0]:.4f}", bce=f"{values[1]:.3f}")
                sums.zero_()
                interval_steps, interval_start = 0, time.perf_counter()
            if val_set is not None and (step % config.eval_every == 0 or stopping):
                val_metrics = evaluate_proxy(net, val_set, device)
                for name, value in val_metrics.items():
                    if value is not None:
                        writer.add_scalar(name, value, step)
            if step % config.ckpt_every == 0 or stopping:
                last_saved = save(step)
            if out_of_time:
                break
    finally:
        progress.close()
        writer.close()
    return ProxyTrainResult(last_saved, step, step >= config.steps, {**metrics, **val_metrics})
