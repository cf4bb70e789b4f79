"""Shared helpers of the reward tests: a dataset whose dense reward is a function of the frame,
tiny models, and their checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from roboscape_r.atomic import atomic_write_json
from roboscape_r.checkpoint import save_checkpoint
from roboscape_r.data.format import new_manifest, write_shard
from roboscape_r.tokenizer import Tokenizer, TokenizerConfig

from tests.conftest import make_episode

SIZE = 16
SQUARE = 4
TRAVEL = SIZE - SQUARE  # pixels the square can move


def square_episode(index: int, length: int, *, task: str = "PickCube", scene: str = "id-default-wood",
                   successful: bool = True, source: str | None = None, look: int | None = None) -> dict:
    """A square slides right over a dark background: to the far edge when successful (success at
    the last step), only halfway otherwise. rewards[t] = x of the square in frame t+1 / TRAVEL,
    so the dense reward is a function of the frame, as ManiSkill's is of the state. The background
    colour is seeded by `look` (default: the index)."""
    episode = make_episode(index, length, SIZE, task=task, scene=scene,
                           source=source or ("expert" if successful else "random"))
    rng = np.random.default_rng(index if look is None else look)
    background = rng.integers(10, 50, size=3).astype(np.uint8)
    colour = (230, 200, 40) if task == "PickCube" else (40, 200, 230)
    goal = TRAVEL if successful else TRAVEL // 2
    positions = np.round(np.linspace(0, goal, length + 1)).astype(int)  # x of the square in frame t
    frames = np.empty((length + 1, SIZE, SIZE, 3), np.uint8)
    frames[:] = background
    for t, x in enumerate(positions):
        frames[t, 6:6 + SQUARE, x:x + SQUARE] = colour
    success = np.zeros(length, bool)
    success[-1] = successful
    episode.update(frames=frames, rewards=(positions[1:] / TRAVEL).astype(np.float32), success=success,
                   terminated=success.copy(), truncated=~success & (np.arange(length) == length - 1),
                   actions=rng.uniform(-1, 1, size=(length, 7)).astype(np.float32))
    return episode


def write_square_dataset(root: Path, plan: list[tuple], per_shard: int = 4) -> Path:
    """Write episodes (task, scene, successful, length[, look]) with the real format code."""
    root.mkdir(parents=True, exist_ok=True)
    manifest = new_manifest({"image_size": SIZE, "seed": 0})
    episodes = [square_episode(i, item[3], task=item[0], scene=item[1], successful=item[2],
                               look=item[4] if len(item) > 4 else None) for i, item in enumerate(plan)]
    for k in range(0, len(episodes), per_shard):
        name = f"shard_{k // per_shard:05d}.h5"
        manifest["shards"][name] = write_shard(root / name, episodes[k:k + per_shard])
    atomic_write_json(root / "manifest.json", manifest)
    return root


def training_plan(repeats: int = 3) -> list[tuple[str, str, bool, int]]:
    """In-domain episodes of two tasks, successful and failed, of a few lengths."""
    plan = []
    for r in range(repeats):
        for task in ("PickCube", "PushCube"):
            plan += [(task, "id-default-wood", True, 8 + r), (task, "id-cyan-slate", False, 9 + r)]
    return plan


def tiny_tokenizer(seed: int = 0) -> Tokenizer:
    torch.manual_seed(seed)
    config = TokenizerConfig(image_size=SIZE, grid_size=4, stem_factor=2, channels=8, max_channels=8,
                             codebook_bits=4, num_res_blocks=1, refine_channels=0, norm_groups=4)
    return Tokenizer(config).eval()


def save_tokenizer(path: Path, tokenizer: Tokenizer) -> Path:
    return save_checkpoint(path, kind="tokenizer", config=dataclasses.asdict(tokenizer.config),
                           model_state=tokenizer.state_dict(), step=0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors: extra threads only add synchronisation cost on a shared 2-core machine.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def train_dataset(tmp_path_factory) -> Path:
    return write_square_dataset(tmp_path_factory.mktemp("reward_train") / "train", training_plan())
