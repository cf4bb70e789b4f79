"""WM_act and WM_txt: one spatial-temporal transformer with two conditioning heads.

Both models read frame-token grids and predict, from the hidden states of frame t, ALL
h*w tokens of frame t+1 at once plus a done/success logit, so generating a frame costs one
forward of h*w new tokens. Token-by-token decoding would cost h*w forwards per frame (64 at
an 8x8 grid) and MaskGIT-style iterative decoding 8-12; on a CPU rollout that is the
difference between hundreds and a handful of env steps/s. The price is that the tokens of
one frame are predicted independently given the past: fine for greedy rollouts, noisier
when sampling at high temperature.

- WM_act (`cond="act"`): the action a_t, through an MLP, is added to every token of frame t
  (and, with `cond_every_layer`, projected again into the residual stream before every block).
- WM_txt (`cond="txt"`): a projected instruction embedding is added to every token of every
  frame; given the first frame it generates a "golden trajectory" with no actions.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from roboscape_r.worldmodel.config import WorldModelConfig
from roboscape_r.worldmodel.transformer import KVCache, SpatialTemporalTransformer, init_weights


class WorldModelOutput(NamedTuple):
    """Predictions made at each input frame t about frame t+1."""

    next_token_logits: torch.Tensor
    """float (B, T, h*w, V): logits of the tokens of frame t+1."""
    done_logits: torch.Tensor
    """float (B, T): logit that frame t+1 shows the task done (success)."""


class WorldModel(nn.Module):
    """Spatial-temporal world model; `config.cond` selects WM_act or WM_txt conditioning."""

    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.token_embedding = nn.Embedding(config.codebook_size, d)
        if config.cond == "act":
            self.cond_embedding = nn.Sequential(
                nn.Linear(config.action_dim, d), nn.GELU(), nn.Linear(d, d)
            )
        else:
            self.cond_embedding = nn.Sequential(
                nn.LayerNorm(config.text_dim), nn.Linear(config.text_dim, d), nn.GELU(), nn.Linear(d, d)
            )
        self.backbone = SpatialTemporalTransformer(config)
        self.token_head = nn.Linear(d, config.codebook_size)
        self.done_head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 1))
        init_weights(self, config.n_layers)
        self.copy_logit = nn.Parameter(torch.tensor(float(config.copy_prior))) if config.copy_prior else None
        self.spatial_head = None  # built last, with its own initialisation (a zero correction)
        if config.spatial_head_layers:
            from roboscape_r.worldmodel.spatial_head import SpatialARHead, SpatialHeadConfig

            self.spatial_head = SpatialARHead(SpatialHeadConfig.for_world_model(
                config, width=config.spatial_head_width, n_layers=config.spatial_head_layers, n_heads=config.n_heads))

    def new_kv_cache(self, batch_size: int) -> KVCache:
        """An empty KV cache for `batch_size` sequences, on this model's device and dtype."""
        param = self.token_embedding.weight
        return KVCache(self.config, batch_size, device=param.device, dtype=param.dtype)

    def forward(
        self,
        tokens: torch.Tensor,
        actions: torch.Tensor | None = None,
        instruction_embeddings: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> WorldModelOutput:
        """Predict frame t+1 from frames <= t.

        Args:
            tokens: long (B, T, h, w) token grids of T consecutive frames (T <= context_frames,
                minus the frames already in `kv_cache`).
            actions: float (B, T, action_dim), action t applied after frame t. WM_act only.
            instruction_embeddings: float (B, text_dim). WM_txt only.
            kv_cache: optional; the T frames follow the cached ones and are appended to it.

        Returns:
            WorldModelOutput(next_token_logits (B, T, h*w, V), done_logits (B, T)). With a spatial
            head, the logits of token i of frame t+1 (t < T-1) are teacher-forced on that frame's
            true tokens before i, taken from `tokens`; the last frame's stay the backbone's.

        Raises:
            ValueError: wrong shapes, or the conditioning of the other model kind.
        """
        hidden = self.hidden_states(tokens, actions, instruction_embeddings, kv_cache)  # (B, T, h*w, D)
        B, T, H, W = tokens.shape
        logits = self.token_logits(hidden, tokens.reshape(B, T, H * W))
        if self.spatial_head is not None and T > 1:
            N, D = H * W, hidden.shape[-1]
            delta = self.spatial_head.delta_logits(hidden[:, :-1].reshape(B * (T - 1), N, D),
                                                   tokens[:, 1:].reshape(B * (T - 1), N))
            logits[:, :-1] += delta.view(B, T - 1, N, -1).to(logits.dtype)  # in place: no copy of the logits
        return WorldModelOutput(logits, self.done_logits(hidden))

    def token_logits(self, hidden: torch.Tensor, current_tokens: torch.Tensor) -> torch.Tensor:
        """Next-frame token logits (..., V) from hidden states (..., D) and the tokens (...) at
        the same positions of the current frame, which receive the learned copy bonus."""
        logits = self.token_head(hidden)
        if self.copy_logit is not None:
            bonus = self.copy_logit.to(logits.dtype).expand(current_tokens.shape).unsqueeze(-1)
            logits.scatter_add_(-1, current_tokens.long().unsqueeze(-1), bonus)  # in place: no logits copy
        return logits

    def hidden_states(
        self,
        tokens: torch.Tensor,
        actions: torch.Tensor | None = None,
        instruction_embeddings: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        """The backbone's final hidden states, float (B, T, h*w, D); arguments as in `forward`.

        Rollouts apply `token_head` to the last frame only, in chunks, so that the full
        (B, h*w, V) logits never have to be allocated at once.
        """
        cfg = self.config
        if tokens.dim() != 4 or tuple(tokens.shape[2:]) != (cfg.grid_h, cfg.grid_w):
            raise ValueError(
                f"tokens must be (B, T, {cfg.grid_h}, {cfg.grid_w}), got {tuple(tokens.shape)}"
            )
        if tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"tokens must be an integer tensor, got {tokens.dtype}")
        B, T, H, W = tokens.shape
        cond = self._embed_condition(B, T, actions, instruction_embeddings)  # (B, T, D)
        x = self.token_embedding(tokens.reshape(B, T, H * W)) + cond[:, :, None, :]  # (B, T, h*w, D)
        return self.backbone(x, kv_cache, cond)  # (B, T, h*w, D)

    def done_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Done logit of each frame from its pooled hidden states: (B, T, h*w, D) -> (B, T)."""
        return self.done_head(self.done_features(hidden)).squeeze(-1)

    @staticmethod
    def done_features(hidden: torch.Tensor) -> torch.Tensor:
        """The done head's input: each frame's hidden states averaged over its tokens, (..., h*w, D) -> (..., D)."""
        return hidden.mean(dim=-2)

    def _embed_condition(
        self,
        batch_size: int,
        num_frames: int,
        actions: torch.Tensor | None,
        instruction_embeddings: torch.Tensor | None,
    ) -> torch.Tensor:
        cfg = self.config
        if cfg.cond == "act":
            if instruction_embeddings is not None:
                raise ValueError("WM_act (cond='act') takes actions, not instruction_embeddings")
            expected = (batch_size, num_frames, cfg.action_dim)
            if actions is None or tuple(actions.shape) != expected:
                got = None if actions is None else tuple(actions.shape)
                raise ValueError(f"WM_act needs actions of shape {expected}, got {got}")
            return self.cond_embedding(actions.to(self.token_embedding.weight.dtype))  # (B, T, D)
        if actions is not None:
            raise ValueError("WM_txt (cond='txt') takes instruction_embeddings, not actions")
        expected = (batch_size, cfg.text_dim)
        if instruction_embeddings is None or tuple(instruction_embeddings.shape) != expected:
            got = None if instruction_embeddings is None else tuple(instruction_embeddings.shape)
            raise ValueError(f"WM_txt needs instruction_embeddings of shape {expected}, got {got}")
        text = self.cond_embedding(instruction_embeddings.to(self.token_embedding.weight.dtype))  # (B, D)
        return text[:, None, :].expand(batch_size, num_frames, cfg.d_model)


class WorldModelLosses(NamedTuple):
    """Training losses of one batch of clips."""

    total: torch.Tensor
    """token_ce + done_weight * done_bce."""
    token_ce: torch.Tensor
    """Cross-entropy of the next-frame tokens, mean over tokens."""
    done_bce: torch.Tensor
    """Binary cross-entropy of the done logits, mean over frames."""
    token_accuracy: torch.Tensor
    """Fraction of next-frame tokens whose argmax is right (no gradient)."""


def world_model_losses(
    output: WorldModelOutput, tokens: torch.Tensor, done: torch.Tensor, done_weight: float = 1.0
) -> WorldModelLosses:
    """Next-frame token cross-entropy and done BCE of a forward over whole clips.

    Args:
        output: the model's output over the clip, logits (B, T, h*w, V) and (B, T).
        tokens: long (B, T, h, w), the clip's tokens; frame t+1 is the target of output t.
        done: bool or float (B, T), done label of each step in ManiSkill's convention: label t
            describes the state after action t, i.e. frame t+1, so it is the target of output t.
        done_weight: weight of the done BCE in `total`.

    Returns:
        WorldModelLosses; the last frame's token predictions have no target and are ignored.
    """
    B, T, H, W = tokens.shape
    if tuple(output.next_token_logits.shape[:3]) != (B, T, H * W):
        raise ValueError(
            f"logits {tuple(output.next_token_logits.shape)} do not match tokens {tuple(tokens.shape)}"
        )
    if tuple(done.shape) != (B, T):
        raise ValueError(f"done must be ({B}, {T}), got {tuple(done.shape)}")
    logits = output.next_token_logits[:, :-1].float()  # (B, T-1, h*w, V)
    targets = tokens[:, 1:].reshape(B, T - 1, H * W)  # (B, T-1, h*w)
    token_ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    done_bce = F.binary_cross_entropy_with_logits(output.done_logits.float(), done.float())
    with torch.no_grad():
        token_accuracy = (argmax_last_dim(logits.reshape(-1, logits.shape[-1])) == targets.reshape(-1)).float().mean()
    return WorldModelLosses(token_ce + done_weight * done_bce, token_ce, done_bce, token_accuracy)


def argmax_last_dim(values: torch.Tensor) -> torch.Tensor:
    """`values.argmax(dim=-1)` for (R, V) values, same result (first index of the maximum).

    On CPU, torch's argmax over a long last dimension runs at about 2 ns per element, 4-5x
    slower than amax; this takes the amax of blocks of 64, the argmax of the block maxima,
    then the argmax inside the winning block.
    """
    R, V = values.shape
    if values.device.type != "cpu" or V % 64 != 0:
        return values.argmax(dim=-1)
    blocks = values.reshape(R, V // 64, 64)
    best_block = blocks.amax(dim=-1).argmax(dim=-1)  # (R,)
    within = blocks[torch.arange(R, device=values.device), best_block].argmax(dim=-1)  # (R,)
    return best_block * 64 + within
