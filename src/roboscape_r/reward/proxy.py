"""The proxy reward: a small CNN trained to predict the simulator's dense reward from a frame.

A learned reward model in the usual sense: trained on the training scenes' frames (see
`reward.proxy_train`) to regress ManiSkill's normalised dense reward of the state a frame shows
and to classify success. For frame x_t after the t-th action, task k of the env:

    r_hat_t, s_hat_t = sigmoid(head(cnn(x_t), embed(k)))     predicted dense reward in (0, 1),
                                                             predicted success probability
    r_t = r_hat_t + success_weight * s_hat_t

ManiSkill's normalised dense reward already reaches 1 at success, so `success_weight` defaults
to 0 (the success head then only serves as an auxiliary training target and a diagnostic). The
done probability of the world model is not used: this reward only sees the frame.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from roboscape_r.checkpoint import CheckpointError, load_checkpoint
from roboscape_r.data.scenes import TASKS
from roboscape_r.reward.base import EpisodeContext, WorldModelReward, register_reward
from roboscape_r.tokenizer.model import to_model_space

CHECKPOINT_KIND = "proxy_reward"


@dataclass(frozen=True)
class ProxyRewardConfig:
    """Architecture of the proxy reward network."""

    image_size: int = 64
    """Height and width of the input frames."""
    channels: tuple[int, ...] = (32, 64, 64, 128)
    """Conv widths: the first at image_size / 2 (after a pixel-unshuffle), each next one halves the resolution."""
    hidden: int = 256
    """Width of the MLP head."""
    task_dim: int = 32
    """Size of the learned task embedding concatenated to the image features."""
    tasks: tuple[str, ...] = tuple(TASKS)
    """Task names the network is conditioned on (an env's task must be one of them)."""
    norm_groups: int = 8
    """GroupNorm groups of the conv layers (GroupNorm: no train/eval difference, unlike BatchNorm)."""

    def __post_init__(self) -> None:
        for name in ("image_size", "hidden", "task_dim", "norm_groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ProxyRewardConfig.{name} must be a positive int, got {value!r}")
        if not self.channels or any(not isinstance(c, int) or c < 1 for c in self.channels):
            raise ValueError(f"ProxyRewardConfig.channels must be positive ints, got {self.channels}")
        if self.image_size % 2**len(self.channels) != 0:
            raise ValueError(f"ProxyRewardConfig.image_size ({self.image_size}) must be divisible by "
                             f"2**len(channels) = {2**len(self.channels)}; use fewer conv levels")
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"ProxyRewardConfig.tasks must be distinct task names, got {self.tasks}")

    @property
    def feature_size(self) -> int:
        """Height and width of the last conv map."""
        return self.image_size // 2**len(self.channels)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ProxyRewardConfig:
        """Rebuild from `dataclasses.asdict` output (lists from JSON become tuples)."""
        values = dict(values)
        values["channels"] = tuple(values["channels"])
        values["tasks"] = tuple(values["tasks"])
        return cls(**values)


class ProxyPrediction(NamedTuple):
    """What `ProxyRewardNet.forward` returns."""

    reward: torch.Tensor
    """float (B,) predicted dense reward in (0, 1)."""
    success_logit: torch.Tensor
    """float (B,) logit of the predicted success probability."""


def _conv_block(in_channels: int, out_channels: int, stride: int, groups: int) -> nn.Sequential:
    import math

    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
                         nn.GroupNorm(math.gcd(groups, out_channels), out_channels), nn.SiLU())


class ProxyRewardNet(nn.Module):
    """uint8 frames (B, H, W, 3) + task ids (B,) -> predicted dense reward and success logit."""

    def __init__(self, config: ProxyRewardConfig = ProxyRewardConfig()) -> None:
        super().__init__()
        self.config = config
        widths = config.channels
        # Pixel-unshuffle(2) instead of a full-resolution conv: the cheapest first layer on a CPU.
        layers = [_conv_block(12, widths[0], 1, config.norm_groups)]
        layers += [_conv_block(widths[i], widths[i + 1], 2, config.norm_groups) for i in range(len(widths) - 1)]
        self.convs = nn.Sequential(*layers)
        self.task_embedding = nn.Embedding(len(config.tasks), config.task_dim)
        self.head = nn.Sequential(
            nn.Linear(widths[-1] * config.feature_size**2 + config.task_dim, config.hidden), nn.SiLU(),
            nn.Linear(config.hidden, config.hidden), nn.SiLU(), nn.Linear(config.hidden, 2),
        )

    def task_ids(self, tasks: list[str]) -> torch.Tensor:
        """long (B,) ids of task names; raises ValueError for a task the network was not trained on."""
        unknown = sorted(set(tasks) - set(self.config.tasks))
        if unknown:
            raise ValueError(f"the proxy reward was trained for tasks {list(self.config.tasks)}, not {unknown}; "
                             "train it on data of these tasks")
        return torch.tensor([self.config.tasks.index(t) for t in tasks], dtype=torch.long)

    def forward(self, frames_uint8: torch.Tensor, task_ids: torch.Tensor) -> ProxyPrediction:
        size = self.config.image_size
        if frames_uint8.dtype != torch.uint8 or frames_uint8.dim() != 4 or tuple(frames_uint8.shape[1:]) != (size, size, 3):
            raise ValueError(f"the proxy reward takes uint8 frames (B, {size}, {size}, 3), got {frames_uint8.dtype} "
                             f"{tuple(frames_uint8.shape)}")
        if task_ids.shape != frames_uint8.shape[:1]:
            raise ValueError(f"expected one task id per frame ({frames_uint8.shape[0]},), got {tuple(task_ids.shape)}")
        images = nn.functional.pixel_unshuffle(to_model_space(frames_uint8), 2)  # (B, 12, H/2, W/2)
        features = self.convs(images).flatten(1)  # (B, C * f * f)
        out = self.head(torch.cat([features, self.task_embedding(task_ids)], dim=1))  # (B, 2)
        return ProxyPrediction(torch.sigmoid(out[:, 0]), out[:, 1])


