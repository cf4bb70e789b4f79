"""Generalised advantage estimation over a (T, N) rollout with terminations, truncations and padding.

Row t of every (T, N) tensor describes the transition taken from observation t:

    delta_t = r_t + gamma * (1 - terminated_t) * V_next_t - V_t
    V_next_t = final_values_t   if truncated_t (the episode was cut off: bootstrap from the
                                 value of its real last observation, not the next episode's first)
             = values_{t+1}     otherwise (next_value after the last row)
    A_t = delta_t + gamma * lambda * (1 - done_t) * valid_{t+1} * A_{t+1},   done = terminated | truncated

Rows with valid_t False are padding (an env that already finished waits for a synchronous
reset): their advantages and returns are 0 and they never leak into a valid row's advantage.
A row that is both terminated and truncated counts as terminated (no bootstrap).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class GAEResult(NamedTuple):
    """Advantages and value targets, float (T, N); 0 on padding rows."""

    advantages: torch.Tensor
    returns: torch.Tensor


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_value: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    *,
    final_values: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    gamma: float,
    gae_lambda: float,
) -> GAEResult:
    """GAE(gamma, lambda) advantages and returns (= advantages + values) of a rollout.

    Args:
        rewards: float (T, N), reward of the transition from observation t.
        values: float (T, N), V(observation t).
        next_value: float (N,), V(observation after the last row).
        terminated: bool (T, N), the transition ended its episode in a terminal state.
        truncated: bool (T, N), the transition ended its episode by a time limit (or another cut).
        final_values: float (T, N), V(real last observation) where truncated (other entries are
            ignored); None bootstraps truncations with 0, i.e. treats them as terminations.
        valid: bool (T, N), False for padding rows; None means all valid.
        gamma: discount in [0, 1].
        gae_lambda: GAE lambda in [0, 1].

    Returns:
        GAEResult(advantages, returns), float (T, N).

    Raises:
        ValueError: mismatched shapes, or gamma/gae_lambda outside [0, 1].
    """
    T, N = rewards.shape
    for name, tensor in (("values", values), ("terminated", terminated), ("truncated", truncated),
                         ("final_values", final_values), ("valid", valid)):
        if tensor is not None and tuple(tensor.shape) != (T, N):
            raise ValueError(f"{name} must have the shape of rewards {(T, N)}, got {tuple(tensor.shape)}")
    if tuple(next_value.shape) != (N,):
        raise ValueError(f"next_value must have shape ({N},), got {tuple(next_value.shape)}")
    if not (0.0 <= gamma <= 1.0 and 0.0 <= gae_lambda <= 1.0):
        raise ValueError(f"gamma and gae_lambda must be in [0, 1], got {gamma} and {gae_lambda}")

    terminated = terminated.bool()
    truncated = truncated.bool() & ~terminated
    valid = torch.ones_like(terminated) if valid is None else valid.bool()
    if final_values is None:
        final_values = torch.zeros_like(values)
    # Padding rows may carry garbage (even NaN); where() keeps it out of the arithmetic.
    rewards = torch.where(valid, rewards, torch.zeros_like(rewards))
    values = torch.where(valid, values, torch.zeros_like(values))

    next_values = torch.cat([values[1:], next_value[None]], dim=0)  # (T, N): V(observation t + 1)
    next_values = torch.where(truncated, final_values, next_values)
    not_terminal = (~terminated).to(values.dtype)
    deltas = rewards + gamma * not_terminal * next_values - values  # (T, N)
    # The recursion stops at episode ends and never reads a padding row's advantage.
    next_valid = torch.cat([valid[1:], torch.ones_like(valid[:1])], dim=0)
    carry = ((~(terminated | truncated)) & next_valid).to(values.dtype) * gamma * gae_lambda  # (T, N)

    advantages = torch.zeros_like(values)
    running = torch.zeros_like(next_value, dtype=values.dtype)
    for t in range(T - 1, -1, -1):
        running = deltas[t] + carry[t] * running
        running = torch.where(valid[t], running, torch.zeros_like(running))
        advantages[t] = running
    returns = torch.where(valid, advantages + values, torch.zeros_like(values))
    return GAEResult(advantages, returns)
