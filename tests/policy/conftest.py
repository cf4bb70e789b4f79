"""Shared helpers of the policy tests: a tiny policy config, a hashing text encoder, one thread."""

from __future__ import annotations

import hashlib

import pytest
import torch

from roboscape_r.policy.config import PPOConfig
from roboscape_r.policy.network import PolicyConfig
from roboscape_r.worldmodel.text_encoder import TextEncoder


class HashTextEncoder(TextEncoder):
    """Stand-in for MiniLM: a fixed pseudo-random unit vector per string; records what it encodes."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.dim = dim
        self.encoded: list[str] = []

    def _encode_uncached(self, instructions: list[str]) -> torch.Tensor:
        self.encoded.extend(instructions)
        rows = []
        for text in instructions:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            row = torch.randn(self.dim, generator=torch.Generator().manual_seed(seed))
            rows.append(row / row.norm())
        return torch.stack(rows)


def tiny_policy_config(**overrides) -> PolicyConfig:
    """A policy for 16x16 frames and 8-d instructions (the point env and the fake dataset)."""
    values = dict(image_size=16, instruction_dim=8, cnn_channels=(8, 16), cnn_kernels=(4, 3), cnn_strides=(2, 1),
                  image_feature_dim=32, instruction_hidden_dim=16, hidden_dim=64)
    values.update(overrides)
    return PolicyConfig(**values)


def tiny_ppo_config(**overrides) -> PPOConfig:
    values = dict(total_timesteps=4 * 4 * 8, num_steps=8, update_epochs=2, num_minibatches=2, learning_rate=1e-3,
                  gamma=0.9, gae_lambda=0.9, device="cpu", progress=False, ckpt_every=1, keep_last=10)
    values.update(overrides)
    return PPOConfig(**values)


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny tensors: extra threads only add synchronisation cost on a shared 2-core machine.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def hash_encoder() -> HashTextEncoder:
    return HashTextEncoder()
