"""scripts/augment_dataset.py: an augmented copy of a dataset for world-model training."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from roboscape_r.data.format import check_dataset, iter_episode_meta, read_episode, read_manifest
from tests.worldmodel.test_evaluate import write_dataset

REPO = Path(__file__).resolve().parents[1]


def run(*args):
    return subprocess.run([sys.executable, "scripts/augment_dataset.py", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_each_episode_is_recoloured_as_a_whole_and_keeps_everything_else(tmp_path):
    source = write_dataset(tmp_path / "data", [6, 7])
    done = run(source, tmp_path / "out", "--recolour", "--seed", 1)
    assert done.returncode == 0, done.stderr
    assert check_dataset(tmp_path / "out") == []
    before, after = read_manifest(source), read_manifest(tmp_path / "out")
    assert len(list(iter_episode_meta(after))) == len(list(iter_episode_meta(before))) == 10  # 5 scenes x 2
    changed = 0
    for (shard_a, meta_a), (shard_b, meta_b) in zip(iter_episode_meta(before), iter_episode_meta(after)):
        a, b = read_episode(source / shard_a, meta_a["episode_index"]), read_episode(tmp_path / "out" / shard_b,
                                                                                  meta_b["episode_index"])
        for key in ("actions", "success", "instruction", "scene", "task"):
            assert np.array_equal(a[key], b[key]) if isinstance(a[key], np.ndarray) else a[key] == b[key]
        assert a["frames"].shape == b["frames"].shape and b["frames"].dtype == np.uint8
        changed += not np.array_equal(a["frames"], b["frames"])
        # One recolouring for the whole episode: pixels equal in two frames stay equal in the copy.
        still = (a["frames"][0] == a["frames"][-1]).all(axis=-1)
        assert still.any()
        assert (b["frames"][0][still] == b["frames"][-1][still]).all()
    assert changed >= 1


def test_an_existing_output_folder_is_refused(tmp_path):
    source = write_dataset(tmp_path / "data", [6])
    (tmp_path / "out").mkdir()
    done = run(source, tmp_path / "out", "--recolour")
    assert done.returncode != 0 and "exists; pass a new folder" in done.stderr
    done = run(source, tmp_path / "new")
    assert done.returncode != 0 and "nothing to do" in done.stderr


def test_a_shift_moves_the_picture_and_repeats_the_edges():
    import torch

    from roboscape_r.tokenizer.augment import shift_episode

    frames = torch.randint(0, 256, (3, 8, 8, 3), dtype=torch.uint8)
    moved = shift_episode(frames, 2, -1)
    assert moved.shape == frames.shape and moved.dtype == torch.uint8
    assert torch.equal(moved[:, 2:, :7], frames[:, :6, 1:])  # content moved down 2, left 1
    assert torch.equal(moved[:, 0], moved[:, 2]) and torch.equal(moved[:, :, 7], moved[:, :, 6])  # edges repeated
    assert torch.equal(shift_episode(frames, 0, 0), frames)


def test_an_episodes_augmentation_depends_on_its_seed_alone():
    import torch

    from roboscape_r.tokenizer.augment import augment_episode

    frames = torch.randint(0, 256, (4, 8, 8, 3), dtype=torch.uint8)
    first = augment_episode(frames, recolour=True, shift=2, seed=5)
    torch.manual_seed(123)  # the global RNG's state before the call does not matter
    assert torch.equal(augment_episode(frames, recolour=True, shift=2, seed=5), first)
    assert not torch.equal(augment_episode(frames, recolour=True, shift=2, seed=6), first)
    assert torch.equal(augment_episode(frames, recolour=False, shift=0, seed=5), frames)
