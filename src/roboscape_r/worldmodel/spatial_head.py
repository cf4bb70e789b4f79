"""Spatial autoregressive head: decode the tokens of a frame one at a time, jointly.

The world model predicts all h*w tokens of the next frame at once from the hidden states of the
current frame (see `world_model.py`), so the tokens of one frame are independent given the past.
For WM_act that is fine: the action pins the next frame down. WM_txt has no action, and its
future is many-valued (when and how fast the arm moves); measured on the shipped WM_txt, greedy
decoding then blurs the arm and stays still, and sampling every token independently mixes
incompatible futures until the scene dissolves (checkpoints/small/README.md).

This head decodes a frame's tokens jointly instead. Given the backbone's hidden states of
frame t, h_t[1..N], it decodes the tokens z_1..z_N of frame t+1 in raster order with a small
causal transformer:

    input_i  = W h_t[i] + E(z_{i-1}) + p_i          (z_0 is a start token)
    logits_i = token_head(h_t[i]) + out(causal_blocks(input)_i)

The backbone's own logits stay the base and the head adds a correction that depends on the tokens
already chosen; `out` starts at zero, so an untrained head decodes exactly like the backbone.
It is either fitted on a frozen world model by teacher forcing (`spatial_head_train.py`) or
trained with the model (`WorldModelConfig.spatial_head_layers`). Fitted on the shipped WM_txt it
gained almost nothing (checkpoints/small/README.md): the joint structure it can learn there is
small next to the backbone's uncertainty. Decoding costs N small sequential forwards per frame,
affordable for golden trajectories (made once per start and cached); models without a head keep
the one-forward decoding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from roboscape_r.checkpoint import weights_digest

SPATIAL_HEAD_KIND = "spatial_head"
"""`kind` of spatial-head checkpoints."""


@dataclass(frozen=True)
class SpatialHeadConfig:
    """Architecture of a spatial autoregressive head."""

    num_tokens: int
    """Tokens per frame (grid_h * grid_w of the world model)."""
    codebook_size: int
    """Token vocabulary of the world model."""
    d_model: int
    """Width of the world model's hidden states."""
    width: int = 128
    """Width of the head's transformer."""
    n_layers: int = 2
    """Causal transformer blocks."""
    n_heads: int = 4
    """Attention heads per block."""

    def __post_init__(self) -> None:
        for name in ("num_tokens", "codebook_size", "d_model", "width", "n_layers", "n_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"SpatialHeadConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.width % self.n_heads:
            raise ValueError(f"SpatialHeadConfig.width ({self.width}) must be divisible by n_heads ({self.n_heads})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SpatialHeadConfig:
        return cls(**values)

    @classmethod
    def for_world_model(cls, model_config: Any, **sizes: int) -> SpatialHeadConfig:
        """The head that fits a `WorldModelConfig` (token grid, vocabulary, hidden width)."""
        return cls(num_tokens=model_config.grid_h * model_config.grid_w, codebook_size=model_config.codebook_size,
                   d_model=model_config.d_model, **sizes)


class SpatialARHead(nn.Module):
    """Causal transformer over the tokens of one frame; see the module docstring."""

    def __init__(self, config: SpatialHeadConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.in_proj = nn.Linear(config.d_model, w)
        self.prev_embedding = nn.Embedding(config.codebook_size + 1, w)  # id codebook_size: start token
        self.position = nn.Parameter(torch.randn(config.num_tokens, w) * 0.02)
        layer = nn.TransformerEncoderLayer(w, config.n_heads, 4 * w, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(w)
        self.out = nn.Linear(w, config.codebook_size)
        nn.init.zeros_(self.out.weight)  # an untrained head adds nothing to the backbone's logits
        nn.init.zeros_(self.out.bias)
        mask = torch.triu(torch.full((config.num_tokens, config.num_tokens), float("-inf")), diagonal=1)
        self.register_buffer("causal_mask", mask, persistent=False)

    def _check(self, hidden: torch.Tensor) -> None:
        cfg = self.config
        if hidden.dim() != 3 or tuple(hidden.shape[1:]) != (cfg.num_tokens, cfg.d_model):
            raise ValueError(f"hidden states must be (R, {cfg.num_tokens}, {cfg.d_model}), got {tuple(hidden.shape)}")

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        return self.norm(self.blocks(x, mask=self.causal_mask[:n, :n], is_causal=True))

    def delta_logits(self, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced corrections (R, N, V): entry i sees hidden[:, :i+1] and tokens[:, :i] only.

        Args:
            hidden: float (R, N, d_model), the backbone's hidden states of the current frames.
            tokens: long (R, N), the true tokens of the next frames in raster order.
        """
        self._check(hidden)
        if tuple(tokens.shape) != tuple(hidden.shape[:2]):
            raise ValueError(f"tokens must be {tuple(hidden.shape[:2])}, got {tuple(tokens.shape)}")
        start = torch.full_like(tokens[:, :1], self.config.codebook_size)
        previous = torch.cat([start, tokens[:, :-1]], dim=1).long()
        x = self.in_proj(hidden.to(self.in_proj.weight.dtype)) + self.prev_embedding(previous) + self.position
        return self.out(self._run(x))

    @torch.inference_mode()
    def decode(self, hidden: torch.Tensor, base_logits: Callable[[int], torch.Tensor],
               choose: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Decode the next frames' tokens one position at a time.

        Args:
            hidden: float (R, N, d_model), the backbone's hidden states of the current frames.
            base_logits: i -> float (R, V), the backbone's logits of position i.
            choose: float (R, V) logits -> long (R,) tokens (argmax or a sampler).

        Returns:
            long (R, N) tokens; position i is chosen from `base_logits(i)` plus the correction that
            `delta_logits` gives for the same earlier tokens.
        """
        self._check(hidden)
        R, N = hidden.shape[:2]
        x = self.in_proj(hidden.to(self.in_proj.weight.dtype)) + self.position  # (R, N, W)
        x[:, 0] += self.prev_embedding.weight[self.config.codebook_size]
        tokens = torch.empty(R, N, dtype=torch.long, device=hidden.device)
        # The prefix is recomputed at every position (N small forwards of at most N tokens); a KV
        # cache would save little at N = 64 and nn.TransformerEncoder does not offer one.
        for i in range(N):
            delta = self.out(self._run(x[:, : i + 1])[:, -1])  # (R, V)
            tokens[:, i] = choose(base_logits(i).float() + delta.float())
            if i + 1 < N:
                x[:, i + 1] += self.prev_embedding(tokens[:, i])
        return tokens


def check_head_fits(head: SpatialARHead, model_config: Any, where: str = "the spatial head") -> None:
    """Raise ValueError naming `where` if `head` was built for another world model's grid or width."""
    expected = SpatialHeadConfig.for_world_model(model_config, width=head.config.width,
                                                 n_layers=head.config.n_layers, n_heads=head.config.n_heads)
    if head.config != expected:
        raise ValueError(f"{where} was built for {head.config.num_tokens} tokens of a {head.config.codebook_size}-code "
                         f"vocabulary at width {head.config.d_model}, but the world model has "
                         f"{expected.num_tokens} tokens, {expected.codebook_size} codes and width {expected.d_model}; "
                         "train a head for this world model (roboscape train-spatial-head)")


def load_spatial_head(path: str, model: nn.Module | None = None, map_location: str | torch.device = "cpu") -> SpatialARHead:
    """Rebuild a spatial head from its checkpoint, in eval mode.

    Args:
        path: checkpoint file (or run folder) written by `roboscape train-spatial-head`.
        model: the `WorldModel` it will decode for; checked when given.

    Raises:
        roboscape_r.checkpoint.CheckpointError: missing, corrupt or of another kind.
        ValueError: the head does not fit `model`, or was fitted to other world-model weights.
    """
    from roboscape_r.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, expected_kind=SPATIAL_HEAD_KIND, map_location=map_location)
    head = SpatialARHead(SpatialHeadConfig.from_dict(ckpt["config"]["head"]))
    head.load_state_dict(ckpt["model"])
    if model is not None:
        check_head_fits(head, model.config, f"spatial head {ckpt['path']}")
        fitted_to = ckpt["config"].get("world_model_digest")
        if fitted_to is not None and fitted_to != weights_digest(model):
            raise ValueError(f"spatial head {ckpt['path']} was fitted to other world-model weights (trained from "
                             f"{ckpt['config'].get('world_model_path', 'an unknown checkpoint')}); pass that world "
                             "model, or train a head for this one (roboscape train-spatial-head)")
    return head.to(map_location).eval()
