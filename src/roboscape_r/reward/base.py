"""One interface for every reward computed inside the world model, selected by name.

A reward sees only what the world-model environment has: the episode's first frames, the
task and instruction of each env, WM_txt's golden trajectory (when the reward asks for one),
and after every step the frames WM_act produced and its predicted done probability. The
simulator baseline (`sim`) is not a world-model reward: it trains in ManiSkill with the
simulator's own dense reward (see `roboscape_r.envs`).

    reward = make_reward("general", tokenizer=tok)     # unknown names list the valid ones
    reward.reset(EpisodeContext(first_frames, tasks, instructions, golden_frames))
    r = reward(frames, done_prob)                      # float32 (B,) per step
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

import torch


@dataclass(frozen=True)
class EpisodeContext:
    """What a reward may know about B parallel episodes when they start."""

    first_frames: torch.Tensor
    """uint8 (B, H, W, 3): the frames the episodes start from (as the policy sees them)."""
    tasks: list[str]
    """Task name of each env, e.g. "PickCube"."""
    instructions: list[str]
    """Language instruction of each env."""
    golden_frames: torch.Tensor | None = None
    """uint8 (B, T, H, W, 3): WM_txt's golden trajectory; entry k-1 is the frame after k steps.
    Given only to rewards with `needs_golden`."""

    def __post_init__(self) -> None:
        B = self.first_frames.shape[0]
        if self.first_frames.dim() != 4 or self.first_frames.shape[-1] != 3 or self.first_frames.dtype != torch.uint8:
            raise ValueError(f"first_frames must be uint8 (B, H, W, 3), got {self.first_frames.dtype} "
                             f"{tuple(self.first_frames.shape)}")
        if len(self.tasks) != B or len(self.instructions) != B:
            raise ValueError(f"expected {B} tasks and instructions (one per env), got {len(self.tasks)} and "
                             f"{len(self.instructions)}")


class WorldModelReward(ABC):
    """A batched reward over B envs that step in lockstep."""

    name: str = ""
    """Registry name (`general`, `embedding`, `proxy`, ...)."""
    needs_golden: bool = False
    """Whether `reset` needs `context.golden_frames` (the env then runs WM_txt)."""

    @abstractmethod
    def reset(self, context: EpisodeContext) -> None:
        """Start B new episodes."""

    @abstractmethod
    def __call__(self, frames: torch.Tensor, done_prob: torch.Tensor) -> torch.Tensor:
        """Reward float32 (B,) for frames uint8 (B, H, W, 3) after a step and WM_act's done_prob (B,)."""

    def describe(self) -> dict[str, Any]:
        """What ran, for run configs and reports (e.g. which distance or encoder)."""
        return {"name": self.name}


_REGISTRY: dict[str, Callable[..., WorldModelReward]] = {}


def register_reward(name: str, factory: Callable[..., WorldModelReward]) -> None:
    """Make `make_reward(name, **kwargs)` call `factory(**kwargs)`; re-registering replaces it."""
    _REGISTRY[name] = factory


def reward_names() -> list[str]:
    """Registered reward names, sorted."""
    _register_builtin()
    return sorted(_REGISTRY)


def make_reward(name: str, **kwargs: Any) -> WorldModelReward:
    """Build the reward registered as `name`; each factory documents the kwargs it needs.

    Raises:
        ValueError: unknown name (the message lists the registered ones).
    """
    _register_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"unknown reward {name!r}; valid rewards: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**kwargs)


def _register_builtin() -> None:
    # Imported here, not at module top, so that the reward modules can import this one.
    import roboscape_r.reward.general  # noqa: F401  (registers "general")

    for module in ("roboscape_r.reward.embedding", "roboscape_r.reward.proxy"):
        try:
            __import__(module)
        except ModuleNotFoundError as err:  # baseline not written yet / optional
            if err.name != module:
                raise
