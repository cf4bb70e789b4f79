"""A decoder that renders a frame's tokens on top of a real context frame (iVideoGPT-style).

The plain decoder renders every predicted frame from its 64 tokens alone, so the whole frame,
still background included, is only as sharp as the tokenizer's reconstruction (about 23 dB on
the small preset), while copying the last real frame is exact wherever nothing moved. iVideoGPT
conditions the decoding of future frames on the context frame's features for this reason.

`ContextDecoder` takes the target frame's token codes, the context frame's token codes and the
real context frame, and predicts the target frame as the context frame plus a learned change:

    frame_t = context_frame + delta(codes_t, codes_context, context_frame)

Its last layer starts at zero, so an untrained ContextDecoder is exactly copy-the-context-frame;
training teaches it to draw what the tokens say has changed and to leave the rest. The tokens
still carry all of the world model's prediction; the context frame only supplies detail.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from roboscape_r.checkpoint import load_checkpoint
from roboscape_r.tokenizer.config import TokenizerConfig
from roboscape_r.tokenizer.model import ResBlock, _group_norm, to_model_space, to_uint8_frames

CHECKPOINT_KIND = "context_decoder"


@dataclass(frozen=True)
class ContextDecoderConfig:
    """Architecture of the context decoder; the token grid and image size come from the tokenizer."""

    channels: int = 64
    """Conv channels at both internal resolutions (grid and image_size / stem_factor)."""
    num_res_blocks: int = 2
    """Residual blocks per resolution."""
    norm_groups: int = 16
    """GroupNorm groups (reduced to the greatest common divisor with the channel count)."""
    dead_zone: float = 0.0
    """Changes smaller than this many uint8 levels are not drawn by `decode`: that pixel channel keeps
    the context frame's value exactly. A still scene is then copied exactly, where copy-the-last-frame
    scores its PSNR cap, rather than redrawn with changes of a level or two. Training ignores it
    (a zero-initialised head would pass no gradient through it); the fit chooses it on validation
    windows."""

    def __post_init__(self) -> None:
        for name in ("channels", "num_res_blocks", "norm_groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ContextDecoderConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.dead_zone, (int, float)) or not 0 <= self.dead_zone < 256:
            raise ValueError(f"ContextDecoderConfig.dead_zone must be a number of uint8 levels in [0, 256), "
                             f"got {self.dead_zone!r}")

    @classmethod
    def from_dict(cls, values: dict) -> "ContextDecoderConfig":
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown ContextDecoderConfig fields {sorted(unknown)}")
        return cls(**values)


class ContextDecoder(nn.Module):
    """(codes_t, codes_context, context frame) -> frame t, as the context frame plus a change."""

    def __init__(self, tokenizer_config: TokenizerConfig, config: ContextDecoderConfig | None = None) -> None:
        super().__init__()
        self.tokenizer_config = tokenizer_config
        self.config = config or ContextDecoderConfig()
        width, groups = self.config.channels, self.config.norm_groups
        stem = tokenizer_config.stem_factor
        self.scale = tokenizer_config.image_size // stem // tokenizer_config.grid_size  # stem grid / token grid
        blocks = lambda: nn.Sequential(*[ResBlock(width, width, groups) for _ in range(self.config.num_res_blocks)])
        # Context pixels at the stem resolution (pixel-unshuffled, as in the tokenizer's encoder).
        self.context_stem = nn.Conv2d(3 * stem**2, width, 3, padding=1)
        self.context_blocks = blocks()
        # Both frames' codes at the token grid: their difference tells where something changed.
        self.codes_in = nn.Conv2d(2 * tokenizer_config.codebook_bits, width, 3, padding=1)
        self.grid_blocks = blocks()
        self.fuse = nn.Conv2d(2 * width, width, 3, padding=1)
        self.fine_blocks = blocks()
        self.head = nn.Sequential(_group_norm(width, groups), nn.SiLU(), nn.Conv2d(width, 3 * stem**2, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, codes: torch.Tensor, context_codes: torch.Tensor, context_frames: torch.Tensor) -> torch.Tensor:
        """Predicted frames in model space.

        Args:
            codes: (B, bits, h, w) codes of the frames to draw (Tokenizer.indices_to_codes).
            context_codes: (B, bits, h, w) codes of the context frames.
            context_frames: (B, 3, H, W) real context frames in [-1, 1].

        Returns:
            (B, 3, H, W) frames in about [-1, 1] (not clamped).
        """
        stem = self.tokenizer_config.stem_factor
        fine = self.context_blocks(self.context_stem(F.pixel_unshuffle(context_frames, stem)))  # (B, C, H/s, W/s)
        coarse = self.grid_blocks(self.codes_in(torch.cat([codes, codes - context_codes], dim=1)))  # (B, C, h, w)
        coarse = F.interpolate(coarse, scale_factor=self.scale, mode="nearest")  # (B, C, H/s, W/s)
        x = self.fine_blocks(self.fuse(torch.cat([fine, coarse], dim=1)))
        return context_frames + F.pixel_shuffle(self.head(x), stem)  # (B, 3, H, W)

    @torch.no_grad()
    def decode(self, tokenizer, indices: torch.Tensor, context_indices: torch.Tensor,
               context_frames_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 frames (B, H, W, 3) for token ids (B, h, w), drawn on real context frames.

        Args:
            tokenizer: the Tokenizer whose codes these are (it must match tokenizer_config).
            indices: long (B, h, w) ids of the frames to draw.
            context_indices: long (B, h, w) ids of the context frames (tokenizer.encode of them).
            context_frames_uint8: uint8 (B, H, W, 3) real context frames.

        Raises:
            ValueError: batch sizes differ, or the tokenizer is not the one this decoder was fitted to.
        """
        if tokenizer.config != self.tokenizer_config:
            raise ValueError("this ContextDecoder was fitted to a tokenizer with another config; "
                             "fit one to this tokenizer (roboscape train-context-decoder)")
        tokenizer.check_frames(context_frames_uint8)
        if not len(indices) == len(context_indices) == len(context_frames_uint8):
            raise ValueError(f"batch sizes differ: {len(indices)} token grids, {len(context_indices)} context "
                             f"grids, {len(context_frames_uint8)} context frames")
        context = to_model_space(context_frames_uint8)
        images = self(tokenizer.indices_to_codes(indices), tokenizer.indices_to_codes(context_indices), context)
        if self.config.dead_zone > 0:
            change = images - context
            levels = change.abs() * (255 / 2)  # model space spans 2 over 255 levels
            images = torch.where(levels < self.config.dead_zone, context, images)
        return to_uint8_frames(images)

    def checkpoint_config(self) -> dict:
        return {"tokenizer": asdict(self.tokenizer_config), "model": asdict(self.config)}


def load_context_decoder(path: str | Path, *, map_location: str | torch.device = "cpu") -> ContextDecoder:
    """Rebuild a ContextDecoder from its checkpoint (checks kind and format).

    Raises:
        roboscape_r.checkpoint.CheckpointError: missing/corrupt file or another kind of checkpoint.
    """
    ckpt = load_checkpoint(path, expected_kind=CHECKPOINT_KIND, map_location=map_location)
    model = ContextDecoder(TokenizerConfig.from_dict(ckpt["config"]["tokenizer"]),
                           ContextDecoderConfig.from_dict(ckpt["config"]["model"]))
    model.load_state_dict(ckpt["model"])
    return model.to(map_location).eval()
