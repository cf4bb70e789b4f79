"""A tiny batched control task with the policy-facing observation dict, for PPO tests.

Each env holds a point x in [-1, 1] and a target g. The frame (S x S, uint8) shows the point
as a bright (anti-aliased) column at x's position; the instruction embedding carries g in its first entry
(and a constant 1 in its second), so the policy needs both the image and the instruction.
Action[0] moves the point by 0.15 * action (other action entries are ignored). Reward per
step: the decrease of |x - g|, plus 1 on reaching |x - g| < 0.1, which terminates the episode
(success); episodes are truncated after `max_steps`. A random policy reaches about 0.1 mean
return; moving straight to the target about 1.5.

Options mimic the conventions PPO supports: final observations as a batched dict or a
gymnasium 0.29 object array (or none), synchronous resets with padding transitions
(info["valid"] False, NaN rewards), and faults (NaN or overflowing rewards, NaN
instructions) at a chosen vector step. `state_dict`/`load_state_dict` make resume exact.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch


class PointVecEnv:
    def __init__(self, num_envs: int = 8, image_size: int = 16, instruction_dim: int = 8, max_steps: int = 12,
                 final_obs: str = "batched", sync_reset: bool = False, seed: int = 0,
                 nan_reward_at: int | None = None, huge_reward_at: int | None = None,
                 nan_instruction_at: int | None = None) -> None:
        assert final_obs in ("batched", "gymnasium", "none")
        self.num_envs = num_envs
        self.image_size = image_size
        self.instruction_dim = instruction_dim
        self.max_steps = max_steps
        self.final_obs = final_obs
        self.sync_reset = sync_reset
        self.faults = {"nan_reward": nan_reward_at, "huge_reward": huge_reward_at, "nan_instruction": nan_instruction_at}
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (7,), np.float32)
        self.generator = torch.Generator().manual_seed(seed)
        self.x = torch.zeros(num_envs)
        self.goal = torch.zeros(num_envs)
        self.t = torch.zeros(num_envs, dtype=torch.long)
        self.waiting = torch.zeros(num_envs, dtype=torch.bool)
        self.vector_steps = 0

    # ------------------------------------------------------------------ internals
    def _new_episodes(self, mask: torch.Tensor) -> None:
        n = int(mask.sum())
        goal = torch.rand(n, generator=self.generator) * 2 - 1
        offset = (torch.rand(n, generator=self.generator) * 0.7 + 0.5) * torch.where(
            torch.rand(n, generator=self.generator) < 0.5, -1.0, 1.0)
        self.goal[mask] = goal
        self.x[mask] = (goal + offset).clamp(-1, 1)
        self.t[mask] = 0
        self.waiting[mask] = False

    def _obs(self) -> dict[str, np.ndarray]:
        S = self.image_size
        # Anti-aliased column: the brightness is split between the two nearest pixel columns,
        # so the frame resolves x finer than one pixel (2 / (S - 1)).
        position = (self.x + 1) / 2 * (S - 1)  # (N,) in [0, S - 1]
        weight = (1 - (torch.arange(S)[None, :] - position[:, None]).abs()).clamp(min=0)  # (N, S)
        row = (20 + 210 * weight).round().to(torch.uint8)  # (N, S)
        frames = row[:, None, :, None].expand(-1, S, -1, 3).contiguous()  # (N, S, S, 3)
        instructions = torch.zeros(self.num_envs, self.instruction_dim)
        instructions[:, 0] = self.goal
        instructions[:, 1] = 1.0
        return {"rgb": frames.numpy(), "instruction": instructions.numpy()}

    # ------------------------------------------------------------------ API
    def reset(self, seed: int | None = None, options=None):
        if seed is not None:
            self.generator.manual_seed(seed)
        self._new_episodes(torch.ones(self.num_envs, dtype=torch.bool))
        return self._obs(), {}

    def step(self, actions):
        actions = torch.as_tensor(np.asarray(actions), dtype=torch.float32)
        assert actions.shape == (self.num_envs, 7), actions.shape
        assert bool(torch.isfinite(actions).all()), "PPO sent non-finite actions"
        active = ~self.waiting
        distance = (self.x - self.goal).abs()
        new_x = (self.x + 0.15 * actions[:, 0].clamp(-1, 1)).clamp(-1, 1)
        self.x = torch.where(active, new_x, self.x)
        self.t += active.long()
        new_distance = (self.x - self.goal).abs()
        success = active & (new_distance < 0.1)
        reward = (distance - new_distance) + success.float()
        terminated = success
        truncated = active & ~success & (self.t >= self.max_steps)
        step_index = self.vector_steps
        self.vector_steps += 1
        if self.faults["nan_reward"] == step_index:
            reward[0] = float("nan")
        if self.faults["huge_reward"] == step_index:
            reward[0] = 3e38
        done = terminated | truncated
        info: dict = {"success": success.numpy().copy()}
        if self.sync_reset:
            reward = torch.where(active, reward, torch.full_like(reward, float("nan")))
            info["valid"] = active.numpy().copy()
            self.waiting |= done
            final = self._obs()
            if bool(self.waiting.all()):
                self._new_episodes(torch.ones(self.num_envs, dtype=torch.bool))
        else:
            final = self._obs()
            if bool(done.any()):
                self._new_episodes(done)
        if bool(done.any()) and self.final_obs == "batched":
            info["final_observation"] = final
            info["final_info"] = {"success": success.numpy().copy()}
            info["_final_info"] = done.numpy().copy()
        elif bool(done.any()) and self.final_obs == "gymnasium":
            entries = np.empty(self.num_envs, dtype=object)
            infos = np.empty(self.num_envs, dtype=object)
            for i in done.nonzero().flatten().tolist():
                entries[i] = {key: value[i] for key, value in final.items()}
                infos[i] = {"success": bool(success[i])}
            info["final_observation"], info["_final_observation"] = entries, done.numpy().copy()
            info["final_info"], info["_final_info"] = infos, done.numpy().copy()
            info["success"] = np.where(done.numpy(), False, info["success"])  # gymnasium: info is the reset's
        obs = self._obs()
        if self.faults["nan_instruction"] == step_index:
            obs["instruction"][0, 0] = np.nan
        return obs, reward.numpy(), terminated.numpy(), truncated.numpy(), info

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "x": self.x.clone(), "goal": self.goal.clone(),
                "t": self.t.clone(), "waiting": self.waiting.clone(), "vector_steps": self.vector_steps}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.x, self.goal, self.t = state["x"].clone(), state["goal"].clone(), state["t"].clone()
        self.waiting, self.vector_steps = state["waiting"].clone(), int(state["vector_steps"])


class StatelessPointVecEnv(PointVecEnv):
    """The same task without state_dict/load_state_dict (a resumed run resets it)."""

    state_dict = None  # type: ignore[assignment]
    load_state_dict = None  # type: ignore[assignment]
