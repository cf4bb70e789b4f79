"""scripts/recolour_dataset.py: a recoloured copy of a dataset for world-model training."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from roboscape_r.data.format import check_dataset, iter_episode_meta, read_episode, read_manifest
from tests.worldmodel.test_evaluate import write_dataset

REPO = Path(__file__).resolve().parents[1]


def run(*args):
    return subprocess.run([sys.executable, "scripts/recolour_dataset.py", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_each_episode_is_recoloured_as_a_whole_and_keeps_everything_else(tmp_path):
    source = write_dataset(tmp_path / "data", [6, 7])
    done = run(source, tmp_path / "out", "--seed", 1)
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
    done = run(source, tmp_path / "out")
    assert done.returncode != 0 and "exists; pass a new folder" in done.stderr
