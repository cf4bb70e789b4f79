"""PPO for the actor-critic on any vector env with the shared observation dict.

`train_ppo(config, envs, out_dir)` is CleanRL's ppo_continuous_action loop on tensors: collect
`num_steps` vector steps, compute GAE (gae.py), then `update_epochs` passes of clipped-objective
minibatch updates. What it supports of the env is listed in vecenv.py (numpy or torch outputs,
autoreset, info["valid"] padding masks, truncation bootstrapping from final observations).

Run folder `out_dir`:
    checkpoints/ckpt_NNNNNNNN.pt   policy checkpoints (kind "policy"; NNNNNNNN = update)
    metrics.jsonl                  one row per update (global_step, episode_return, success_once, losses ...)
    config.json                    PPOConfig and PolicyConfig
    tb/                            TensorBoard: charts/, losses/, time/

Calling `train_ppo` again on the same folder resumes from the newest checkpoint. The model,
optimizer, RNG states, the current observation and the running episode statistics are in the
checkpoint; if the vector env has `state_dict()` / `load_state_dict(state)` (tensors and plain
values only), its state is stored too and the resumed run is exactly the uninterrupted one.
Without them the envs are reset on resume (with seed + update), and only the episodes that
were in flight differ.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
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
from roboscape_r.policy.checkpoint import (
    POLICY_KIND,
    actor_critic_from_checkpoint,
    build_actor_critic,
    policy_checkpoint_config,
    read_policy_checkpoint,
)
from roboscape_r.policy.config import PPOConfig, resume_relevant
from roboscape_r.policy.gae import compute_gae
from roboscape_r.policy.network import ActorCritic, PolicyConfig
from roboscape_r.policy.ppo_update import ppo_update
from roboscape_r.policy.rollout import EpisodeStats, RolloutBuffer
from roboscape_r.report.run_folder import read_metrics_jsonl
from roboscape_r.policy.runtime import (
    NonFiniteError,
    append_metrics,
    resolve_device,
    seed_everything,
    truncate_metrics,
)
from roboscape_r.policy.vecenv import final_observations, info_mask, obs_to_tensors, step_array, step_success

__all__ = ["NonFiniteError", "PPOResult", "train_ppo"]


class PPOResult(NamedTuple):
    """What `train_ppo` returns."""

    checkpoint_path: Path | None
    """Newest checkpoint (a policy: `load_policy` reads it)."""
    update: int
    """Updates done so far in this run (over all calls)."""
    global_step: int
    """Env steps done so far (num_envs per vector step)."""
    finished: bool
    """True once every update of config.total_timesteps is done."""
    metrics: dict[str, Any]
    """The last metrics row (also the last line of metrics.jsonl)."""


def train_ppo(config: PPOConfig, envs: Any, out_dir: str | Path, *, policy_config: PolicyConfig | None = None,
              bc_init: str | Path | None = None) -> PPOResult:
    """Train (or continue training) a policy with PPO on `envs`, writing the run folder `out_dir`.

    Args:
        config: hyperparameters and run options.
        envs: a vector env (see vecenv.py): `num_envs`, `reset(seed=...)`, `step(actions (N, A))`;
            observations {"rgb": uint8 (N, S, S, 3), "instruction": float (N, D)}.
        out_dir: run folder (see the module docstring).
        policy_config: architecture; default: bc_init's, else PolicyConfig(). On resume it must
            match the checkpoint's (None takes the checkpoint's).
        bc_init: a policy checkpoint (e.g. from `train_bc`) whose weights start the run; ignored
            when resuming.

    Returns:
        PPOResult.

    Raises:
        ValueError: too few timesteps for one update, observations/actions that do not fit the
            policy, or a policy_config that differs from bc_init's.
        FileExistsError: `out_dir` has checkpoints and config.resume is False.
        roboscape_r.checkpoint.CheckpointError: bc_init or the run's checkpoint is unreadable or
            does not match config / policy_config / num_envs.
        NonFiniteError: a reward, an action or the loss became NaN/inf; the message names the
            update and global step; nothing after it is saved, so the newest checkpoint in
            `out_dir` is the last good one.
    """
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    num_envs = int(envs.num_envs)
    steps_per_update = num_envs * config.num_steps
    num_updates = config.total_timesteps // steps_per_update
    if num_updates < 1:
        raise ValueError(
            f"PPOConfig.total_timesteps={config.total_timesteps} is less than one update of num_envs * num_steps = "
            f"{num_envs} * {config.num_steps} = {steps_per_update} env steps; raise total_timesteps"
        )
    latest = latest_checkpoint(ckpt_dir)
    if latest is not None and not config.resume:
        raise FileExistsError(f"{out_dir} already holds checkpoints ({latest.name}); pass resume=True or a new folder")

    seed_everything(config.seed)
    resume_ckpt = None
    if latest is not None:
        resume_ckpt = _read_resume_checkpoint(latest, config, policy_config, num_envs)
        model = actor_critic_from_checkpoint(resume_ckpt)
    elif bc_init is not None:
        model = _model_from_bc(bc_init, policy_config, config.reset_log_std, config.bc_std_from_validation)
    else:
        model = build_actor_critic(policy_config or PolicyConfig())
    model = model.to(device).train()
    policy_config = model.config
    _check_action_space(envs, policy_config.action_dim)
    anchor = _bc_anchor(bc_init, config, device)
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=config.learning_rate, eps=config.adam_eps)
    buffer = RolloutBuffer(config.num_steps, num_envs, policy_config.image_size, policy_config.instruction_dim,
                           policy_config.action_dim, device)
    stats = EpisodeStats(num_envs, device)
    obs_args = (num_envs, policy_config.image_size, policy_config.instruction_dim, device)

    update, global_step = 0, 0
    if resume_ckpt is None:
        obs, _ = envs.reset(seed=config.seed)
        torch_actions = isinstance(obs, dict) and isinstance(obs.get("rgb"), torch.Tensor)
        frames, instructions = obs_to_tensors(obs, *obs_args)
    else:
        optimizer.load_state_dict(resume_ckpt["optimizer"])
        extra = resume_ckpt["extra"]
        update, global_step = resume_ckpt["step"], extra["global_step"]
        frames, instructions, torch_actions = _restore_env(envs, extra, stats, config.seed + update, obs_args)
        restore_rng_state(resume_ckpt)  # last: building the model and the env drew random numbers
    if resume_ckpt is not None:
        bc_source = resume_ckpt["config"].get("bc_init")
    else:
        bc_source = None if bc_init is None else str(bc_init)
    checkpoint_config = policy_checkpoint_config("ppo", model, dataclasses.asdict(config), num_envs=num_envs,
                                                 bc_init=bc_source)
    atomic_write_json(out_dir / "config.json", {"ppo": dataclasses.asdict(config), "policy": policy_config.to_dict(),
                                                "num_envs": num_envs, "bc_init": bc_source})
    metrics_path = out_dir / "metrics.jsonl"
    truncate_metrics(metrics_path, "update", update)

    def save(at_update: int) -> Path:
        env_state = envs.state_dict() if callable(getattr(envs, "state_dict", None)) else None
        extra = {"global_step": global_step, "obs_rgb": frames.cpu(), "obs_instruction": instructions.cpu(),
                 "episode_stats": stats.state_dict(), "env_state": env_state}
        return save_checkpoint(checkpoint_path(ckpt_dir, at_update), kind=POLICY_KIND, config=checkpoint_config,
                               model_state=model.state_dict(), optimizer_state=optimizer.state_dict(),
                               step=at_update, extra=extra, keep_last=config.keep_last)

    end_update = num_updates if config.run_updates is None else min(num_updates, update + config.run_updates)
    if update >= end_update:
        return PPOResult(latest, update, global_step, update >= num_updates, {})
    writer = SummaryWriter(str(out_dir / "tb"), purge_step=global_step if global_step > 0 else None)
    writer.add_text("hyperparameters", _markdown_table({**dataclasses.asdict(config), "num_envs": num_envs,
                                                       **{f"policy.{k}": v for k, v in policy_config.to_dict().items()}}),
                    global_step=global_step)
    prepare_frames = _frame_preparation(model, envs)
    progress = tqdm(total=num_updates, initial=update, disable=not config.progress, desc="ppo", dynamic_ncols=True)
    call_start = time.monotonic()
    last_saved, row = latest, {}
    warned_missing_final_obs = False
    try:
        while update < end_update:
            update += 1
            update_start = time.perf_counter()
            lr = config.learning_rate * (1.0 - (update - 1) / num_updates) if config.anneal_lr else config.learning_rate
            for group in optimizer.param_groups:
                group["lr"] = lr

            # ---------------------------------------------------------------- rollout
            buffer.clear_final_values()
            missing_final_obs = 0
            model.eval()
            with torch.no_grad():
                for t in range(config.num_steps):
                    prepared = prepare_frames(frames)
                    out = model.act_and_value(prepared, instructions)
                    if not bool(torch.isfinite(out.action).all()):
                        raise NonFiniteError(_nonfinite_message(
                            "the policy produced NaN/inf actions (non-finite weights or observations)", update,
                            global_step, ckpt_dir))
                    buffer.frames[t], buffer.instructions[t] = prepared, instructions
                    buffer.actions[t], buffer.log_probs[t], buffer.values[t] = out.action, out.log_prob, out.value
                    env_actions = out.action.clamp(-1.0, 1.0)
                    env_actions = env_actions if torch_actions else env_actions.cpu().numpy()
                    obs, reward, terminated, truncated, info = envs.step(env_actions)
                    global_step += num_envs
                    info = info if isinstance(info, dict) else {}
                    reward = step_array(reward, num_envs, "reward", device, torch.float32)
                    valid = info_mask(info, "valid", num_envs, True, device)
                    terminated = step_array(terminated, num_envs, "terminated", device, torch.bool)
                    truncated = step_array(truncated, num_envs, "truncated", device, torch.bool)
                    bad = valid & ~torch.isfinite(reward)
                    if bool(bad.any()):
                        raise NonFiniteError(_nonfinite_message(
                            f"reward was NaN/inf for envs {bad.nonzero().flatten().tolist()}", update, global_step,
                            ckpt_dir))
                    reward = torch.where(valid, reward, torch.zeros_like(reward))
                    buffer.rewards[t] = reward * config.reward_scale
                    buffer.terminated[t], buffer.truncated[t], buffer.valid[t] = terminated, truncated, valid
                    done = terminated | truncated
                    bootstrap = truncated & ~terminated & valid
                    if bool(bootstrap.any()):
                        env_ids = bootstrap.nonzero().flatten()
                        final = final_observations(info, env_ids, *obs_args[1:])
                        if final is None:
                            missing_final_obs += env_ids.numel()
                        else:
                            buffer.final_values[t, env_ids] = model.value(prepare_frames(final[0]), final[1])
                    stats.update(reward, step_success(info, done), done, valid)
                    frames, instructions = obs_to_tensors(obs, *obs_args)
                next_value = model.value(prepare_frames(frames), instructions)
            if missing_final_obs and not warned_missing_final_obs:
                warned_missing_final_obs = True
                warnings.warn(f"{missing_final_obs} truncated episodes came without info['final_observation']; "
                              "they are bootstrapped with 0, like terminations (see roboscape_r.policy.vecenv)",
                              stacklevel=2)
            rollout_s = time.perf_counter() - update_start

            # ---------------------------------------------------------------- update
            advantages, returns = compute_gae(
                buffer.rewards, buffer.values, next_value, buffer.terminated, buffer.truncated,
                final_values=buffer.final_values, valid=buffer.valid, gamma=config.gamma, gae_lambda=config.gae_lambda)
            model.train()
            try:
                losses = ppo_update(model, optimizer, config, buffer, advantages, returns,
                                    actor_on=update > config.critic_warmup_updates, anchor=anchor,
                                    anchor_coef=config.bc_anchor_coef * config.bc_anchor_decay ** (update - 1))
            except NonFiniteError as error:
                raise NonFiniteError(_nonfinite_message(str(error), update, global_step, ckpt_dir)) from None
            elapsed = time.perf_counter() - update_start

            row = {"update": update, "global_step": global_step, "valid_steps": int(buffer.valid.sum()),
                   **stats.finished(), **losses, "charts/learning_rate": lr,
                   "charts/action_std": float(model.actor_log_std.detach().exp().mean()),
                   "charts/valid_fraction": float(buffer.valid.float().mean()),
                   "charts/missing_final_obs": missing_final_obs,
                   "time/steps_per_s": steps_per_update / elapsed, "time/rollout_s": rollout_s,
                   "time/update_s": elapsed - rollout_s}
            row = append_metrics(metrics_path, row)
            _log_row(writer, row, global_step)
            progress.update(1)
            if row["episodes"]:
                progress.set_postfix(ret=f"{row['episode_return']:.3f}", succ=f"{row['success_once']:.2f}")
            out_of_time = config.time_limit_s is not None and time.monotonic() - call_start > config.time_limit_s
            if update % config.ckpt_every == 0 or update == end_update or out_of_time:
                last_saved = save(update)
            if out_of_time:
                break
    finally:
        progress.close()
        writer.close()
    return PPOResult(last_saved, update, global_step, update >= num_updates, row)


def _read_resume_checkpoint(path: Path, config: PPOConfig, policy_config: PolicyConfig | None,
                            num_envs: int) -> dict[str, Any]:
    ckpt = read_policy_checkpoint(path)
    stored = ckpt["config"]
    train = resume_relevant(config)
    # An option added after the checkpoint was written is absent from it; at its default it
    # behaves as the code that wrote it did, so that alone does not block a resume.
    defaults = {f.name: f.default for f in dataclasses.fields(PPOConfig)}
    stored_train = stored.get("train") if isinstance(stored.get("train"), dict) else {}
    train = {k: v for k, v in train.items() if k in stored_train or v != defaults.get(k, dataclasses.MISSING)}
    expected: dict[str, Any] = {"trainer": "ppo", "train": train, "num_envs": num_envs}
    if policy_config is not None:
        expected["policy"] = policy_config.to_dict()
    differences = config_differences(stored, expected)
    if differences:
        raise CheckpointError(
            f"cannot resume from {path}: it was written with a different setup ({'; '.join(differences)}); use the "
            "same PPOConfig, PolicyConfig and number of envs, or start a new run folder"
        )
    return ckpt


def _model_from_bc(bc_init: str | Path, policy_config: PolicyConfig | None, reset_log_std: bool,
                   std_from_validation: bool = False) -> ActorCritic:
    ckpt = read_policy_checkpoint(bc_init)
    model = actor_critic_from_checkpoint(ckpt)
    if policy_config is not None and policy_config != model.config:
        differences = config_differences(model.config.to_dict(), policy_config.to_dict())
        raise ValueError(f"policy_config differs from the bc_init checkpoint {ckpt['path']}'s ({'; '.join(differences)}); "
                         "pass policy_config=None to take the checkpoint's")
    if std_from_validation:
        with torch.no_grad():
            step = ckpt.get("step")
            rmse = bc_validation_action_rmse(Path(ckpt["path"]), int(step) if isinstance(step, int) else None)
            model.actor_log_std.fill_(math.log(rmse))
    elif reset_log_std:
        with torch.no_grad():
            model.actor_log_std.fill_(model.config.init_log_std)
    return model


def _bc_anchor(bc_init: str | Path | None, config: PPOConfig, device: torch.device) -> ActorCritic | None:
    """The frozen bc_init policy that PPOConfig.bc_anchor_coef pulls towards (None when off); also
    rebuilt from bc_init on resume, since the checkpoint holds only the fine-tuned weights."""
    if config.bc_anchor_coef == 0:
        return None
    if bc_init is None:
        raise ValueError("PPOConfig.bc_anchor_coef > 0 anchors the policy to its BC start, but no bc_init was given; "
                         "pass bc_init (also when resuming), or set bc_anchor_coef to 0")
    anchor = actor_critic_from_checkpoint(read_policy_checkpoint(bc_init)).to(device).eval()
    anchor.requires_grad_(False)
    return anchor


def bc_validation_action_rmse(checkpoint: Path, step: int | None = None) -> float:
    """Root-mean-square action error of a BC run on its validation split: sqrt of the last
    `val/action_mse` (at or before `step`, when given) in the metrics.jsonl of the run folder
    holding `checkpoint` (RUN/checkpoints/ckpt.pt, or RUN/ckpt.pt).

    Raises:
        ValueError: no metrics.jsonl there, or no validation row in it (BC trained without a
            validation split).
    """
    for folder in (checkpoint.parent.parent, checkpoint.parent):
        metrics = folder / "metrics.jsonl"
        if metrics.is_file():
            break
    else:
        raise ValueError(f"bc_std_from_validation needs the BC run's metrics.jsonl beside {checkpoint} (in its run "
                         "folder); pass the BC run folder as bc_init, or turn bc_std_from_validation off")
    rows, _ = read_metrics_jsonl(metrics)
    values = [row["val/action_mse"] for row in rows if isinstance(row.get("val/action_mse"), (int, float))
              and (step is None or not isinstance(row.get("step"), int) or row["step"] <= step)]
    if not values or not math.isfinite(values[-1]) or values[-1] <= 0:
        raise ValueError(f"{metrics} has no finite positive val/action_mse (BC trained without a validation "
                         "split?); retrain BC with one, or turn bc_std_from_validation off")
    return math.sqrt(values[-1])


def _frame_preparation(model: ActorCritic, envs: Any):
    """The model's frame preprocessing, or the identity when the env's frames are already
    decodings of the very tokenizer the policy would round-trip them through (the world-model
    env): a second round trip would only blur them further and costs a tokenizer encode and
    decode per env step."""
    decoded_by = getattr(envs, "frames_decoded_by", None)
    tokenizer_path = model.config.tokenizer_path
    if decoded_by is not None and model.config.frame_preprocess == "tokenizer" and tokenizer_path \
            and Path(tokenizer_path).resolve() == Path(decoded_by).resolve():
        return lambda frames: frames
    return model.prepare_frames


def _check_action_space(envs: Any, action_dim: int) -> None:
    space = getattr(envs, "single_action_space", None)
    shape = getattr(space, "shape", None)
    if shape is not None and tuple(shape) != (action_dim,):
        raise ValueError(f"the env's actions have shape {tuple(shape)} but PolicyConfig.action_dim is {action_dim}")


def _restore_env(envs: Any, extra: dict[str, Any], stats: EpisodeStats, reset_seed: int,
                 obs_args: tuple) -> tuple[torch.Tensor, torch.Tensor, bool]:
    obs, _ = envs.reset(seed=reset_seed)
    torch_actions = isinstance(obs, dict) and isinstance(obs.get("rgb"), torch.Tensor)
    env_state = extra.get("env_state")
    if env_state is not None and callable(getattr(envs, "load_state_dict", None)):
        envs.load_state_dict(env_state)
        stats.load_state_dict(extra["episode_stats"])
        device = obs_args[-1]
        return extra["obs_rgb"].to(device), extra["obs_instruction"].to(device), torch_actions
    warnings.warn("the vector env has no state_dict/load_state_dict, so it was reset on resume: the episodes in "
                  "flight at the checkpoint are lost and the run is not bit-identical to an uninterrupted one",
                  stacklevel=3)
    frames, instructions = obs_to_tensors(obs, *obs_args)
    return frames, instructions, torch_actions


def _log_row(writer: SummaryWriter, row: dict[str, Any], global_step: int) -> None:
    names = {"episode_return": "charts/episodic_return", "episode_length": "charts/episodic_length",
             "success_once": "charts/success_once", "success_at_end": "charts/success_at_end"}
    for key, value in row.items():
        if value is None or key in ("update", "global_step", "episodes"):
            continue
        writer.add_scalar(names.get(key, key if "/" in key else f"charts/{key}"), value, global_step)


def _nonfinite_message(what: str, update: int, global_step: int, ckpt_dir: Path) -> str:
    kept = latest_checkpoint(ckpt_dir)
    return (f"PPO stopped at update {update}, global step {global_step}: {what}. Nothing after the last checkpoint "
            f"was saved; the last good one is {kept if kept else '(none yet)'}. Check the env's rewards and "
            "observations or lower learning_rate, then resume or start a new run folder")


def _markdown_table(values: dict[str, Any]) -> str:
    return "|param|value|\n|-|-|\n" + "\n".join(f"|{key}|{value}|" for key, value in values.items())
