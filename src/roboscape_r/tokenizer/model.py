"""The LFQ image tokenizer: conv encoder -> lookup-free quantizer -> conv decoder.

Frames cross the public boundary channel-last, (B, H, W, 3): uint8 in 0..255, or float in
[0, 1] for `decode_float` / `forward`'s reconstruction. Inside, images are channel-first
floats in [-1, 1].
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from vector_quantize_pytorch import LFQ

from roboscape_r.checkpoint import load_checkpoint
from roboscape_r.tokenizer.config import TokenizerConfig

CHECKPOINT_KIND = "tokenizer"


class TokenizerOutput(NamedTuple):
    """What `Tokenizer.forward` returns (the losses are zero-valued tensors in eval mode)."""

    recon: torch.Tensor
    """(B, H, W, 3) float reconstruction in about [0, 1] (not clamped, differentiable)."""
    indices: torch.Tensor
    """(B, h, w) long token ids in [0, codebook_size)."""
    per_sample_entropy: torch.Tensor
    """() mean entropy of each token's soft code assignment (LFQ; low = confident codes)."""
    batch_entropy: torch.Tensor
    """() entropy of the batch-average code distribution (LFQ; high = many codes in use)."""
    commitment: torch.Tensor
    """() mean squared distance of encoder outputs to their -1/+1 codes (LFQ)."""


def _group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv3x3 twice with a skip connection (1x1 conv when channels change)."""

    def __init__(self, in_channels: int, out_channels: int, norm_groups: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            _group_norm(in_channels, norm_groups),
            nn.SiLU(),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            _group_norm(out_channels, norm_groups),
            nn.SiLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.block(x)


class Encoder(nn.Module):
    """(B, 3, H, W) in [-1, 1] -> (B, codebook_bits, grid, grid) pre-quantization features."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        channels = config.level_channels
        # Pixel-unshuffle moves each stem_factor^2 pixel block into channels, so no conv ever
        # runs at full resolution (NOTES.md: 2x faster than full-res convs, and better).
        self.stem = nn.Conv2d(3 * config.stem_factor**2, channels[0], 3, padding=1)
        self.levels = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        for level, width in enumerate(channels):
            self.levels.append(
                nn.Sequential(*[ResBlock(width, width, config.norm_groups) for _ in range(config.num_res_blocks)])
            )
            if level < len(channels) - 1:
                self.downsamples.append(nn.Conv2d(width, channels[level + 1], 3, stride=2, padding=1))
        self.head = nn.Sequential(
            _group_norm(channels[-1], config.norm_groups),
            nn.SiLU(),
            nn.Conv2d(channels[-1], config.codebook_bits, 1),
        )

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Multi-scale feature maps of (B, 3, H, W) images in [-1, 1], shallow to deep.

        Returns the stem output and the output of each resolution level, e.g. for the
        default config [(B, 128, 16, 16), (B, 128, 16, 16), (B, 128, 8, 8)]; the last one
        is what `forward` turns into codes.
        """
        x = F.pixel_unshuffle(images, self.config.stem_factor)  # (B, 3*s*s, H/s, W/s)
        x = self.stem(x)
        maps = [x]
        for level, blocks in enumerate(self.levels):
            if level > 0:
                x = self.downsamples[level - 1](x)
            x = blocks(x)
            maps.append(x)
        return maps

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images)[-1])  # (B, bits, grid, grid)


class Decoder(nn.Module):
    """(B, codebook_bits, grid, grid) codes -> (B, 3, H, W) images in about [-1, 1]."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        channels = config.level_channels[::-1]  # grid resolution first
        self.stem = nn.Conv2d(config.codebook_bits, channels[0], 3, padding=1)
        self.levels = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        for level, width in enumerate(channels):
            self.levels.append(
                nn.Sequential(*[ResBlock(width, width, config.norm_groups) for _ in range(config.num_res_blocks)])
            )
            if level < len(channels) - 1:
                self.upsamples.append(
                    nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                  nn.Conv2d(width, channels[level + 1], 3, padding=1))
                )
        self.head = nn.Sequential(
            _group_norm(channels[-1], config.norm_groups),
            nn.SiLU(),
            nn.Conv2d(channels[-1], 3 * config.stem_factor**2, 3, padding=1),
        )
        if config.refine_channels > 0:
            # Thin on purpose: the only layers at full resolution; they let neighbouring
            # pixel-shuffle blocks see each other, which the 16x16 convs cannot do sub-block.
            self.refine = nn.Sequential(
                nn.Conv2d(3, config.refine_channels, 3, padding=1),
                nn.SiLU(),
                nn.Conv2d(config.refine_channels, 3, 3, padding=1),
            )
            nn.init.zeros_(self.refine[-1].weight)
            nn.init.zeros_(self.refine[-1].bias)
        else:
            self.refine = None

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        x = self.stem(codes)
        for level, blocks in enumerate(self.levels):
            if level > 0:
                x = self.upsamples[level - 1](x)
            x = blocks(x)
        x = F.pixel_shuffle(self.head(x), self.config.stem_factor)  # (B, 3, H, W)
        if self.refine is not None:
            x = x + self.refine(x)
        return x


