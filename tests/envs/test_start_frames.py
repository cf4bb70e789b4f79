"""Tests of roboscape_r/envs/start_frames.py and envs/golden_cache.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from roboscape_r.data.format import DatasetError
from roboscape_r.envs.golden_cache import GoldenCache
from roboscape_r.envs.start_frames import load_start_frames
from tests.conftest import write_fake_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    # 7 episodes alternating PickCube (0, 2, 4, 6) and PushCube (1, 3, 5); frame[..., 0] = episode index
    return write_fake_dataset(tmp_path_factory.mktemp("starts") / "ds", [3, 4, 3, 5, 2, 3, 4])


def test_reads_first_frames_sorted_by_task(dataset):
    starts = load_start_frames(dataset, ["PushCube", "PickCube"], ["in-domain"])
    assert len(starts) == 7 and starts.image_size == (16, 16)
    assert starts.tasks == ("PushCube",) * 3 + ("PickCube",) * 4
    assert starts.episode_indices == (1, 3, 5, 0, 2, 4, 6)
    assert starts.frames.dtype == torch.uint8
    assert starts.frames[:, 0, 0, 0].tolist() == [1, 3, 5, 0, 2, 4, 6]  # red channel = episode index
    assert (starts.frames[..., 1] == 0).all()  # green channel = step index: every frame is step 0
    assert starts.instructions[0] == "do PushCube number 1"
    assert starts.summary() == {"PickCube/id-default-wood": 4, "PushCube/id-default-wood": 3}


def test_sampling_is_task_balanced_and_seeded(dataset):
    starts = load_start_frames(dataset, ["PickCube", "PushCube"], ["id-default-wood"])
    draws = starts.sample(20_000, np.random.default_rng(0))
    tasks = np.array(starts.tasks)[draws]
    assert abs((tasks == "PushCube").mean() - 0.5) < 0.02  # 3 of 7 episodes, yet half the draws
    assert set(draws.tolist()) == set(range(7))
    np.testing.assert_array_equal(starts.sample(5, np.random.default_rng(1)), starts.sample(5, np.random.default_rng(1)))
    with pytest.raises(ValueError, match="count"):
        starts.sample(0, np.random.default_rng(0))


def test_missing_task_scene_or_dataset(dataset, tmp_path):
    with pytest.raises(ValueError, match=r"no episodes of task\(s\) \['PickCube', 'PushCube'\] in scenes"):
        load_start_frames(dataset, ["PickCube", "PushCube"], ["ood"])
    with pytest.raises(ValueError, match="unknown task"):
        load_start_frames(dataset, ["Juggle"], ["in-domain"])
    with pytest.raises(ValueError, match="unknown scene"):
        load_start_frames(dataset, ["PickCube"], ["moon"])
    with pytest.raises(DatasetError, match="manifest.json not found"):
        load_start_frames(tmp_path, ["PickCube"], ["in-domain"])


def test_golden_cache_lru_and_byte_bound():
    frames = {k: torch.full((2, 4, 4, 3), k, dtype=torch.uint8) for k in range(4)}  # 96 bytes each
    cache = GoldenCache(max_bytes=200)
    cache.put(0, frames[0])
    cache.put(1, frames[1])
    assert cache.get(0) is not None  # 0 is now the most recently used
    cache.put(2, frames[2])  # evicts 1
    assert 1 not in cache and 0 in cache and 2 in cache and cache.bytes == 192
    assert cache.get(1) is None and (cache.hits, cache.misses) == (1, 1)
    cache.put(3, torch.zeros(100, 100, dtype=torch.uint8))  # larger than the bound: not stored
    assert 3 not in cache and len(cache) == 2


def test_golden_cache_stores_copies():
    batch = torch.zeros(8, 2, 4, 4, 3, dtype=torch.uint8)
    cache = GoldenCache(max_bytes=1000)
    cache.put("a", batch[0])
    batch.fill_(7)
    assert int(cache.get("a").max()) == 0
    assert cache.get("a").untyped_storage().nbytes() == 96  # not a view that keeps the batch alive
    with pytest.raises(ValueError, match="max_bytes"):
        GoldenCache(-1)
    assert GoldenCache(0).put("x", batch[0]) is None and len(GoldenCache(0)) == 0
