"""Spatial-temporal transformer over frame-token grids: block-causal attention with a KV cache.

The T frames of h*w tokens are flattened into one sequence of T*h*w tokens. Attention is
block-causal: a token sees every token of its own frame (bidirectional, spatial) and every
token of earlier frames (causal, temporal), never a later frame. This is one full attention
per layer rather than factorised spatial/temporal layers: it lets a token look at any
position of any earlier frame (objects move across the grid), and it makes incremental
decoding trivial, since a new frame's queries attend to the whole cache with no mask at all.
At the default size (8 frames x 64 tokens = 512 keys, width 128) attention measured about
20-25% of a CPU training step and of a batch-64 rollout step (the linear layers and the
4096-way token head dominate), so factorising could save at most that much.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from roboscape_r.worldmodel.config import WorldModelConfig


class KVCache:
    """Keys and values of every layer for the frames processed so far.

    Owned by the rollout (the episode state), filled by `SpatialTemporalTransformer.forward`.
    Buffers are preallocated for `context_frames` frames; `num_frames` says how many are valid.
    """

    def __init__(
        self,
        config: WorldModelConfig,
        batch_size: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        head_dim = config.d_model // config.n_heads
        max_tokens = config.context_frames * config.tokens_per_frame
        shape = (config.n_layers, batch_size, config.n_heads, max_tokens, head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)  # (L, B, nh, max_tokens, hd)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.tokens_per_frame = config.tokens_per_frame
        self.max_frames = config.context_frames
        self.batch_size = batch_size
        self.num_frames = 0

    def clear(self) -> None:
        """Forget every cached frame (the buffers are reused)."""
        self.num_frames = 0


def block_causal_mask(
    num_new_frames: int, num_past_frames: int, tokens_per_frame: int, device: torch.device
) -> torch.Tensor | None:
    """Boolean attention mask (True = may attend) of new-frame queries over past+new keys.

    Returns None when there is a single new frame: it may attend to everything cached and
    to its own frame, so no mask is needed (and SDPA takes its fastest path).
    """
    if num_new_frames == 1:
        return None
    query_frame = torch.arange(num_past_frames, num_past_frames + num_new_frames, device=device)
    key_frame = torch.arange(num_past_frames + num_new_frames, device=device)
    query_frame = query_frame.repeat_interleave(tokens_per_frame)  # (T_new*hw,)
    key_frame = key_frame.repeat_interleave(tokens_per_frame)  # ((T_past+T_new)*hw,)
    return key_frame[None, :] <= query_frame[:, None]  # (T_new*hw, (T_past+T_new)*hw)


class BlockCausalSelfAttention(nn.Module):
    """Multi-head self-attention with scaled_dot_product_attention and an optional KV cache."""

    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.d_model // config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None,
        kv_cache: KVCache | None = None,
        layer_index: int = 0,
    ) -> torch.Tensor:
        B, L, D = x.shape  # L = new tokens (T_new * h * w)
        q, k, v = self.qkv(x).split(D, dim=2)
        q = q.view(B, L, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, L, hd)
        k = k.view(B, L, self.n_heads, self.head_dim).transpose(1, 2)
        v = v.view(B, L, self.n_heads, self.head_dim).transpose(1, 2)
        if kv_cache is not None:
            start = kv_cache.num_frames * kv_cache.tokens_per_frame
            kv_cache.keys[layer_index, :, :, start : start + L] = k
            kv_cache.values[layer_index, :, :, start : start + L] = v
            k = kv_cache.keys[layer_index, :, :, : start + L]  # (B, nh, past+L, hd)
            v = kv_cache.values[layer_index, :, :, : start + L]
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, nh, L, hd)
        y = y.transpose(1, 2).reshape(B, L, D)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward block (4x expansion, GELU)."""

    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.d_model, 4 * config.d_model)
        self.proj = nn.Linear(4 * config.d_model, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(config.d_model)
        self.attn = BlockCausalSelfAttention(config)
        self.ln_mlp = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)
        self.cond_proj = nn.Linear(config.d_model, config.d_model) if config.cond_every_layer else None

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None,
        kv_cache: KVCache | None,
        layer_index: int,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.cond_proj is not None and cond is not None:
            B, TN, D = x.shape
            T = cond.shape[1]  # cond (B, T, D) -> every token of its frame
            x = (x.view(B, T, TN // T, D) + self.cond_proj(cond)[:, :, None, :]).view(B, TN, D)
        x = x + self.attn(self.ln_attn(x), attn_mask, kv_cache, layer_index)
        return x + self.mlp(self.ln_mlp(x))


class SpatialTemporalTransformer(nn.Module):
    """Block-causal transformer over (B, T, h*w, D) frame embeddings.

    Adds learned spatial (per grid cell) and temporal (per frame slot in the context)
    position embeddings. With a KV cache, the new frames take the temporal slots after the
    cached ones, and their keys/values are appended to the cache.
    """

    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        self.config = config
        self.spatial_pos = nn.Parameter(torch.zeros(config.tokens_per_frame, config.d_model))
        self.temporal_pos = nn.Parameter(torch.zeros(config.context_frames, config.d_model))
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_final = nn.LayerNorm(config.d_model)
        nn.init.normal_(self.spatial_pos, std=0.02)
        nn.init.normal_(self.temporal_pos, std=0.02)

    def forward(
        self, frame_embeddings: torch.Tensor, kv_cache: KVCache | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Run the blocks over new frames.

        Args:
            frame_embeddings: float (B, T_new, h*w, D), token + conditioning embeddings.
            cond: optional float (B, T_new, D) per-frame conditioning, projected and added before
                every block when `config.cond_every_layer`.
            kv_cache: optional cache; the new frames follow its `num_frames` cached frames,
                and `num_frames` is advanced by T_new.

        Returns:
            float (B, T_new, h*w, D) final hidden states (after the last LayerNorm).

        Raises:
            ValueError: the frames do not fit in the context (or in the cache).
        """
        B, T, N, D = frame_embeddings.shape
        cfg = self.config
        if (N, D) != (cfg.tokens_per_frame, cfg.d_model):
            raise ValueError(
                f"frame embeddings must be (B, T, {cfg.tokens_per_frame}, {cfg.d_model}), "
                f"got {tuple(frame_embeddings.shape)}"
            )
        num_past = 0 if kv_cache is None else kv_cache.num_frames
        if num_past + T > cfg.context_frames:
            raise ValueError(
                f"{num_past} cached + {T} new frames exceed context_frames={cfg.context_frames}"
            )
        if kv_cache is not None and kv_cache.batch_size != B:
            raise ValueError(f"KV cache holds batch {kv_cache.batch_size}, got frames of batch {B}")
        x = frame_embeddings + self.spatial_pos + self.temporal_pos[num_past : num_past + T, None, :]
        x = self.drop(x).reshape(B, T * N, D)  # (B, T*h*w, D)
        attn_mask = block_causal_mask(T, num_past, N, x.device)
        for layer_index, block in enumerate(self.blocks):
            x = block(x, attn_mask, kv_cache, layer_index, cond)
        if kv_cache is not None:
            kv_cache.num_frames += T
        return self.ln_final(x).view(B, T, N, D)


def init_weights(module: nn.Module, n_layers: int) -> None:
    """GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layers)."""
    for name, param in module.named_parameters():
        if name.endswith("proj.weight"):
            nn.init.normal_(param, std=0.02 / math.sqrt(2 * n_layers))
        elif param.dim() >= 2 and "pos" not in name:
            nn.init.normal_(param, std=0.02)
        elif name.endswith(".bias"):
            nn.init.zeros_(param)
