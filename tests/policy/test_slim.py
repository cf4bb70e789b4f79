"""Slim policy files: a policy without its frozen tokenizer, rebuilt to the same weights."""

import pytest
import torch

from roboscape_r.checkpoint import CheckpointError, save_checkpoint
from roboscape_r.policy.checkpoint import (POLICY_KIND, build_actor_critic, policy_checkpoint_config,
                                           read_policy_checkpoint, restore_slim_policy, weights_digest,
                                           write_slim_policy)
from roboscape_r.policy.network import PolicyConfig
from tests.envs.wm_env_helpers import IMAGE_SIZE, save_tokenizer


@pytest.fixture
def policy_file(tmp_path):
    tokenizer = save_tokenizer(tmp_path / "tokenizer.pt", seed=0)
    torch.manual_seed(3)
    model = build_actor_critic(PolicyConfig(frame_preprocess="tokenizer", tokenizer_path=str(tokenizer),
                                            image_size=IMAGE_SIZE))
    path = save_checkpoint(tmp_path / "run" / "checkpoints" / "ckpt_00000040.pt", kind=POLICY_KIND,
                           config=policy_checkpoint_config("bc", model, {}), model_state=model.state_dict(),
                           optimizer_state=torch.optim.Adam(model.parameters()).state_dict(), step=40)
    return path, tokenizer


def test_a_slim_policy_is_smaller_and_rebuilds_the_same_weights(tmp_path, policy_file):
    path, tokenizer = policy_file
    slim = write_slim_policy(path.parent.parent, tmp_path / "policy.slim.pt", tokenizer)
    assert slim.stat().st_size < path.stat().st_size
    rebuilt = restore_slim_policy(slim, tokenizer, tmp_path / "elsewhere")
    assert rebuilt.name == "ckpt_00000040.pt"
    original, again = read_policy_checkpoint(path)["model"], read_policy_checkpoint(rebuilt)["model"]
    assert set(original) == set(again) and all(torch.equal(original[k], again[k]) for k in original)
    assert weights_digest(original) == weights_digest(again)


def test_a_slim_policy_refuses_another_tokenizer(tmp_path, policy_file):
    path, tokenizer = policy_file
    other = save_tokenizer(tmp_path / "other.pt", seed=1)
    with pytest.raises(CheckpointError, match="differs from .*other.pt"):
        write_slim_policy(path, tmp_path / "bad.slim.pt", other)
    slim = write_slim_policy(path, tmp_path / "policy.slim.pt", tokenizer)
    with pytest.raises(CheckpointError, match="SHA-256 .*other.pt has"):
        restore_slim_policy(slim, other, tmp_path / "elsewhere")
    with pytest.raises(CheckpointError, match="needs its tokenizer"):
        restore_slim_policy(slim, tmp_path / "missing.pt", tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()


def test_weights_digest_sees_one_changed_value():
    state = {"a": torch.zeros(3), "b": torch.ones(2, 2)}
    changed = {"a": torch.zeros(3), "b": torch.ones(2, 2)}
    changed["b"][1, 1] = 1.0000001
    assert weights_digest(state) == weights_digest(dict(reversed(list(state.items()))))
    assert weights_digest(state) != weights_digest(changed)


def _same(a, b):
    """Deep equality of checkpoint values (tensors, numpy arrays, dicts, lists, tuples, scalars)."""
    import numpy as np

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_a_slim_copy_with_training_state_rebuilds_the_resumable_checkpoint(tmp_path):
    from roboscape_r.checkpoint import load_checkpoint

    tokenizer = save_tokenizer(tmp_path / "tokenizer.pt", seed=0)
    torch.manual_seed(3)
    model = build_actor_critic(PolicyConfig(frame_preprocess="tokenizer", tokenizer_path=str(tokenizer),
                                            image_size=IMAGE_SIZE))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad])
    sum(p.sum() for p in model.parameters() if p.requires_grad).backward()
    optimizer.step()  # the optimizer has moments to keep
    torch.manual_seed(11)  # the RNG state the checkpoint records
    trainer_state = {"global_step": 640, "obs_rgb": torch.randint(0, 255, (2, 4, 4, 3), dtype=torch.uint8),
                     "episode_stats": {"returns": [1.0, 2.0]}, "env_state": None}
    original = save_checkpoint(tmp_path / "run" / "checkpoints" / "ckpt_00000016.pt", kind=POLICY_KIND,
                               config=policy_checkpoint_config("ppo", model, {}), model_state=model.state_dict(),
                               optimizer_state=optimizer.state_dict(), step=16, extra=trainer_state)
    torch.manual_seed(99)  # the process's RNG moves on; the rebuilt file must keep the original's
    plain = write_slim_policy(original, tmp_path / "policy.slim.pt", tokenizer)
    slim = write_slim_policy(original, tmp_path / "resume.slim.pt", tokenizer, training_state=True)
    assert plain.stat().st_size < slim.stat().st_size < original.stat().st_size
    rebuilt = restore_slim_policy(slim, tokenizer, tmp_path / "elsewhere")
    before = load_checkpoint(original, expected_kind=POLICY_KIND)
    after = load_checkpoint(rebuilt, expected_kind=POLICY_KIND)
    assert rebuilt.name == original.name
    for key in ("config", "step", "model", "optimizer", "scheduler", "rng"):
        assert _same(before[key], after[key]), key
    assert after["extra"].pop("restored_from") == "resume.slim.pt"
    assert _same(before["extra"], after["extra"])
    # Without training state the rebuilt checkpoint has no optimizer (it is for evaluation only).
    assert load_checkpoint(restore_slim_policy(plain, tokenizer, tmp_path / "third"), expected_kind=POLICY_KIND)[
        "optimizer"] is None