def load_proxy_reward(path: str | Path, *, map_location: str | torch.device = "cpu") -> tuple[ProxyRewardNet, dict]:
    """Rebuild a trained proxy reward network from its checkpoint alone.

    Args:
        path: a proxy-reward checkpoint file or its run folder (newest checkpoint).
        map_location: device of the weights.

    Returns:
        (network in eval mode, info dict: path, step, validation metrics of the checkpoint).

    Raises:
        roboscape_r.checkpoint.CheckpointError: missing, corrupt, another kind of checkpoint, or
            weights that do not fit the stored architecture.
    """
    ckpt = load_checkpoint(path, expected_kind=CHECKPOINT_KIND, map_location=map_location)
    try:
        config = ProxyRewardConfig.from_dict(ckpt["config"]["model"])
        net = ProxyRewardNet(config)
        net.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint {ckpt['path']} does not hold a proxy reward network this code can build "
                              f"({type(error).__name__}: {str(error).splitlines()[0]}); retrain it with "
                              "`roboscape train-proxy-reward`") from error
    info = {"path": str(ckpt["path"]), "step": ckpt["step"], "val": ckpt["extra"].get("val", {})}
    return net.to(map_location).eval().requires_grad_(False), info


class ProxyReward(WorldModelReward):
    """Batched proxy reward for B parallel episodes (equation in the module docstring)."""

    name = "proxy"
    needs_golden = False

    def __init__(self, net: ProxyRewardNet, success_weight: float = 0.0, info: dict | None = None) -> None:
        self.net = net.eval()
        self.success_weight = float(success_weight)
        self.info = info or {}
        self.device = next(net.parameters()).device
        self._task_ids: torch.Tensor | None = None

    @torch.inference_mode()
    def reset(self, context: EpisodeContext) -> None:
        """Remember each env's task (raises ValueError for a task the network does not know)."""
        self._task_ids = self.net.task_ids(list(context.tasks)).to(self.device)

    @torch.inference_mode()
    def predict(self, frames: torch.Tensor) -> ProxyPrediction:
        """Raw predictions for frames uint8 (B, H, W, 3) of the envs of the last reset."""
        if self._task_ids is None:
            raise RuntimeError("call reset(context) before computing rewards")
        if frames.shape[0] != self._task_ids.shape[0]:
            raise ValueError(f"expected {self._task_ids.shape[0]} frames (one per env), got {tuple(frames.shape)}")
        return self.net(frames.to(self.device), self._task_ids)

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor, done_prob: torch.Tensor) -> torch.Tensor:
        """Reward float32 (B,) for frames uint8 (B, H, W, 3) after a step; done_prob (B,) is not used."""
        if done_prob.shape != frames.shape[:1]:
            raise ValueError(f"expected done_prob ({frames.shape[0]},), got {tuple(done_prob.shape)}")
        prediction = self.predict(frames)
        reward = prediction.reward + self.success_weight * torch.sigmoid(prediction.success_logit)
        return reward.float()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "network": "CNN + task embedding -> ManiSkill normalised dense reward, success",
                "checkpoint": self.info.get("path"), "step": self.info.get("step"),
                "success_weight": self.success_weight, "val": self.info.get("val", {}),
                "config": dataclasses.asdict(self.net.config)}


def make_proxy_reward(checkpoint: str | Path | None = None, success_weight: float = 0.0,
                      device: str | torch.device = "cpu", **_: object) -> ProxyReward:
    """`make_reward("proxy", checkpoint=PATH)`: load a network trained by `roboscape train-proxy-reward`.

    Raises:
        ValueError: no checkpoint given.
        roboscape_r.checkpoint.CheckpointError: missing, corrupt or wrong-kind checkpoint.
    """
    if checkpoint is None:
        raise ValueError("the proxy reward needs checkpoint=PATH, a network trained with "
                         "`roboscape train-proxy-reward`")
    net, info = load_proxy_reward(checkpoint, map_location=device)
    return ProxyReward(net, success_weight, info)


register_reward("proxy", make_proxy_reward)
