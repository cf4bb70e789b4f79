import json

import numpy as np
import pytest

from roboscape_r.data.format import (
    MANIFEST_NAME, DatasetError, check_dataset, read_episode, read_manifest, validate_episode, write_shard,
)
from tests.conftest import make_episode


def test_shard_round_trip(tmp_path):
    episodes = [make_episode(0, 5), make_episode(1, 7)]
    entry = write_shard(tmp_path / "s.h5", episodes)
    assert [m["episode_index"] for m in entry["episodes"]] == [0, 1]
    assert entry["episodes"][0]["success_at_end"] is True and entry["episodes"][1]["success_once"] is False
    for original in episodes:
        back = read_episode(tmp_path / "s.h5", original["episode_index"])
        np.testing.assert_array_equal(back["frames"], original["frames"])
        np.testing.assert_array_equal(back["actions"], original["actions"])
        np.testing.assert_array_equal(back["success"], original["success"])
        assert back["instruction"] == original["instruction"] and back["task"] == original["task"]
    assert not list(tmp_path.glob(".*.tmp")), "temp files must not be left behind"


def test_write_shard_rejects_bad_episodes(tmp_path):
    bad = make_episode(0, 5)
    bad["actions"] = bad["actions"][:3]
    with pytest.raises(DatasetError, match="actions must have 5 entries"):
        write_shard(tmp_path / "s.h5", [bad])
    nan = make_episode(0, 5)
    nan["actions"][2, 0] = np.nan
    with pytest.raises(DatasetError, match="NaN"):
        validate_episode(nan)
    wrong_dtype = make_episode(0, 5)
    wrong_dtype["frames"] = wrong_dtype["frames"].astype(np.float32)
    with pytest.raises(DatasetError, match="uint8"):
        validate_episode(wrong_dtype)
    assert not (tmp_path / "s.h5").exists(), "a failed write must not leave a visible shard"


def test_check_passes_on_good_dataset(fake_dataset):
    assert check_dataset(fake_dataset) == []


def test_check_names_corrupt_and_truncated_shards(fake_dataset):
    corrupt, truncated = fake_dataset / "shard_00001.h5", fake_dataset / "shard_00002.h5"
    data = bytearray(corrupt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:1000])
    problems = check_dataset(fake_dataset)
    assert any("shard_00001.h5" in p for p in problems)
    assert any("shard_00002.h5" in p for p in problems)
    assert not any("shard_00000.h5" in p or "shard_00003.h5" in p for p in problems)
    # The other shards stay readable; the truncated one gives an error naming it.
    read_episode(fake_dataset / "shard_00000.h5", 0)
    with pytest.raises(DatasetError, match="shard_00002.h5"):
        read_episode(truncated, 4)


def test_manifest_errors(tmp_path, fake_dataset):
    with pytest.raises(DatasetError, match="not a roboscape dataset"):
        read_manifest(tmp_path / "nowhere")
    (fake_dataset / MANIFEST_NAME).write_text("{broken")
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_manifest(fake_dataset)
    (fake_dataset / MANIFEST_NAME).write_text(json.dumps({"schema_version": 999}))
    with pytest.raises(DatasetError, match="schema version 999"):
        read_manifest(fake_dataset)


def test_full_disk_mid_write_leaves_nothing_visible(tmp_path, monkeypatch):
    import errno

    import h5py

    real_create = h5py.Group.create_dataset
    calls = {"n": 0}

    def failing_create(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # fail part-way through the first episode
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_create(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing_create)
    with pytest.raises(OSError, match="No space left"):
        write_shard(tmp_path / "s.h5", [make_episode(0, 5), make_episode(1, 5)])
    assert list(tmp_path.iterdir()) == [], "neither the shard nor a temp file may remain"


def test_manifest_counts(fake_dataset):
    from roboscape_r.data.format import manifest_counts

    counts = manifest_counts(read_manifest(fake_dataset))
    assert counts["episodes"] == 8 and counts["shards"] == 4
    assert counts["episodes_per_task"] == {"PickCube": 4, "PushCube": 4}
    assert counts["steps"] == 12 + 9 + 15 + 4 + 10 + 11 + 8 + 13
