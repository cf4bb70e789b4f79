"""Policy-protocol test doubles for evaluation tests (importable by spawned worker processes)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from roboscape_r.worldmodel.text_encoder import TextEncoder


class FrameHashPolicy:
    """Deterministic pseudo-random actions: each row is seeded by a hash of its frame and instruction,
    so the actions depend only on what the policy sees (not on batch composition or call order)."""

    action_dim = 7

    def __init__(self, image_size: int = 64, scale: float = 1.0) -> None:
        self.image_size = image_size
        self.scale = scale
        self.calls = 0

    def act(self, frames_uint8, instructions: Sequence[str]) -> np.ndarray:
        self.calls += 1
        frames = np.asarray(frames_uint8)
        assert frames.dtype == np.uint8 and frames.shape[1:] == (self.image_size, self.image_size, 3), frames.shape
        assert len(instructions) == len(frames)
        rows = []
        for frame, text in zip(frames, instructions):
            digest = hashlib.sha256(frame.tobytes() + text.encode()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            rows.append(rng.uniform(-self.scale, self.scale, self.action_dim))
        return np.asarray(rows, np.float32)


class WrongShapePolicy(FrameHashPolicy):
    """Returns six action components instead of seven."""

    def act(self, frames_uint8, instructions):
        return super().act(frames_uint8, instructions)[:, :6]


class NaNAfterPolicy(FrameHashPolicy):
    """Returns NaN actions from its ``nan_call``-th call on."""

    def __init__(self, nan_call: int = 2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.nan_call = nan_call

    def act(self, frames_uint8, instructions):
        actions = super().act(frames_uint8, instructions)
        if self.calls >= self.nan_call:
            actions[0, 3] = np.nan
        return actions


class HashTextEncoder(TextEncoder):
    """Stands in for MiniLM: a fixed pseudo-random unit vector per string."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.dim = dim

    def _encode_uncached(self, instructions: list[str]) -> torch.Tensor:
        rows = [torch.randn(self.dim, generator=torch.Generator().manual_seed(
            int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little"))) for t in instructions]
        return torch.nn.functional.normalize(torch.stack(rows), dim=1)
