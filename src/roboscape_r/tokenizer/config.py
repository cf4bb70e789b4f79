"""Configuration of the LFQ image tokenizer (architecture) and of its training run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from roboscape_r.runconfig import RunOptions

PerceptualLossKind = Literal["gradient", "ema-encoder-lpips", "none"]


@dataclass(frozen=True)
class TokenizerConfig:
    """Architecture of the MAGVIT-2-style tokenizer: conv encoder -> LFQ -> conv decoder.

    The default is the fastest design NOTES.md measured with a usable quality on two CPU
    cores: a pixel-unshuffle(4) stem, 128 channels at 16x16, an 8x8 grid of 12-bit tokens
    (1.1 s per batch-32 training step, 22 dB after 8 minutes, 24.8 dB after 75). Nothing
    convolves at 64x64 except the thin optional refinement at the very end of the decoder.
    A 4096-word vocabulary keeps the world model's output head small while NOTES.md saw
    3,381 of its 4,096 codes in use, so more bits would mostly add unused words.
    """

    image_size: int = 64
    """Height and width of the (square) input frames in pixels."""
    grid_size: int = 8
    """Height and width of the token grid; image_size / stem_factor / grid_size must be a power of 2 (1, 2, 4, ...)."""
    codebook_bits: int = 12
    """Bits per token: LFQ quantises each of this many channels to -1/+1, so the codebook has 2**codebook_bits words."""
    stem_factor: int = 4
    """Pixel-unshuffle factor of the stem: a 64x64x3 frame becomes 16x16x48 before the first conv."""
    channels: int = 128
    """Conv channels at the stem resolution (image_size / stem_factor)."""
    max_channels: int = 128
    """Channels double at each downsampling, up to this many."""
    num_res_blocks: int = 2
    """Residual blocks per resolution level, in the encoder and in the decoder."""
    refine_channels: int = 16
    """Width of a residual 3x3 conv pair at full resolution after the decoder's pixel shuffle (0 disables it).

    It lets neighbouring pixel blocks see each other; about 1% of a CPU step, measured effect
    small (+0.01 SSIM in one 1,200-step run)."""
    norm_groups: int = 32
    """GroupNorm groups (reduced to the greatest common divisor with the channel count for narrow layers)."""

    def __post_init__(self) -> None:
        for name in ("image_size", "grid_size", "codebook_bits", "stem_factor", "channels", "max_channels",
                     "num_res_blocks", "norm_groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TokenizerConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.refine_channels, int) or self.refine_channels < 0:
            raise ValueError(f"TokenizerConfig.refine_channels must be an int >= 0, got {self.refine_channels!r}")
        if not 1 <= self.codebook_bits <= 20:
            raise ValueError(f"TokenizerConfig.codebook_bits must be in 1..20, got {self.codebook_bits}")
        if self.image_size % self.stem_factor != 0:
            raise ValueError(
                f"TokenizerConfig.image_size ({self.image_size}) must be divisible by stem_factor ({self.stem_factor})"
            )
        stem_size = self.image_size // self.stem_factor
        ratio = stem_size // self.grid_size
        if stem_size % self.grid_size != 0 or ratio & (ratio - 1) != 0:
            raise ValueError(
                f"TokenizerConfig: image_size / stem_factor = {stem_size} must be grid_size ({self.grid_size}) "
                "times a power of 2; lower stem_factor for a finer grid"
            )

    @property
    def codebook_size(self) -> int:
        """Number of distinct tokens, 2**codebook_bits."""
        return 2**self.codebook_bits

    @property
    def grid_h(self) -> int:
        """Token rows per frame."""
        return self.grid_size

    @property
    def grid_w(self) -> int:
        """Token columns per frame."""
        return self.grid_size

    @property
    def tokens_per_frame(self) -> int:
        """Tokens in one frame, grid_size**2."""
        return self.grid_size**2

    @property
    def num_downsamples(self) -> int:
        """Stride-2 downsamplings between the stem and the token grid."""
        return (self.image_size // self.stem_factor // self.grid_size).bit_length() - 1

    @property
    def level_channels(self) -> tuple[int, ...]:
        """Channels of each resolution level, from the stem resolution down to the grid."""
        return tuple(min(self.channels * 2**level, self.max_channels) for level in range(self.num_downsamples + 1))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TokenizerConfig:
        """Rebuild from `dataclasses.asdict` output; unknown keys raise a TypeError naming them."""
        return cls(**values)


@dataclass(frozen=True)
class TokenizerTrainConfig(RunOptions):
    """One tokenizer training run: model, optimisation, losses, logging and checkpointing."""

    model: TokenizerConfig = field(default_factory=TokenizerConfig)
    """Tokenizer architecture."""
    steps: int = 2000
    """Total optimizer steps of the run (the cosine schedule ends here)."""
    batch_size: int = 32
    """Dataset items per step (an item holding N frames contributes N frames).

    On a GPU use 128 or more: an H100 step takes 16 ms at 32 and 19 ms at 128."""
    lr: float = 1e-3
    """Peak Adam learning rate (NOTES.md's 1e-3 trained this model size stably)."""
    min_lr_ratio: float = 0.1
    """Final learning rate of the cosine schedule as a fraction of lr."""
    warmup_steps: int = 100
    """Steps of linear learning-rate warm-up from 0."""
    adam_betas: tuple[float, float] = (0.9, 0.99)
    """Adam beta1, beta2."""
    grad_clip_norm: float = 1.0
    """Global gradient-norm clip."""
    l1_weight: float = 1.0
    """Weight of the mean absolute pixel error (pixels in [0, 1])."""
    l2_weight: float = 1.0
    """Weight of the mean squared pixel error (pixels in [0, 1])."""
    perceptual_loss: PerceptualLossKind = "ema-encoder-lpips"
    """Perceptual term: 'ema-encoder-lpips', 'gradient' or 'none' (see TokenizerLoss).

    'ema-encoder-lpips' is the LPIPS formula on a frozen EMA copy of the encoder: +4.3 dB PSNR
    over the others at equal steps (measured), for 1.45x the CPU step time. 'gradient' is L1
    between image gradients, nearly free."""
    perceptual_weight: float = 1.0
    """Weight of the perceptual term."""
    ema_decay: float = 0.999
    """Decay of the EMA encoder used by perceptual_loss='ema-encoder-lpips'."""
    entropy_weight: float = 0.1
    """Weight of LFQ's entropy loss (per-token entropy minus diversity_gamma times batch code entropy)."""
    augment_prob: float = 0.5
    """Probability that a training frame is recoloured (brightness, contrast, channel gain, channel
    permutation; see tokenizer/augment.py), so that unseen colours and lighting encode well."""
    entropy_sample_fraction: float = 0.5
    """Fraction of a batch's tokens (sampled anew each step) on which LFQ computes its entropy loss.

    At 12 bits, batch 32, one CPU thread, the full loss adds 0.43 s to a 0.80 s step and half
    adds 0.13 s; on synthetic frames half used 3,428 codes vs 2,804 for a quarter, equal PSNR."""
    diversity_gamma: float = 1.0
    """Weight of the batch code entropy inside the entropy loss (higher spreads codes more)."""
    commitment_weight: float = 0.25
    """Weight of LFQ's commitment loss (encoder outputs pulled to -1/+1)."""
    seed: int = 0
    """Seed of model initialisation and of the data order."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "ckpt_every", "keep_last"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TokenizerTrainConfig.{name} must be a positive int, got {value!r}")
        if self.warmup_steps < 0 or self.num_workers < 0:
            raise ValueError("TokenizerTrainConfig.warmup_steps and num_workers must be >= 0")
        if self.lr <= 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(
                f"TokenizerTrainConfig: need lr > 0 and 0 <= min_lr_ratio <= 1, got {self.lr}, {self.min_lr_ratio}"
            )
        if self.perceptual_loss not in ("gradient", "ema-encoder-lpips", "none"):
            raise ValueError(
                "TokenizerTrainConfig.perceptual_loss must be 'gradient', 'ema-encoder-lpips' or 'none', "
                f"got {self.perceptual_loss!r}"
            )
        if not 0.0 <= self.augment_prob <= 1.0:
            raise ValueError(f"TokenizerTrainConfig.augment_prob must be in [0, 1], got {self.augment_prob}")
        if not 0.0 < self.entropy_sample_fraction <= 1.0:
            raise ValueError(
                f"TokenizerTrainConfig.entropy_sample_fraction must be in (0, 1], got {self.entropy_sample_fraction}"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TokenizerTrainConfig.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.run_steps is not None and self.run_steps < 1:
            raise ValueError(f"TokenizerTrainConfig.run_steps must be >= 1 or None, got {self.run_steps}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TokenizerTrainConfig:
        """Rebuild from `dataclasses.asdict` output (nested model dict included)."""
        values = dict(values)
        values["model"] = TokenizerConfig.from_dict(values["model"])
        values["adam_betas"] = tuple(values["adam_betas"])
        return cls(**values)



