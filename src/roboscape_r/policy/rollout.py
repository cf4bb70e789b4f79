"""PPO's per-update storage: the rollout buffer and the running episode statistics.

Both live on the training device as preallocated tensors; nothing here loops over envs.
"""

from __future__ import annotations

from typing import Any

import torch


class RolloutBuffer:
    """(T, N, ...) tensors of one rollout: T vector steps of N envs.

    Frames are stored *after* the policy's frame preprocessing, so the update epochs do not
    round-trip them through the tokenizer again.
    """

    def __init__(self, num_steps: int, num_envs: int, image_size: int, instruction_dim: int, action_dim: int,
                 device: torch.device) -> None:
        T, N = num_steps, num_envs
        self.frames = torch.zeros((T, N, image_size, image_size, 3), dtype=torch.uint8, device=device)
        self.instructions = torch.zeros((T, N, instruction_dim), device=device)
        self.actions = torch.zeros((T, N, action_dim), device=device)
        self.log_probs = torch.zeros((T, N), device=device)
        self.values = torch.zeros((T, N), device=device)
        self.rewards = torch.zeros((T, N), device=device)
        self.terminated = torch.zeros((T, N), dtype=torch.bool, device=device)
        self.truncated = torch.zeros((T, N), dtype=torch.bool, device=device)
        self.valid = torch.ones((T, N), dtype=torch.bool, device=device)
        self.final_values = torch.zeros((T, N), device=device)
        """V(real last observation) of truncated transitions; 0 where the env gave none."""

    def clear_final_values(self) -> None:
        """Zero the bootstrap values (rows without a final observation must bootstrap with 0)."""
        self.final_values.zero_()

    def flat(self, name: str) -> torch.Tensor:
        """Tensor `name` with (T, N) merged into one leading dimension (T * N, ...)."""
        tensor = getattr(self, name)
        return tensor.reshape(-1, *tensor.shape[2:])


class EpisodeStats:
    """Running return, length and success of each env's current episode, and the episodes that ended.

    Only valid transitions count. `finished()` returns and clears what ended since the last call.
    """

    def __init__(self, num_envs: int, device: torch.device) -> None:
        self.returns = torch.zeros(num_envs, device=device)
        self.lengths = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.success_once = torch.zeros(num_envs, dtype=torch.bool, device=device)
        self._ended: list[torch.Tensor] = []  # (K, 4) rows: return, length, success_once, success_at_end

    def update(self, rewards: torch.Tensor, success: torch.Tensor, done: torch.Tensor, valid: torch.Tensor) -> None:
        """Add one vector step: rewards float (N,) (unscaled), success/done/valid bool (N,)."""
        self.returns += torch.where(valid, rewards, torch.zeros_like(rewards))
        self.lengths += valid.long()
        self.success_once |= success & valid
        ended = done & valid
        if bool(ended.any()):
            self._ended.append(torch.stack([
                self.returns[ended], self.lengths[ended].float(), self.success_once[ended].float(),
                success[ended].float(),
            ], dim=1))
            self.returns[ended] = 0.0
            self.lengths[ended] = 0
            self.success_once[ended] = False

    def finished(self) -> dict[str, float | int | None]:
        """Means over the episodes that ended since the last call (None when none ended), and their count."""
        if not self._ended:
            return {"episodes": 0, "episode_return": None, "episode_length": None, "success_once": None,
                    "success_at_end": None}
        rows = torch.cat(self._ended)
        self._ended.clear()
        means = rows.mean(dim=0).tolist()
        return {"episodes": int(rows.shape[0]), "episode_return": means[0], "episode_length": means[1],
                "success_once": means[2], "success_at_end": means[3]}

    def state_dict(self) -> dict[str, Any]:
        """The in-flight episodes' accumulators (for exact resume)."""
        return {"returns": self.returns.cpu(), "lengths": self.lengths.cpu(), "success_once": self.success_once.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict` output."""
        self.returns.copy_(state["returns"])
        self.lengths.copy_(state["lengths"])
        self.success_once.copy_(state["success_once"])
