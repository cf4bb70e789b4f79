"""Configuration of the world-model transformers (WM_act and WM_txt) and of their training runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from roboscape_r.runconfig import RunOptions

CondKind = Literal["act", "txt"]


@dataclass(frozen=True)
class WorldModelConfig:
    """Architecture of a spatial-temporal world model over frame-token grids.

    The default is the small CPU preset (1.9M parameters, over half of them in the 4096-way token
    embedding and head): width 128 and 4 layers at the tokenizer's 8x8 grid is the
    "128, 4, 64 tokens" row of NOTES.md. Its KV-cached rollout measured about 220 ms per
    batch-64 step (about 280 env steps/s) on one busy CPU core, the largest size that keeps a
    few hundred env steps/s; width 192 about doubles the step cost, and a 4x4 tokenizer grid
    would cut it about 5x. Eight context frames keep a training clip at 512 tokens.
    """

    grid_h: int = 8
    """Token rows per frame (the tokenizer's grid height)."""
    grid_w: int = 8
    """Token columns per frame (the tokenizer's grid width)."""
    codebook_size: int = 4096
    """Vocabulary of frame tokens (the tokenizer's codebook size, e.g. 2**12 for 12-bit LFQ)."""
    d_model: int = 128
    """Transformer width."""
    n_layers: int = 4
    """Number of transformer blocks."""
    n_heads: int = 4
    """Attention heads per block; must divide d_model."""
    context_frames: int = 8
    """Most frames the model attends over (length of the learned temporal position table)."""
    action_dim: int = 7
    """Size of one action vector (7 for ManiSkill's pd_ee_delta_pose); used when cond == 'act'."""
    cond: CondKind = "act"
    """Conditioning: 'act' (WM_act, one action per frame) or 'txt' (WM_txt, one instruction embedding)."""
    text_dim: int = 384
    """Size of an instruction embedding (384 for all-MiniLM-L6-v2); used when cond == 'txt'."""
    dropout: float = 0.0
    """Dropout on attention weights and residual branches during training."""
    cond_every_layer: bool = True
    """Also add a per-layer linear projection of the conditioning (action or instruction) to the
    residual stream before every block, not only to the input tokens. With the copy bonus,
    repeating the frame is already a good guess, and a signal entering only at the input was
    measured to be ignored (true vs shuffled actions scored the same)."""
    copy_prior: float = 3.0
    """Initial value of a learned logit bonus for repeating, at each position, the current frame's
    token (a copy mechanism). Consecutive frames share most tokens, so copying is the right
    default and the head only has to learn what changes; 0 disables it."""
    spatial_head_layers: int = 0
    """Causal transformer blocks of a spatial head trained with the model (`spatial_head.py`): each
    frame's tokens are then decoded one at a time, jointly, instead of all at once. Meant for WM_txt,
    whose golden frames are samples of a many-valued future; 0 (no head) keeps one forward per frame."""
    spatial_head_width: int = 128
    """Width of that head (divisible by n_heads)."""
    token_hysteresis: float = 0.0
    """Hysteresis with which real frame sequences are tokenised for this model
    (`Tokenizer.encode_sequence`): its training episodes, and wherever a sequence of real frames is
    fed to it later (held-out evaluation, done-head refits). It is recorded here so that every
    consumer tokenises as training did. 0 is plain `encode`; about 0.2 halves the tokenizer's code
    flicker on still regions. A rollout's first frame is encoded alone either way."""

    def __post_init__(self) -> None:
        positive = {
            "grid_h": self.grid_h,
            "grid_w": self.grid_w,
            "codebook_size": self.codebook_size,
            "d_model": self.d_model,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "context_frames": self.context_frames,
            "action_dim": self.action_dim,
            "text_dim": self.text_dim,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"WorldModelConfig.{name} must be a positive int, got {value!r}")
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"WorldModelConfig.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        if self.context_frames < 2:
            raise ValueError(f"WorldModelConfig.context_frames must be >= 2, got {self.context_frames}")
        if self.cond not in ("act", "txt"):
            raise ValueError(f"WorldModelConfig.cond must be 'act' or 'txt', got {self.cond!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"WorldModelConfig.dropout must be in [0, 1), got {self.dropout}")
        if not isinstance(self.spatial_head_layers, int) or self.spatial_head_layers < 0:
            raise ValueError(f"WorldModelConfig.spatial_head_layers must be an int >= 0, got {self.spatial_head_layers!r}")
        if not isinstance(self.token_hysteresis, (int, float)) or not 0.0 <= self.token_hysteresis < float("inf"):
            raise ValueError(f"WorldModelConfig.token_hysteresis must be a finite number >= 0, got {self.token_hysteresis!r}")
        if self.spatial_head_layers and (self.spatial_head_width < 1 or self.spatial_head_width % self.n_heads):
            raise ValueError(f"WorldModelConfig.spatial_head_width ({self.spatial_head_width}) must be a positive "
                             f"multiple of n_heads ({self.n_heads})")

    @property
    def tokens_per_frame(self) -> int:
        """Number of tokens in one frame (grid_h * grid_w)."""
        return self.grid_h * self.grid_w

    @property
    def kind(self) -> str:
        """Checkpoint kind of this model: 'wm_act' or 'wm_txt'."""
        return f"wm_{self.cond}"

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, for JSON run configs and checkpoints."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> WorldModelConfig:
        """Rebuild from `to_dict` output; unknown keys raise (a typo must fail loudly)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown WorldModelConfig keys {unknown}; known keys are {sorted(known)}")
        return cls(**values)


@dataclass(frozen=True)
class WMTrainConfig(RunOptions):
    """One world-model training run: model, optimisation, data, logging and checkpointing."""

    kind: CondKind = "act"
    """Which world model: 'act' (WM_act, action-conditioned) or 'txt' (WM_txt, instruction-conditioned)."""
    model: WorldModelConfig = field(default_factory=WorldModelConfig)
    """Architecture. Its cond is set from `kind`, its grid from the data, its codebook_size and
    text_dim from the tokenizer and text encoder when they expose them."""
    steps: int = 5000
    """Total optimizer steps of the run (the cosine schedule ends here)."""
    batch_size: int = 32
    """Clips per step, over all ranks (must be divisible by the number of ranks). Measured with
    the default model and 8-frame clips: about 45-55 frames/s on one busy CPU core (batch 32:
    about 5 s per step); on an H100, batch 64 takes 20 ms per step in fp32, 9 ms with bf16."""
    clip_len: int = 8
    """Frames per training clip (<= model.context_frames); longer clips are randomly cropped,
    a batch whose shortest clip is shorter uses that length."""
    lr: float = 6e-4
    """Peak AdamW learning rate."""
    min_lr_ratio: float = 0.1
    """Final learning rate of the cosine schedule as a fraction of lr."""
    warmup_steps: int = 200
    """Steps of linear learning-rate warm-up from 0."""
    weight_decay: float = 0.05
    """AdamW weight decay, applied to matrices and embeddings only (not biases or norms)."""
    adam_betas: tuple[float, float] = (0.9, 0.95)
    """AdamW beta1, beta2."""
    grad_clip_norm: float = 1.0
    """Global gradient-norm clip."""
    done_key: Literal["success", "done"] = "success"
    """Clip key of the done head's label; label t (state after action t, ManiSkill's convention)
    is the target of the prediction made at frame t about frame t+1."""
    done_weight: float = 1.0
    """Weight of the done BCE relative to the token cross-entropy."""
    success_only: bool | None = None
    """Train only on episodes that succeed at some step. None: True for WM_txt, whose rollouts
    are meant to be golden (successful) trajectories; the dataset also holds random and perturbed
    episodes with the same instructions, and a model trained on all of them imagines their
    average. False for WM_act, which must predict failures too."""
    text_encoder: Literal["minilm", "t5"] = "minilm"
    """Instruction encoder of WM_txt (when none is passed in)."""
    seed: int = 0
    """Seed of model initialisation, data order, crops and dropout."""
    init_weights: str | None = None
    """Start from this world-model checkpoint's weights (fine-tuning; same kind and architecture)
    instead of a random initialisation. Ignored when resuming from the run's own checkpoints."""
    token_remap_prob: float = 0.0
    """Share of training clips whose token identities are scrambled (`remap_token_ids`): a random
    subset of the codebook is permuted among itself, the same way in every frame and cell of the
    clip. What stays still stays still and what changes still changes, but a token no longer says
    what the scene looks like at its place, so the model must keep what it is shown rather than
    redraw the scenes it was trained on. 0 (the default) leaves every clip as it is."""
    token_remap_fraction: float = 0.5
    """Largest share of the codebook permuted in a scrambled clip; each clip draws its share
    uniformly from (0, token_remap_fraction]."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "ckpt_every", "keep_last"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"WMTrainConfig.{name} must be a positive int, got {value!r}")
        if self.kind not in ("act", "txt"):
            raise ValueError(f"WMTrainConfig.kind must be 'act' or 'txt', got {self.kind!r}")
        if not 2 <= self.clip_len <= self.model.context_frames:
            raise ValueError(
                f"WMTrainConfig.clip_len must be in [2, model.context_frames={self.model.context_frames}], "
                f"got {self.clip_len}"
            )
        if self.lr <= 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(
                f"WMTrainConfig: need lr > 0 and 0 <= min_lr_ratio <= 1, got {self.lr}, {self.min_lr_ratio}"
            )
        if self.warmup_steps < 0 or self.num_workers < 0:
            raise ValueError("WMTrainConfig.warmup_steps and num_workers must be >= 0")
        if self.run_steps is not None and self.run_steps < 1:
            raise ValueError(f"WMTrainConfig.run_steps must be >= 1 or None, got {self.run_steps}")
        if not 0.0 <= self.token_remap_prob <= 1.0 or not 0.0 < self.token_remap_fraction <= 1.0:
            raise ValueError(f"WMTrainConfig: need 0 <= token_remap_prob <= 1 and 0 < token_remap_fraction <= 1, "
                             f"got {self.token_remap_prob}, {self.token_remap_fraction}")
        if self.done_key not in ("success", "done"):
            raise ValueError(f"WMTrainConfig.done_key must be 'success' or 'done', got {self.done_key!r}")

    @property
    def uses_success_only(self) -> bool:
        """Whether training keeps only successful episodes (see `success_only`)."""
        return self.kind == "txt" if self.success_only is None else self.success_only

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> WMTrainConfig:
        """Rebuild from `dataclasses.asdict` output (nested model dict included)."""
        values = dict(values)
        values["model"] = WorldModelConfig.from_dict(values["model"])
        values["adam_betas"] = tuple(values["adam_betas"])
        return cls(**values)


