"""Tests of roboscape_r.checkpoint: atomic save, load checks and their messages, pruning, RNG."""

import random

import numpy as np
import pytest
import torch

from roboscape_r.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)

CONFIG = {"grid_size": 8, "channels": (16, 32), "model": {"bits": 10}}


def _save(path, kind="tokenizer", step=3, **kwargs):
    return save_checkpoint(path, kind=kind, config=CONFIG, model_state={"weight": torch.arange(4.0)},
                           step=step, **kwargs)


def test_round_trip_keeps_everything(tmp_path):
    optimizer_state = {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]}
    path = _save(tmp_path / "a.pt", optimizer_state=optimizer_state, scheduler_state={"last_epoch": 3},
                 extra={"data_position": 96})
    ckpt = load_checkpoint(path, expected_kind="tokenizer", expected_config=CONFIG)
    assert ckpt["format_version"] == FORMAT_VERSION
    assert ckpt["kind"] == "tokenizer" and ckpt["step"] == 3 and ckpt["config"] == CONFIG
    assert torch.equal(ckpt["model"]["weight"], torch.arange(4.0))
    assert ckpt["optimizer"] == optimizer_state and ckpt["scheduler"] == {"last_epoch": 3}
    assert ckpt["extra"] == {"data_position": 96}
    assert set(ckpt["rng"]) >= {"torch", "numpy", "python"}
    assert ckpt["path"] == path


def test_save_leaves_no_temporary_files(tmp_path):
    _save(tmp_path / "a.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_failed_save_keeps_old_file_and_cleans_up(tmp_path):
    path = _save(tmp_path / "a.pt", step=1)
    with pytest.raises(Exception):
        save_checkpoint(path, kind="tokenizer", config=CONFIG, model_state={"bad": lambda: 0}, step=2)
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]
    assert load_checkpoint(path, expected_kind="tokenizer")["step"] == 1


def test_config_must_be_a_dict(tmp_path):
    with pytest.raises(TypeError, match="plain dict"):
        save_checkpoint(tmp_path / "a.pt", kind="tokenizer", config=[1], model_state={}, step=0)


def test_missing_file_names_path(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pt does not exist"):
        load_checkpoint(tmp_path / "nope.pt", expected_kind="tokenizer")


def test_folder_without_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="holds no ckpt_NNNNNNNN.pt"):
        load_checkpoint(tmp_path, expected_kind="tokenizer")


def test_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_file(tmp_path, damage):
    path = _save(tmp_path / "a.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"a\.pt is truncated or corrupt.*earlier checkpoint"):
        load_checkpoint(path, expected_kind="tokenizer")


def test_not_a_roboscape_checkpoint(tmp_path):
    torch.save({"weight": torch.ones(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a roboscape-r checkpoint"):
        load_checkpoint(tmp_path / "plain.pt", expected_kind="tokenizer")


def test_wrong_kind_message(tmp_path):
    path = _save(tmp_path / "a.pt", kind="wm_act")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, expected_kind="tokenizer")
    assert f"checkpoint {path} holds a 'wm_act' model but a 'tokenizer' was expected" in str(info.value)


def test_format_version_mismatch(tmp_path):
    path = _save(tmp_path / "a.pt")
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1} but this code reads"):
        load_checkpoint(path, expected_kind="tokenizer")


def test_config_mismatch_lists_differing_keys(tmp_path):
    path = _save(tmp_path / "a.pt")
    expected = {"grid_size": 4, "channels": [16, 32], "model": {"bits": 12}, "new_key": 1}
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, expected_kind="tokenizer", expected_config=expected)
    message = str(info.value)
    assert "'grid_size': checkpoint 8, expected 4" in message
    assert "'model.bits': checkpoint 10, expected 12" in message
    assert "'new_key': absent in checkpoint" in message
    assert "channels" not in message  # tuple vs list of equal items is no difference


def test_keep_last_and_latest(tmp_path):
    for step in (5, 10, 15, 20):
        _save(checkpoint_path(tmp_path, step), step=step, keep_last=2)
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert sorted(p.name for p in tmp_path.glob("ckpt_*.pt")) == ["ckpt_00000015.pt", "ckpt_00000020.pt"]
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt_00000020.pt"
    assert load_checkpoint(tmp_path, expected_kind="tokenizer")["step"] == 20
    assert latest_checkpoint(tmp_path / "missing") is None


def test_restore_rng_state_replays_draws(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    path = _save(tmp_path / "a.pt")
    draws = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    restore_rng_state(load_checkpoint(path, expected_kind="tokenizer"))
    assert torch.equal(torch.rand(3), draws[0])
    assert np.array_equal(np.random.rand(3), draws[1])
    assert [random.random() for _ in range(3)] == draws[2]


def test_restore_rng_state_needs_rng_entry():
    with pytest.raises(CheckpointError, match="no 'rng' entry"):
        restore_rng_state({"step": 1})


def test_latest_checkpoint_looks_into_a_run_folders_checkpoints_subfolder(tmp_path):
    from roboscape_r.checkpoint import latest_checkpoint, save_checkpoint

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for step in (5, 12):
        save_checkpoint(run / "checkpoints" / f"ckpt_{step:08d}.pt", kind="wm_act", config={}, model_state={}, step=step)
    assert latest_checkpoint(run).name == "ckpt_00000012.pt"
    assert latest_checkpoint(tmp_path / "empty") is None
