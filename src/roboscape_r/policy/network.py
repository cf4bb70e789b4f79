"""Actor-critic for the shared observation dict: a small CNN on the frame, an MLP on the
instruction embedding, fused into one trunk with a Gaussian action head and a value head.

Observations cross this module's boundary as the envs give them: frames uint8 (B, H, W, 3)
channel-last and instruction embeddings float32 (B, D). Frames are expected to have passed
`ActorCritic.prepare_frames` (the optional tokenizer round trip, see preprocess.py) already:
callers do that once per frame (rollout step, BC dataset load) instead of once per epoch.

Actions: a Gaussian with a state-independent log-std. Samples are *clipped* to [-1, 1] when
they are sent to the env, not squashed with tanh: the PPO ratio then uses the exact log-density
of the unclipped sample (a tanh policy needs a Jacobian term and atanh of saturated actions,
which is unstable at exactly +-1), BC regresses the mean directly onto expert actions, and it
is what CleanRL's and ManiSkill's PPO baselines do. The deterministic action is clip(mean).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
from torch import nn
from torch.distributions import Normal

from roboscape_r.policy.preprocess import FramePreprocessor

FramePreprocess = Literal["none", "tokenizer"]


@dataclass(frozen=True)
class PolicyConfig:
    """Architecture of the actor-critic (and what its inputs are); stored in every policy checkpoint.

    The default CNN is NatureCNN (as ManiSkill's ppo_rgb uses) at 64x64: 64 -> 15 -> 6 -> 4
    pixels, 1,024 features into a 256-d linear layer; 0.62M parameters, about 3.6M multiply-adds
    per frame. Measured on one CPU thread: 24 ms for a forward pass over 64 frames, 59 ms for
    forward + backward.
    """

    image_size: int = 64
    """Height and width of the (square) frames the policy takes."""
    action_dim: int = 7
    """Size of an action (pd_ee_delta_pose: 7)."""
    instruction_dim: int = 384
    """Size of an instruction embedding (MiniLM: 384)."""
    text_encoder: Literal["minilm", "t5"] = "minilm"
    """Encoder that turns instruction strings into embeddings in `Policy.act`; must be the one the
    training envs used (roboscape_r.worldmodel.text_encoder.make_text_encoder)."""
    cnn_channels: tuple[int, ...] = (32, 64, 64)
    """Output channels of each conv layer."""
    cnn_kernels: tuple[int, ...] = (8, 4, 3)
    """Kernel size of each conv layer."""
    cnn_strides: tuple[int, ...] = (4, 2, 1)
    """Stride of each conv layer."""
    image_feature_dim: int = 256
    """Width of the linear layer after the flattened conv features."""
    instruction_hidden_dim: int = 128
    """Width of the instruction MLP's output."""
    hidden_dim: int = 256
    """Width of the fused trunk and of the hidden layer of each head."""
    init_log_std: float = -0.5
    """Initial log standard deviation of every action dimension (std 0.61, as ManiSkill's ppo_rgb)."""
    frame_preprocess: FramePreprocess = "none"
    """'none', or 'tokenizer': every frame is encoded and decoded by the tokenizer before the
    network sees it, so a policy trained on world-model (decoded) frames sees the same kind of
    image on real ManiSkill frames. The tokenizer's weights are stored in the policy checkpoint."""
    tokenizer_path: str | None = None
    """Tokenizer checkpoint (file or run folder) used when frame_preprocess='tokenizer' (read
    when the network is first built; recorded for provenance afterwards)."""

    def __post_init__(self) -> None:
        for name in ("image_size", "action_dim", "instruction_dim", "image_feature_dim",
                     "instruction_hidden_dim", "hidden_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"PolicyConfig.{name} must be a positive int, got {value!r}")
        layers = (self.cnn_channels, self.cnn_kernels, self.cnn_strides)
        if not len(self.cnn_channels) or len({len(x) for x in layers}) != 1:
            raise ValueError(
                "PolicyConfig.cnn_channels, cnn_kernels and cnn_strides must be non-empty and of equal length, "
                f"got {self.cnn_channels}, {self.cnn_kernels}, {self.cnn_strides}"
            )
        size = self.image_size
        for kernel, stride in zip(self.cnn_kernels, self.cnn_strides):
            size = (size - kernel) // stride + 1
        if size < 1:
            raise ValueError(
                f"PolicyConfig: the conv layers (kernels {self.cnn_kernels}, strides {self.cnn_strides}) reduce "
                f"{self.image_size}x{self.image_size} frames to nothing; use smaller kernels/strides for this image_size"
            )
        if self.frame_preprocess not in ("none", "tokenizer"):
            raise ValueError(f"PolicyConfig.frame_preprocess must be 'none' or 'tokenizer', got {self.frame_preprocess!r}")
        if self.frame_preprocess == "tokenizer" and not self.tokenizer_path:
            raise ValueError("PolicyConfig.frame_preprocess='tokenizer' needs tokenizer_path (a tokenizer checkpoint)")
        if self.text_encoder not in ("minilm", "t5"):
            raise ValueError(f"PolicyConfig.text_encoder must be 'minilm' or 't5', got {self.text_encoder!r}")

    @property
    def cnn_output_size(self) -> int:
        """Height (= width) of the last conv layer's feature map."""
        size = self.image_size
        for kernel, stride in zip(self.cnn_kernels, self.cnn_strides):
            size = (size - kernel) // stride + 1
        return size

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for checkpoints and JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PolicyConfig:
        """Rebuild from `to_dict` output (lists from JSON become tuples); unknown keys raise TypeError."""
        values = dict(values)
        for name in ("cnn_channels", "cnn_kernels", "cnn_strides"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


class ActionValue(NamedTuple):
    """What `ActorCritic.act_and_value` returns; every field has a leading batch dimension B."""

    action: torch.Tensor
    """(B, A) float: the sampled (or given) action, unclipped."""
    log_prob: torch.Tensor
    """(B,) log-density of `action` under the current policy."""
    entropy: torch.Tensor
    """(B,) entropy of the action distribution."""
    value: torch.Tensor
    """(B,) state value."""
    mean: torch.Tensor
    """(B, A) the Gaussian's mean (unclipped)."""


def _layer_init(layer: nn.Module, std: float = math.sqrt(2), bias: float = 0.0) -> nn.Module:
    # Orthogonal init (CleanRL): keeps activations well scaled through ReLU stacks.
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class ActorCritic(nn.Module):
    """Shared encoder (CNN + instruction MLP + fused trunk), Gaussian actor head, value head."""

    def __init__(self, config: PolicyConfig, preprocessor: FramePreprocessor | None = None) -> None:
        """Build a randomly initialised network.

        Args:
            config: architecture.
            preprocessor: frame preprocessing; default identity. Must match
                `config.frame_preprocess` (build through `roboscape_r.policy.checkpoint` helpers).
        """
        super().__init__()
        self.config = config
        self.preprocessor = preprocessor or FramePreprocessor(None)
        if (self.preprocessor.tokenizer is not None) != (config.frame_preprocess == "tokenizer"):
            raise ValueError(
                f"PolicyConfig.frame_preprocess={config.frame_preprocess!r} but the preprocessor "
                f"{'has' if self.preprocessor.tokenizer is not None else 'has no'} tokenizer"
            )
        convs: list[nn.Module] = []
        in_channels = 3
        for channels, kernel, stride in zip(config.cnn_channels, config.cnn_kernels, config.cnn_strides):
            convs += [_layer_init(nn.Conv2d(in_channels, channels, kernel, stride)), nn.ReLU()]
            in_channels = channels
        flat = in_channels * config.cnn_output_size**2
        self.cnn = nn.Sequential(*convs, nn.Flatten(), _layer_init(nn.Linear(flat, config.image_feature_dim)), nn.ReLU())
        self.instruction_mlp = nn.Sequential(
            _layer_init(nn.Linear(config.instruction_dim, config.instruction_hidden_dim)), nn.ReLU()
        )
        fused = config.image_feature_dim + config.instruction_hidden_dim
        self.trunk = nn.Sequential(_layer_init(nn.Linear(fused, config.hidden_dim)), nn.ReLU())
        self.actor_mean = nn.Sequential(
            _layer_init(nn.Linear(config.hidden_dim, config.hidden_dim)), nn.ReLU(),
            # Small last layer: initial means near 0, so early exploration is set by log_std alone.
            _layer_init(nn.Linear(config.hidden_dim, config.action_dim), std=0.01 * math.sqrt(2)),
        )
        self.critic = nn.Sequential(
            _layer_init(nn.Linear(config.hidden_dim, config.hidden_dim)), nn.ReLU(),
            _layer_init(nn.Linear(config.hidden_dim, 1), std=1.0),
        )
        self.actor_log_std = nn.Parameter(torch.full((config.action_dim,), float(config.init_log_std)))

    # ----------------------------------------------------------------- inputs
    def check_inputs(self, frames_uint8: torch.Tensor, instructions: torch.Tensor) -> None:
        """Raise ValueError unless frames are uint8 (B, S, S, 3) and instructions float (B, D) of this config."""
        size, dim = self.config.image_size, self.config.instruction_dim
        if frames_uint8.dtype != torch.uint8 or frames_uint8.ndim != 4 or tuple(frames_uint8.shape[1:]) != (size, size, 3):
            raise ValueError(
                f"frames must be uint8 (B, {size}, {size}, 3) channel-last, got {frames_uint8.dtype} "
                f"{tuple(frames_uint8.shape)}; the policy was built for PolicyConfig.image_size={size}"
            )
        if not instructions.dtype.is_floating_point or instructions.ndim != 2 or instructions.shape[1] != dim:
            raise ValueError(
                f"instruction embeddings must be float (B, {dim}), got {instructions.dtype} {tuple(instructions.shape)}; "
                f"the policy was built for PolicyConfig.instruction_dim={dim}"
            )
        if frames_uint8.shape[0] != instructions.shape[0]:
            raise ValueError(f"got {frames_uint8.shape[0]} frames but {instructions.shape[0]} instruction embeddings")

    def prepare_frames(self, frames_uint8: torch.Tensor) -> torch.Tensor:
        """Apply the frame preprocessing (identity or tokenizer round trip): uint8 (B, S, S, 3) -> same."""
        return self.preprocessor(frames_uint8)

    # ----------------------------------------------------------------- model
    def features(self, frames_uint8: torch.Tensor, instructions: torch.Tensor) -> torch.Tensor:
        """Fused features (B, hidden_dim) of prepared frames uint8 (B, S, S, 3) and embeddings (B, D)."""
        images = frames_uint8.permute(0, 3, 1, 2).float() / 255.0  # (B, 3, S, S) in [0, 1]
        image_features = self.cnn(images)  # (B, image_feature_dim)
        instruction_features = self.instruction_mlp(instructions.float())  # (B, instruction_hidden_dim)
        return self.trunk(torch.cat([image_features, instruction_features], dim=-1))  # (B, hidden_dim)

    def value(self, frames_uint8: torch.Tensor, instructions: torch.Tensor) -> torch.Tensor:
        """State values (B,) of prepared frames and instruction embeddings."""
        return self.critic(self.features(frames_uint8, instructions)).squeeze(-1)

    def action_mean(self, frames_uint8: torch.Tensor, instructions: torch.Tensor) -> torch.Tensor:
        """Unclipped Gaussian means (B, A)."""
        return self.actor_mean(self.features(frames_uint8, instructions))

    def deterministic_action(self, frames_uint8: torch.Tensor, instructions: torch.Tensor) -> torch.Tensor:
        """clip(mean, -1, 1): the action `Policy.act` returns, float (B, A)."""
        return self.action_mean(frames_uint8, instructions).clamp(-1.0, 1.0)

    def distribution(self, mean: torch.Tensor) -> Normal:
        """Diagonal Gaussian around `mean` (B, A) with the shared, state-independent std."""
        # No argument validation: it costs time on every call, and NaN means must reach PPO's
        # own check, which names the update and keeps the last good checkpoint.
        return Normal(mean, self.actor_log_std.exp().expand_as(mean), validate_args=False)

    def act_and_value(
        self, frames_uint8: torch.Tensor, instructions: torch.Tensor, action: torch.Tensor | None = None,
        *, detach_value_features: bool = False,
    ) -> ActionValue:
        """Sample an action (or score the given one) and compute the value, in one encoder pass.

        Args:
            frames_uint8: prepared frames uint8 (B, S, S, 3).
            instructions: embeddings float (B, D).
            action: (B, A) unclipped actions to score; None samples new ones (global torch RNG).
            detach_value_features: the value sees the shared features detached, so a value loss
                trains the critic head only and leaves the encoder (and thus the actor) alone.
        """
        latent = self.features(frames_uint8, instructions)
        mean = self.actor_mean(latent)
        dist = self.distribution(mean)
        if action is None:
            action = dist.sample()
        value = self.critic(latent.detach() if detach_value_features else latent).squeeze(-1)
        return ActionValue(action, dist.log_prob(action).sum(-1), dist.entropy().sum(-1), value, mean)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters an optimizer should update (the tokenizer of the preprocessor is frozen)."""
        return [p for p in self.parameters() if p.requires_grad]
