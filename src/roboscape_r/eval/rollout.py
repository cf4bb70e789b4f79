"""Run evaluation episodes of one env id in lockstep, one batched policy call per step.

The protocol is the same for every policy: each episode starts from its planned seed, runs the
full horizon (success does not end it, no env is reset part-way), and the policy sees the current
RGB frame and the episode's instruction and returns deterministic actions through
``Policy.act(frames_uint8 (B, H, W, 3), instructions) -> (B, 7) float32``. Only that protocol
is used, so a trained network, a scripted controller or a test double evaluate alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from roboscape_r.data import scenes as S
from roboscape_r.envs.maniskill_slots import frame_of
from roboscape_r.eval.plan import EpisodeJob

if TYPE_CHECKING:  # only for annotations: evaluation relies on the protocol, not the class
    from roboscape_r.policy.api import Policy

ACTION_DIM = 7
"""Size of the shared ``pd_ee_delta_pose`` action."""


class PolicyOutputError(ValueError):
    """A policy broke the ``Policy.act`` protocol (wrong shape, non-numeric or non-finite actions)."""


def check_policy(policy: Any) -> int:
    """Validate a policy's static attributes; return its ``image_size``.

    Raises:
        PolicyOutputError: no ``act``, ``action_dim != 7`` or a bad ``image_size``.
    """
    if not callable(getattr(policy, "act", None)):
        raise PolicyOutputError(f"{type(policy).__name__} has no act(frames, instructions) method; "
                                "evaluation needs the Policy protocol of roboscape_r.policy.api")
    action_dim = getattr(policy, "action_dim", None)
    if action_dim != ACTION_DIM:
        raise PolicyOutputError(f"policy action_dim is {action_dim!r}; the {S.CONTROL_MODE} action space needs "
                                f"{ACTION_DIM}")
    image_size = getattr(policy, "image_size", None)
    if not isinstance(image_size, (int, np.integer)) or image_size < 8:
        raise PolicyOutputError(f"policy image_size must be an int >= 8 (square frames), got {image_size!r}")
    return int(image_size)


def check_actions(actions: Any, batch_size: int, where: str = "") -> np.ndarray:
    """Validate the output of ``Policy.act`` for ``batch_size`` frames.

    Args:
        actions: what the policy returned (a numpy array, a CPU tensor or nested lists).
        batch_size: number of frames passed in.
        where: context for the error message (env id, seeds, step).

    Returns:
        float32 (batch_size, 7), clipped to the action space [-1, 1].

    Raises:
        PolicyOutputError: not numeric, a shape other than (batch_size, 7), or NaN/inf entries.
    """
    try:
        array = np.asarray(actions, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise PolicyOutputError(f"policy.act returned {type(actions).__name__}, which is not a numeric array "
                                f"({err}){where}; expected float32 ({batch_size}, {ACTION_DIM})") from err
    if array.shape != (batch_size, ACTION_DIM):
        raise PolicyOutputError(f"policy.act returned actions of shape {tuple(array.shape)} for {batch_size} "
                                f"frame(s){where}; expected ({batch_size}, {ACTION_DIM})")
    if not np.isfinite(array).all():
        rows = np.flatnonzero(~np.isfinite(array).all(axis=1)).tolist()
        raise PolicyOutputError(f"policy.act returned non-finite actions (NaN or inf) in row(s) {rows}{where}")
    return np.clip(array, -1.0, 1.0)


def horizon_of(env_id: str, max_steps: int | None) -> int:
    """Episode length: ``max_steps`` if given, else the env id's registered time limit."""
    if max_steps is not None:
        if max_steps < 1:
            raise ValueError(f"--max-steps must be >= 1, got {max_steps}")
        return max_steps
    from mani_skill.utils.registration import REGISTERED_ENVS

    registered = REGISTERED_ENVS[env_id].max_episode_steps if env_id in REGISTERED_ENVS else None
    return int(registered or S.TASKS[S.task_of_env_id(env_id)].max_episode_steps)


def run_episodes(envs: list, policy: "Policy", jobs: list[EpisodeJob], horizon: int) -> list[dict]:
    """Run ``jobs`` (same env id) in lockstep on ``envs`` (unwrapped single ManiSkill envs).

    Args:
        envs: at least ``len(jobs)`` envs of ``jobs[0].cell.env_id`` (ManiSkill ``BaseEnv``, no
            time-limit wrapper: the horizon is enforced here).
        policy: follows the Policy protocol.
        jobs: episodes of one env id.
        horizon: steps per episode.

    Returns:
        One record per job: the cell fields, ``episode_index``, ``seed``, ``instruction``,
        ``success_once``, ``success_at_end``, ``first_success_step`` (1-based, None if never),
        ``episode_length``, ``return``, ``horizon``; video jobs also carry ``frames``
        (horizon + 1, H, W, 3) uint8 and ``success_per_step`` (horizon,) bool.

    Raises:
        PolicyOutputError: the policy broke the protocol.
    """
    batch = len(jobs)
    assert batch <= len(envs), f"{batch} jobs but only {len(envs)} envs"
    frames = np.stack([frame_of(env.reset(seed=job.seed)[0]) for env, job in zip(envs, jobs)])  # (B, H, W, 3)
    instructions = [job.instruction for job in jobs]
    video = [[frames[b]] if job.record_video else None for b, job in enumerate(jobs)]
    rewards = np.zeros((horizon, batch), np.float64)
    success = np.zeros((horizon, batch), bool)
    seeds = [job.seed for job in jobs]
    for t in range(horizon):
        where = f" (env {jobs[0].cell.env_id}, seeds {seeds}, step {t})"
        actions = check_actions(policy.act(frames, instructions), batch, where)
        next_frames = np.empty_like(frames)  # a fresh array: the policy may keep the previous one
        for b in range(batch):
            obs, reward, _terminated, _truncated, info = envs[b].step(actions[b:b + 1])
            next_frames[b] = frame_of(obs)
            rewards[t, b] = float(reward[0])
            success[t, b] = bool(info["success"][0])
            if video[b] is not None:
                video[b].append(next_frames[b])
        frames = next_frames
    records = []
    for b, job in enumerate(jobs):
        hits = np.flatnonzero(success[:, b])
        first = int(hits[0]) + 1 if len(hits) else None
        record = dict(
            task=job.cell.task, scene=job.cell.scene, env_id=job.cell.env_id, split=job.cell.split,
            factor=job.cell.factor, severity=job.cell.severity, episode_index=job.episode_index, seed=job.seed,
            instruction=job.instruction, success_once=bool(len(hits)), success_at_end=bool(success[-1, b]),
            first_success_step=first, episode_length=first if first is not None else horizon,
            horizon=horizon, **{"return": float(rewards[:, b].sum())},
        )
        if video[b] is not None:
            record["frames"] = np.stack(video[b])
            record["success_per_step"] = success[:, b].copy()
        records.append(record)
    return records