class Tokenizer(nn.Module):
    """MAGVIT-2-style image tokenizer over uint8 frames (B, H, W, 3).

    `encode` maps frames to a (B, grid, grid) grid of token ids, `decode` maps ids back to
    uint8 frames. LFQ is `vector_quantize_pytorch.LFQ` with no projections: the encoder emits
    exactly codebook_bits channels and each channel's sign is one bit of the token id.
    """

    def __init__(self, config: TokenizerConfig | None = None, *, entropy_sample_fraction: float = 1.0) -> None:
        """Build a randomly initialised tokenizer.

        Args:
            config: architecture (default TokenizerConfig()).
            entropy_sample_fraction: fraction of tokens on which LFQ computes its entropy loss in
                train mode (training speed only; not part of the weights).
        """
        super().__init__()
        self.config = config or TokenizerConfig()
        self.encoder = Encoder(self.config)
        # Unit loss weights: the training loss weighs LFQ's loss breakdown itself.
        self.quantizer = LFQ(
            dim=self.config.codebook_bits,
            codebook_size=self.config.codebook_size,
            entropy_loss_weight=1.0,
            commitment_loss_weight=1.0,
            frac_per_sample_entropy=entropy_sample_fraction,
        )
        self.decoder = Decoder(self.config)

    @property
    def image_size(self) -> int:
        """Height and width of the frames this tokenizer takes."""
        return self.config.image_size

    @property
    def grid_size(self) -> int:
        """Height and width of the token grid of one frame."""
        return self.config.grid_size

    @property
    def codebook_size(self) -> int:
        """Number of distinct token ids."""
        return self.config.codebook_size

    # ----------------------------------------------------------------- checks at the boundary
    def check_frames(self, frames_uint8: torch.Tensor) -> None:
        """Raise TypeError/ValueError unless `frames_uint8` is a uint8 tensor (B, H, W, 3) of this size."""
        size = self.config.image_size
        expected = f"uint8 frames of shape (B, {size}, {size}, 3) (channel-last)"
        if not isinstance(frames_uint8, torch.Tensor):
            raise TypeError(f"expected {expected} as a torch.Tensor, got {type(frames_uint8).__name__}")
        if frames_uint8.dtype != torch.uint8:
            raise ValueError(
                f"expected {expected}, got dtype {frames_uint8.dtype}; convert float images in [0, 1] with "
                "(images * 255).round().to(torch.uint8)"
            )
        shape = tuple(frames_uint8.shape)
        if len(shape) != 4:
            raise ValueError(f"expected {expected}, got shape {shape}; add a batch dimension with frames[None]")
        if shape[-1] != 3:
            hint = "; it looks channel-first: use frames.permute(0, 2, 3, 1)" if shape[1] == 3 else ""
            raise ValueError(f"expected {expected}, got shape {shape}{hint}")
        if shape[1:3] != (size, size):
            raise ValueError(
                f"expected {expected}, got shape {shape}; resize the frames to {size}x{size} or use a "
                "tokenizer built for their size (TokenizerConfig.image_size)"
            )

    def check_indices(self, indices: torch.Tensor) -> None:
        """Raise TypeError/ValueError unless `indices` is an integer (B, grid, grid) tensor in range."""
        grid, size = self.config.grid_size, self.config.codebook_size
        expected = f"integer token ids of shape (B, {grid}, {grid}) in [0, {size})"
        if not isinstance(indices, torch.Tensor):
            raise TypeError(f"expected {expected} as a torch.Tensor, got {type(indices).__name__}")
        if indices.dtype.is_floating_point or indices.dtype.is_complex or indices.dtype == torch.bool:
            raise ValueError(f"expected {expected}, got dtype {indices.dtype}")
        if indices.ndim != 3 or tuple(indices.shape[1:]) != (grid, grid):
            raise ValueError(f"expected {expected}, got shape {tuple(indices.shape)}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= size):
            raise ValueError(
                f"expected {expected}, got values in [{int(indices.min())}, {int(indices.max())}]"
            )

    # ----------------------------------------------------------------- model
    def forward(self, frames_uint8: torch.Tensor) -> TokenizerOutput:
        """Encode, quantize and decode a batch; the training entry point.

        Args:
            frames_uint8: (B, H, W, 3) uint8.

        Returns:
            TokenizerOutput with the float reconstruction, token ids and LFQ's loss terms
            (computed in train mode only).
        """
        self.check_frames(frames_uint8)
        latents = self.encoder(to_model_space(frames_uint8))  # (B, bits, h, w)
        (quantized, indices, _), breakdown = self.quantizer(latents, return_loss_breakdown=True)
        recon = to_frame_space(self.decoder(quantized))  # (B, H, W, 3) in about [0, 1]
        return TokenizerOutput(recon, indices.long(), *breakdown)

    def encode(self, frames_uint8: torch.Tensor, *, inference_mode: bool = False) -> torch.Tensor:
        """Token ids of a batch of frames.

        Args:
            frames_uint8: (B, H, W, 3) uint8.
            inference_mode: run under `torch.inference_mode()` (fastest; the result cannot be
                saved for backward later, e.g. by an nn.Embedding that is being trained);
                otherwise under `torch.no_grad()`.

        Returns:
            (B, grid, grid) long ids in [0, codebook_size).

        Raises:
            TypeError, ValueError: on a non-tensor, a dtype other than uint8, or a shape other
                than (B, image_size, image_size, 3).
        """
        with _no_grad(inference_mode):
            return self.quantizer(self.encode_latents(frames_uint8)).indices.long()

    def encode_latents(self, frames_uint8: torch.Tensor, *, inference_mode: bool = False) -> torch.Tensor:
        """The encoder's latents before quantization: (B, H, W, 3) uint8 -> float (B, codebook_bits, h, w).

        Each token bit is the sign of one latent channel; the magnitude says how firmly the bit is
        set (a latent near zero flips on a change of a few pixel levels).
        """
        self.check_frames(frames_uint8)
        with _no_grad(inference_mode):
            return self.encoder(to_model_space(frames_uint8))

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, codebook_bits, h, w) codes (only their signs count) -> (B, h, w) long token ids."""
        if codes.dim() != 4 or codes.shape[1] != self.config.codebook_bits:
            raise ValueError(f"codes must be (B, {self.config.codebook_bits}, h, w), got {tuple(codes.shape)}")
        signs = torch.where(codes > 0, 1.0, -1.0)
        return self.quantizer(signs).indices.long()  # LFQ's own bit order

    def encode_sequence(self, frames_uint8: torch.Tensor, *, hysteresis: float = 0.0, batch_frames: int = 256,
                        inference_mode: bool = False) -> torch.Tensor:
        """Token ids of frame sequences in time order, optionally with hysteresis against code flicker.

        LFQ takes each bit of a code from the sign of one latent channel, so a latent near zero
        flips its bit on a change of a few pixel levels: with the small preset's tokenizer a quarter
        of the cells of a still region change their token from one frame to the next, and the world
        model has to learn that noise. With `hysteresis` h > 0, a bit whose latent lies within h of
        zero keeps its value from the previous frame of the sequence; a latent that moves further
        sets it anew. The first frame of each sequence is encoded as by `encode`, and h = 0 gives
        exactly `encode`'s tokens. (Measured on 28 held-out episodes: h = 0.2 halves the share of
        still cells that change their token, 25.7% -> 12.8%, for -0.02 dB of reconstruction PSNR.)

        Args:
            frames_uint8: uint8 (T, H, W, 3) or (B, T, H, W, 3), consecutive frames along T.
            hysteresis: half-width of the dead zone around zero (>= 0), in latent units (the
                codes are -1 / +1).
            batch_frames: frames per encoder call (bounds memory on long episodes).
            inference_mode: as in `encode`.

        Returns:
            long (T, h, w) or (B, T, h, w) ids in [0, codebook_size).

        Raises:
            TypeError, ValueError: bad frames (as in `encode`), a shape with neither 4 nor 5
                dimensions, a negative or non-finite `hysteresis`, or `batch_frames` < 1.
        """
        if not isinstance(frames_uint8, torch.Tensor) or frames_uint8.dim() not in (4, 5):
            shape = tuple(frames_uint8.shape) if isinstance(frames_uint8, torch.Tensor) else type(frames_uint8).__name__
            raise ValueError(f"encode_sequence takes uint8 frames (T, H, W, 3) or (B, T, H, W, 3), got {shape}")
        if not math.isfinite(hysteresis) or hysteresis < 0:
            raise ValueError(f"hysteresis must be a finite number >= 0, got {hysteresis!r}")
        if batch_frames < 1:
            raise ValueError(f"batch_frames must be >= 1, got {batch_frames}")
        flat = frames_uint8.reshape(-1, *frames_uint8.shape[-3:])  # (B*T, H, W, 3)
        self.check_frames(flat)
        if hysteresis == 0:
            tokens = torch.cat([self.encode(chunk, inference_mode=inference_mode) for chunk in flat.split(batch_frames)])
            return tokens.view(*frames_uint8.shape[:-3], *tokens.shape[1:])
        with _no_grad(inference_mode):
            latents = torch.cat([self.encode_latents(chunk) for chunk in flat.split(batch_frames)])
            latents = latents.view(-1, frames_uint8.shape[-4], *latents.shape[1:])  # (B, T, bits, h, w)
            bits = latents[:, 0] > 0
            kept = [bits]
            for t in range(1, latents.shape[1]):
                bits = torch.where(latents[:, t].abs() >= hysteresis, latents[:, t] > 0, bits)
                kept.append(bits)
            codes = torch.stack(kept, dim=1).flatten(0, 1).float() * 2 - 1  # (B*T, bits, h, w) in {-1, +1}
            tokens = self.codes_to_indices(codes)
            return tokens.view(*frames_uint8.shape[:-3], *tokens.shape[1:])

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, h, w) token ids -> (B, codebook_bits, h, w) float codes in {-1, +1} (the decoder's input)."""
        self.check_indices(indices)
        return self.quantizer.indices_to_codes(indices.long())

    def decode_float(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, h, w) token ids -> (B, H, W, 3) float frames in [0, 1] (clamped; differentiable
        with respect to the decoder's weights)."""
        codes = self.indices_to_codes(indices)
        return to_frame_space(self.decoder(codes)).clamp(0.0, 1.0)

    def decode(self, indices: torch.Tensor, *, inference_mode: bool = False) -> torch.Tensor:
        """(B, h, w) token ids -> (B, H, W, 3) uint8 frames.

        Args:
            indices: integer ids in [0, codebook_size).
            inference_mode: run under `torch.inference_mode()` instead of `torch.no_grad()`.

        Raises:
            TypeError, ValueError: on a non-integer dtype, a wrong shape or an id out of range.
        """
        with _no_grad(inference_mode):
            return (self.decode_float(indices) * 255.0).round().to(torch.uint8)



def to_model_space(frames: torch.Tensor) -> torch.Tensor:
    """Channel-last frames (B, H, W, 3), uint8 in 0..255 or float in [0, 1] -> (B, 3, H, W) float
    in [-1, 1], the input format of `Encoder` and `Encoder.features`."""
    images = rearrange(frames, "b h w c -> b c h w")
    if images.dtype == torch.uint8:
        return images.float() / 127.5 - 1.0
    return images * 2.0 - 1.0


def to_frame_space(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) images in [-1, 1] -> channel-last float frames (B, H, W, 3) in [0, 1] (not clamped)."""
    return rearrange(images.float() * 0.5 + 0.5, "b c h w -> b h w c")


def to_uint8_frames(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) images in about [-1, 1] -> channel-last uint8 frames (B, H, W, 3), clamped and rounded."""
    return (to_frame_space(images).clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def _no_grad(inference_mode: bool) -> contextlib.AbstractContextManager:
    return torch.inference_mode() if inference_mode else torch.no_grad()


def load_tokenizer(path: str | Path, *, map_location: str | torch.device = "cpu") -> Tokenizer:
    """Rebuild a trained tokenizer from a checkpoint alone.

    Args:
        path: a tokenizer checkpoint file or a run folder (its newest checkpoint is used).
        map_location: device for the weights.

    Returns:
        The Tokenizer in eval mode, on `map_location`.

    Raises:
        roboscape_r.checkpoint.CheckpointError: missing/corrupt file or not a tokenizer checkpoint.
    """
    ckpt = load_checkpoint(path, expected_kind=CHECKPOINT_KIND, map_location=map_location)
    config = ckpt["config"]
    model = Tokenizer(TokenizerConfig.from_dict(config["model"] if "model" in config else config))
    model.load_state_dict(ckpt["model"])
    return model.to(map_location).eval()
