"""Frame preprocessing of the policy: identity, or a round trip through the image tokenizer.

A policy trained inside the world model only ever sees decoded frames (blurred, quantised);
evaluated in ManiSkill it would see sharp rendered frames it never trained on. Round-tripping
every frame through the same tokenizer (`decode(encode(frame))`) before the network makes both
look alike. The tokenizer is a frozen submodule, so its weights travel inside the policy
checkpoint and the policy loads from that file alone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from roboscape_r.tokenizer.config import TokenizerConfig
from roboscape_r.tokenizer.model import Tokenizer, load_tokenizer


class FramePreprocessor(nn.Module):
    """uint8 frames (B, H, W, 3) -> uint8 frames of the same shape, without gradients.

    With `tokenizer=None` it is the identity. Otherwise frames go through `tokenizer.encode`
    and `tokenizer.decode` in chunks of `chunk_size` (bounds memory when BC prepares a whole
    dataset at once).
    """

    def __init__(self, tokenizer: Tokenizer | None, chunk_size: int = 256) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.tokenizer = tokenizer
        self.chunk_size = chunk_size
        if tokenizer is not None:
            tokenizer.requires_grad_(False)
            tokenizer.eval()

    def train(self, mode: bool = True) -> FramePreprocessor:
        # The tokenizer stays in eval mode: in train mode LFQ computes entropy losses (slower)
        # and the round trip must be the same function during training and evaluation.
        super().train(mode)
        if self.tokenizer is not None:
            self.tokenizer.eval()
        return self

    def forward(self, frames_uint8: torch.Tensor) -> torch.Tensor:
        """Round-trip `frames_uint8` (B, H, W, 3) uint8 through the tokenizer (or return it unchanged)."""
        if self.tokenizer is None:
            return frames_uint8
        if frames_uint8.shape[0] == 0:
            return frames_uint8
        with torch.no_grad():
            chunks = [
                self.tokenizer.decode(self.tokenizer.encode(chunk))
                for chunk in frames_uint8.split(self.chunk_size)
            ]
        return torch.cat(chunks)

    def tokenizer_config(self) -> dict[str, Any] | None:
        """The tokenizer's architecture as a plain dict (None for the identity), stored in policy checkpoints."""
        return None if self.tokenizer is None else dataclasses.asdict(self.tokenizer.config)


def preprocessor_from_path(tokenizer_path: str | Path | None, image_size: int) -> FramePreprocessor:
    """Load the tokenizer checkpoint at `tokenizer_path` (None: identity) for frames of `image_size`.

    Raises:
        roboscape_r.checkpoint.CheckpointError: missing or corrupt file, or not a tokenizer.
        ValueError: the tokenizer takes frames of another size.
    """
    if tokenizer_path is None:
        return FramePreprocessor(None)
    tokenizer = load_tokenizer(tokenizer_path)
    _check_size(tokenizer, image_size, f"tokenizer {tokenizer_path}")
    return FramePreprocessor(tokenizer)


def preprocessor_from_config(tokenizer_config: dict[str, Any] | None, image_size: int) -> FramePreprocessor:
    """An untrained preprocessor of the stored architecture (None: identity); the caller loads
    the weights with the rest of the policy's state dict."""
    if tokenizer_config is None:
        return FramePreprocessor(None)
    tokenizer = Tokenizer(TokenizerConfig.from_dict(tokenizer_config))
    _check_size(tokenizer, image_size, "the stored tokenizer")
    return FramePreprocessor(tokenizer)


def _check_size(tokenizer: Tokenizer, image_size: int, what: str) -> None:
    if tokenizer.image_size != image_size:
        raise ValueError(
            f"{what} takes {tokenizer.image_size}x{tokenizer.image_size} frames but PolicyConfig.image_size is "
            f"{image_size}; use a tokenizer trained on frames of the policy's size"
        )
