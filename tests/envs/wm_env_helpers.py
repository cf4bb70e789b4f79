"""Tiny checkpoints, a fake dataset and a stand-in text encoder for the world-model env tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from roboscape_r.checkpoint import save_checkpoint
from roboscape_r.tokenizer.config import TokenizerConfig
from roboscape_r.tokenizer.model import Tokenizer
from roboscape_r.worldmodel.config import WorldModelConfig
from roboscape_r.worldmodel.text_encoder import PrecomputedTextEncoder
from roboscape_r.worldmodel.world_model import WorldModel
from tests.conftest import write_fake_dataset

IMAGE_SIZE = 64  # stable-baselines3's NatureCNN needs at least 36x36 frames
TEXT_DIM = 384
EPISODE_LENGTHS = [5, 6, 4, 7, 5, 6]  # episodes alternate PickCube / PushCube


def tiny_tokenizer_config(**overrides) -> TokenizerConfig:
    values = dict(image_size=IMAGE_SIZE, grid_size=4, codebook_bits=4, stem_factor=4, channels=8, max_channels=16,
                  num_res_blocks=1, refine_channels=0, norm_groups=4)
    values.update(overrides)
    return TokenizerConfig(**values)


def tiny_wm_config(cond: str, **overrides) -> WorldModelConfig:
    values = dict(grid_h=4, grid_w=4, codebook_size=16, d_model=32, n_layers=1, n_heads=2, context_frames=4,
                  action_dim=7, cond=cond, text_dim=TEXT_DIM)
    values.update(overrides)
    return WorldModelConfig(**values)


def save_tokenizer(path: Path, seed: int = 0, **overrides) -> Path:
    torch.manual_seed(seed)
    config = tiny_tokenizer_config(**overrides)
    return save_checkpoint(path, kind="tokenizer", config={"model": dataclasses.asdict(config)},
                           model_state=Tokenizer(config).state_dict(), step=0)


def save_world_model(path: Path, cond: str, seed: int = 0, **overrides) -> Path:
    torch.manual_seed(seed)
    config = tiny_wm_config(cond, **overrides)
    return save_checkpoint(path, kind=config.kind, config={"model": config.to_dict()},
                           model_state=WorldModel(config).state_dict(), step=0)


def instruction_table(lengths: list[int] = EPISODE_LENGTHS) -> dict[str, list[float]]:
    """Random 384-d embeddings of the fake dataset's instructions (see tests.conftest.make_episode)."""
    rng = np.random.default_rng(0)
    tasks = ["PickCube", "PushCube"]
    return {f"do {tasks[i % 2]} number {i}": rng.standard_normal(TEXT_DIM).tolist() for i in range(len(lengths))}


def make_assets(root: Path) -> dict:
    """Write a fake dataset and tiny checkpoints under `root`; return env kwargs using them."""
    dataset = write_fake_dataset(root / "ds", EPISODE_LENGTHS, size=IMAGE_SIZE)
    return dict(
        tokenizer_path=save_tokenizer(root / "tokenizer.pt"),
        wm_act_path=save_world_model(root / "wm_act.pt", "act", seed=1),
        wm_txt_path=save_world_model(root / "wm_txt.pt", "txt", seed=2),
        dataset=dataset,
        tasks=("PickCube", "PushCube"),
        max_steps_per_episode=6,
        golden_length=4,
    )


def text_encoder() -> PrecomputedTextEncoder:
    return PrecomputedTextEncoder(instruction_table())
