"""The boundary between PPO and a vector env: observations, masks and final observations as tensors.

Supported conventions (numpy arrays or torch tensors, leading dimension N = num_envs):

- observations: dict {"rgb": uint8 (N, S, S, 3), "instruction": float (N, D)};
- info["valid"]: bool (N,), False marks a padding transition (absent: all valid);
- info["success"]: bool (N,) per step (absent: never successful);
- final observations of episodes that ended in this step (used to bootstrap truncations), in
  either form:
  * gymnasium 0.29 vector envs (SyncVectorEnv/AsyncVectorEnv): info["final_observation"] is an
    object array of N entries, an obs dict for each env that finished and None otherwise;
    info["final_info"] likewise holds each finished env's last info dict (its "success");
  * batched envs (ManiSkill's ManiSkillVectorEnv, the world-model env): info["final_observation"]
    is an obs dict of (N, ...) arrays and info["final_info"] a dict of (N,) arrays; only the rows
    of finished envs are read.
  Without a final observation a truncation is bootstrapped with 0, as if it were a termination.
  Gymnasium 1.x "next-step" autoreset (no final observation, one extra reset step) is not supported.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _as_tensor(value: Any, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    return torch.as_tensor(np.asarray(value), device=device)


def obs_to_tensors(obs: Any, num_envs: int, image_size: int, instruction_dim: int,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Check and convert an observation dict to (frames uint8 (N, S, S, 3), instructions float32 (N, D)).

    Raises:
        ValueError: not a dict with "rgb" and "instruction", or wrong dtype/shape (the message
            names the expected shape and the PolicyConfig field to change).
    """
    if not isinstance(obs, dict) or "rgb" not in obs or "instruction" not in obs:
        keys = sorted(obs) if isinstance(obs, dict) else type(obs).__name__
        raise ValueError(f"observations must be a dict with 'rgb' and 'instruction', got {keys}")
    frames = _as_tensor(obs["rgb"], device)
    instructions = _as_tensor(obs["instruction"], device)
    expected = (num_envs, image_size, image_size, 3)
    if frames.dtype != torch.uint8 or tuple(frames.shape) != expected:
        raise ValueError(
            f"obs['rgb'] must be uint8 {expected}, got {frames.dtype} {tuple(frames.shape)}; the env's frames must "
            "match PolicyConfig.image_size (and be channel-last)"
        )
    if not instructions.dtype.is_floating_point or tuple(instructions.shape) != (num_envs, instruction_dim):
        raise ValueError(
            f"obs['instruction'] must be float ({num_envs}, {instruction_dim}), got {instructions.dtype} "
            f"{tuple(instructions.shape)}; PolicyConfig.instruction_dim must match the env's text encoder"
        )
    return frames, instructions.float()


def step_array(value: Any, num_envs: int, name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Convert a per-env step output (reward, terminated, ...) to a (N,) tensor of `dtype`.

    Raises:
        ValueError: its shape is not (N,).
    """
    tensor = _as_tensor(value, device)
    if tensor.ndim == 2 and tensor.shape[1] == 1:
        tensor = tensor[:, 0]
    if tuple(tensor.shape) != (num_envs,):
        raise ValueError(f"the env's {name} must have shape ({num_envs},), got {tuple(tensor.shape)}")
    return tensor.to(dtype)


def info_mask(info: dict, key: str, num_envs: int, default: bool, device: torch.device) -> torch.Tensor:
    """info[key] as a bool (N,) tensor, or a tensor filled with `default` when the key is absent."""
    if key not in info or info[key] is None:
        return torch.full((num_envs,), default, dtype=torch.bool, device=device)
    return step_array(info[key], num_envs, f"info[{key!r}]", device, torch.bool)


def final_observations(info: dict, env_ids: torch.Tensor, image_size: int, instruction_dim: int,
                       device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The real last observations of the envs `env_ids` (long (K,)) that finished in this step.

    Returns:
        (frames uint8 (K, S, S, 3), instructions float32 (K, D)), or None when the env gives no
        final observation for every one of them.
    """
    final = info.get("final_observation")
    if final is None or env_ids.numel() == 0:
        return None
    ids = env_ids.tolist()
    if isinstance(final, dict):  # batched: (N, ...) arrays
        rows = {key: _as_tensor(final[key], device)[env_ids] for key in ("rgb", "instruction") if key in final}
        if len(rows) < 2:
            return None
        return obs_to_tensors(rows, len(ids), image_size, instruction_dim, device)
    entries = [final[i] for i in ids]  # gymnasium: object array of per-env dicts or None
    if any(not isinstance(entry, dict) for entry in entries):
        return None
    stacked = {key: np.stack([np.asarray(entry[key]) for entry in entries]) for key in ("rgb", "instruction")}
    return obs_to_tensors(stacked, len(ids), image_size, instruction_dim, device)


def step_success(info: dict, finished: torch.Tensor) -> torch.Tensor:
    """bool (N,): the success flag of each env's step (of its last step where `finished`).

    For envs that finished in this step gymnasium keeps the last step's info in
    info["final_info"] (info itself already describes the new episode); batched envs may do the
    same. So finished rows read info["final_info"] when it is there, every other row (and every
    row without final_info) reads info["success"].

    Args:
        info: the step's info dict.
        finished: bool (N,), the envs whose episode ended in this step.
    """
    num_envs, device = finished.shape[0], finished.device
    success = info_mask(info, "success", num_envs, False, device)
    final = info.get("final_info")
    if final is None or not bool(finished.any()):
        return success
    if isinstance(final, dict):
        if "success" not in final:
            return success
        final_flags = step_array(final["success"], num_envs, "final_info['success']", device, torch.bool)
        return torch.where(finished, final_flags, success)
    success = success.clone()
    for i in finished.nonzero().flatten().tolist():
        entry = final[i]
        if isinstance(entry, dict) and "success" in entry:
            success[i] = bool(np.asarray(entry["success"]).reshape(-1)[0])
    return success
