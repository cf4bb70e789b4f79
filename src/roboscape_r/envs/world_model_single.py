"""One world-model episode as a plain `gymnasium.Env`, for clients that want a single env
(stable-baselines3, gymnasium's env checker, quick experiments).

It is `WorldModelVectorEnv` with `num_envs=1` and no autoreset: observations drop the batch
axis ({"rgb": uint8 (H, W, 3), "instruction": float32 (D,)}), actions are float32 (7,), and
after an episode ends the client calls `reset()` as with any gymnasium env. With one env
there is no padding, so every transition is valid.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from roboscape_r.envs.world_model import WorldModelEnvConfig, WorldModelVectorEnv


class WorldModelEnv(gym.Env):
    """A single world-model env; arguments as `WorldModelVectorEnv` (num_envs must be 1).

    Raises:
        ValueError: num_envs other than 1, and everything `WorldModelVectorEnv` raises.
    """

    metadata = WorldModelVectorEnv.metadata

    def __init__(self, config: WorldModelEnvConfig | None = None, *, render_mode: str | None = None,
                 **kwargs: Any) -> None:
        num_envs = kwargs.pop("num_envs", 1)  # a config's own num_envs is overridden: this env is single
        if num_envs != 1:
            raise ValueError(f"WorldModelEnv is a single env (num_envs=1), got num_envs={num_envs}; "
                             "use WorldModelVectorEnv (RoboScapeR/WorldModel-v0) for batches")
        self.vector_env = WorldModelVectorEnv(config, autoreset=False, render_mode=render_mode, num_envs=1, **kwargs)
        self.observation_space = self.vector_env.single_observation_space
        self.action_space = self.vector_env.single_action_space
        self.render_mode = render_mode

    @property
    def config(self) -> WorldModelEnvConfig:
        """The env's config (num_envs is 1)."""
        return self.vector_env.config

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start a new episode; returns (obs, info) with info task, scene, instruction, start_index."""
        super().reset(seed=seed)
        obs, info = self.vector_env.reset(seed=seed, options=options)
        return _first(obs), {key: value[0].item() if isinstance(value[0], np.generic) else value[0]
                             for key, value in info.items()}

    def step(self, action: np.ndarray):
        """Run one float (7,) action; returns (obs, reward, terminated, truncated, info).

        info: "success" (done probability passed the threshold), "done_prob", "elapsed_steps".

        Raises:
            ValueError: wrong action shape, NaN or inf.
            RuntimeError: the episode has ended and reset() was not called.
        """
        action = np.asarray(action)
        expected = self.action_space.shape
        if action.shape != expected:
            raise ValueError(f"action must have shape {expected}, got {action.shape}")
        obs, reward, terminated, truncated, info = self.vector_env.step(action[None])
        step_info = {"success": bool(info["success"][0]), "done_prob": float(info["done_prob"][0]),
                     "elapsed_steps": int(info["elapsed_steps"][0])}
        return _first(obs), float(reward[0]), bool(terminated[0]), bool(truncated[0]), step_info

    def render(self) -> np.ndarray | None:
        """uint8 (H, W, 3) current frame when render_mode is "rgb_array", else None."""
        frames = self.vector_env.render()
        return None if frames is None else frames[0]

    def describe(self) -> dict[str, Any]:
        """What this env runs, for run configs (see `WorldModelVectorEnv.describe`)."""
        return self.vector_env.describe()

    def close(self) -> None:
        self.vector_env.close()


def _first(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {key: value[0] for key, value in obs.items()}
