"""Shared helpers of the world-model tests: a tiny config and a fake, exactly invertible tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from roboscape_r.worldmodel.config import WorldModelConfig


class FakeTokenizer:
    """Average-pool each patch's grey level and quantise it to `codebook_size` levels.

    decode paints each patch with its level's grey, so encode(decode(tokens)) == tokens.
    """

    def __init__(self, image_size: int = 16, grid_size: int = 4, codebook_size: int = 16) -> None:
        self.image_size = image_size
        self.grid_size = grid_size
        self.codebook_size = codebook_size
        self.patch = image_size // grid_size

    def encode(self, frames_uint8: torch.Tensor) -> torch.Tensor:
        B, H, W, C = frames_uint8.shape
        grey = frames_uint8.float().mean(dim=-1)  # (B, H, W)
        pooled = torch.nn.functional.avg_pool2d(grey[:, None], self.patch)[:, 0]  # (B, h, w)
        return (pooled * self.codebook_size / 256.0).floor().clamp(0, self.codebook_size - 1).long()

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        grey = ((indices.float() + 0.5) * 256.0 / self.codebook_size).round().to(torch.uint8)  # (B, h, w)
        frames = grey.repeat_interleave(self.patch, dim=1).repeat_interleave(self.patch, dim=2)
        return frames[..., None].expand(*frames.shape, 3).contiguous()  # (B, H, W, 3)


def tiny_config(cond: str = "act", **overrides) -> WorldModelConfig:
    values = dict(
        grid_h=4, grid_w=4, codebook_size=16, d_model=32, n_layers=2, n_heads=2,
        context_frames=4, action_dim=3, cond=cond, text_dim=8, dropout=0.0,
    )
    values.update(overrides)
    return WorldModelConfig(**values)


def random_frames(batch: int, image_size: int = 16, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, size=(batch, image_size, image_size, 3), dtype=np.uint8))


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def fake_tokenizer() -> FakeTokenizer:
    return FakeTokenizer()
