"""Behaviour cloning (roboscape_r/policy/bc.py) on a fake dataset written with the real format code."""

import json

import numpy as np
import pytest
import torch

from roboscape_r.checkpoint import load_checkpoint
from roboscape_r.policy import BCConfig, load_policy, train_bc, train_ppo
from roboscape_r.policy.bc import random_shift
from tests.conftest import write_fake_dataset
from tests.policy.conftest import tiny_policy_config, tiny_ppo_config
from tests.policy.point_env import PointVecEnv


def bc_config(**overrides) -> BCConfig:
    values = dict(policy=tiny_policy_config(), steps=60, batch_size=16, lr=3e-3, warmup_steps=5, log_every=10,
                  eval_every=30, ckpt_every=30, val_fraction=0.25, device="cpu", progress=False)
    values.update(overrides)
    return BCConfig(**values)


def read_rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_bc_loss_falls_and_checkpoint_loads_as_policy(tmp_path, fake_dataset, hash_encoder):
    result = train_bc(fake_dataset, tmp_path / "bc", bc_config(), text_encoder=hash_encoder)
    rows = read_rows(tmp_path / "bc")
    assert result.finished and result.step == 60
    assert rows[-1]["losses/bc_loss"] < 0.5 * rows[0]["losses/bc_loss"], [r["losses/bc_loss"] for r in rows]
    assert "val/action_mse" in rows[-1]
    # Only successful expert episodes (the even-indexed ones of the fake dataset) are used, and
    # each distinct instruction is embedded once.
    config = json.loads((tmp_path / "bc" / "config.json").read_text())
    assert sum(config["episodes"].values()) == 4
    assert sorted(hash_encoder.encoded) == sorted(f"do {t} number {i}" for i, t in
                                                  [(0, "PickCube"), (2, "PickCube"), (4, "PickCube"), (6, "PickCube")])
    policy = load_policy(tmp_path / "bc", text_encoder=hash_encoder)
    assert policy.trainer == "bc" and policy.image_size == 16 and policy.action_dim == 7
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    actions = policy.act(frames, ["do PickCube number 0"] * 3)
    assert actions.dtype == np.float32 and actions.shape == (3, 7)
    assert np.all(np.abs(actions) <= 1.0)


def test_bc_checkpoint_starts_ppo(tmp_path, fake_dataset, hash_encoder):
    bc = train_bc(fake_dataset, tmp_path / "bc", bc_config(steps=10, loss="nll"), text_encoder=hash_encoder)
    bc_weights = load_checkpoint(bc.checkpoint_path, expected_kind="policy")["model"]
    # With one critic warm-up update everything but the critic head keeps exactly the BC weights:
    # the actor head, and the shared encoder through which the value loss would move the actor.
    config = tiny_ppo_config(total_timesteps=4 * 8, critic_warmup_updates=1)
    result = train_ppo(config, PointVecEnv(num_envs=4), tmp_path / "ppo", bc_init=bc.checkpoint_path)
    ppo_weights = load_checkpoint(result.checkpoint_path, expected_kind="policy")["model"]
    for name, weight in bc_weights.items():
        if not name.startswith(("critic.", "actor_log_std")):
            torch.testing.assert_close(ppo_weights[name], weight, msg=name)
    assert not torch.equal(ppo_weights["critic.2.weight"], bc_weights["critic.2.weight"])
    # NLL moved the log-std during BC; PPO starts again from PolicyConfig.init_log_std.
    assert not torch.allclose(bc_weights["actor_log_std"], torch.full((7,), -0.5))
    assert torch.allclose(ppo_weights["actor_log_std"], torch.full((7,), -0.5), atol=0.05)
    with pytest.raises(ValueError, match="differs from the bc_init checkpoint"):
        train_ppo(config, PointVecEnv(num_envs=4), tmp_path / "ppo2", bc_init=bc.checkpoint_path,
                  policy_config=tiny_policy_config(hidden_dim=32))


def test_ppo_can_start_with_bc_s_validation_error_as_its_action_std(tmp_path, fake_dataset, hash_encoder):
    import math

    from roboscape_r.policy.ppo import bc_validation_action_rmse

    bc = train_bc(fake_dataset, tmp_path / "bc", bc_config(steps=30, eval_every=10), text_encoder=hash_encoder)
    mses = {row["step"]: row["val/action_mse"] for row in read_rows(tmp_path / "bc") if "val/action_mse" in row}
    assert sorted(mses) == [10, 20, 30]
    assert math.isclose(bc_validation_action_rmse(bc.checkpoint_path), math.sqrt(mses[30]))
    assert math.isclose(bc_validation_action_rmse(bc.checkpoint_path, step=25), math.sqrt(mses[20]))
    # A critic-only first update leaves the log-std where it started: log(sqrt(BC's val MSE)).
    config = tiny_ppo_config(total_timesteps=4 * 8, critic_warmup_updates=1, bc_std_from_validation=True)
    result = train_ppo(config, PointVecEnv(num_envs=4), tmp_path / "ppo", bc_init=tmp_path / "bc")
    log_std = load_checkpoint(result.checkpoint_path, expected_kind="policy")["model"]["actor_log_std"]
    torch.testing.assert_close(log_std, torch.full((7,), math.log(math.sqrt(mses[30]))))
    # Without the BC run's metrics there is nothing to take the std from: a clear error.
    (tmp_path / "bc" / "metrics.jsonl").unlink()
    with pytest.raises(ValueError, match="metrics.jsonl"):
        train_ppo(config, PointVecEnv(num_envs=4), tmp_path / "ppo2", bc_init=tmp_path / "bc")


def test_a_bc_anchor_keeps_ppo_near_its_bc_start(tmp_path, fake_dataset, hash_encoder):
    from roboscape_r.policy.checkpoint import actor_critic_from_checkpoint, read_policy_checkpoint

    bc = train_bc(fake_dataset, tmp_path / "bc", bc_config(steps=10), text_encoder=hash_encoder)
    start = actor_critic_from_checkpoint(read_policy_checkpoint(bc.checkpoint_path))
    frames = torch.randint(0, 256, (32, 16, 16, 3), dtype=torch.uint8)
    instructions = torch.randn(32, start.config.instruction_dim)

    def drift(coef):
        config = tiny_ppo_config(total_timesteps=4 * 8 * 6, learning_rate=3e-3, bc_anchor_coef=coef, target_kl=None)
        result = train_ppo(config, PointVecEnv(num_envs=4), tmp_path / f"ppo{coef}", bc_init=bc.checkpoint_path)
        tuned = actor_critic_from_checkpoint(read_policy_checkpoint(result.checkpoint_path))
        with torch.no_grad():
            gap = (tuned.action_mean(frames, instructions) - start.action_mean(frames, instructions)).abs().mean()
        return float(gap), read_rows(tmp_path / f"ppo{coef}")

    free, free_rows = drift(0.0)
    anchored, anchored_rows = drift(100.0)
    assert anchored < 0.5 * free, (anchored, free)
    assert all(row["losses/bc_anchor"] == 0 for row in free_rows)
    assert any(row["losses/bc_anchor"] > 0 for row in anchored_rows)
    with pytest.raises(ValueError, match="bc_init"):
        train_ppo(tiny_ppo_config(bc_anchor_coef=1.0), PointVecEnv(num_envs=4), tmp_path / "no_bc")


def test_bc_resume_is_exact(tmp_path, fake_dataset, hash_encoder):
    straight = train_bc(fake_dataset, tmp_path / "a", bc_config(steps=40, ckpt_every=20), text_encoder=hash_encoder)
    # A first call that stops at 20 steps: the same config with steps=20 would change the LR schedule, so
    # simulate the interruption by deleting the final checkpoint of a full run instead.
    train_bc(fake_dataset, tmp_path / "b", bc_config(steps=40, ckpt_every=20), text_encoder=hash_encoder)
    (tmp_path / "b" / "checkpoints" / "ckpt_00000040.pt").unlink()
    resumed = train_bc(fake_dataset, tmp_path / "b", bc_config(steps=40, ckpt_every=20), text_encoder=hash_encoder)
    a = load_checkpoint(straight.checkpoint_path, expected_kind="policy")["model"]
    b = load_checkpoint(resumed.checkpoint_path, expected_kind="policy")["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)
    assert [row["step"] for row in read_rows(tmp_path / "b")] == [row["step"] for row in read_rows(tmp_path / "a")]


def test_bc_filters_and_sizes_are_checked(tmp_path, fake_dataset, hash_encoder):
    with pytest.raises(ValueError, match=r"no episode .* passes the filters .* sources \['expert'\]"):
        train_bc(fake_dataset, tmp_path / "a", bc_config(sources=("random",)), text_encoder=hash_encoder)
    with pytest.raises(ValueError, match="set policy.image_size=16"):
        train_bc(fake_dataset, tmp_path / "b", bc_config(policy=tiny_policy_config(image_size=32)),
                 text_encoder=hash_encoder)
    with pytest.raises(ValueError, match="8-d embeddings but PolicyConfig.instruction_dim is 384"):
        train_bc(fake_dataset, tmp_path / "c", bc_config(policy=tiny_policy_config(instruction_dim=384)),
                 text_encoder=hash_encoder)
    with pytest.raises(ValueError, match="BCConfig.loss"):
        bc_config(loss="l1")


def test_bc_without_success_filter_uses_every_episode(tmp_path, hash_encoder):
    dataset = write_fake_dataset(tmp_path / "ds", [5, 6, 7])
    train_bc(dataset, tmp_path / "bc", bc_config(steps=2, success_only=False, val_fraction=0.0),
             text_encoder=hash_encoder)
    assert json.loads((tmp_path / "bc" / "config.json").read_text())["episodes"] == {"train": 3}


def test_random_shift_moves_content_within_the_padding():
    frames = torch.zeros(64, 8, 8, 3, dtype=torch.uint8)
    frames[:, 4, 4] = 255
    shifted = random_shift(frames, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == frames.shape and shifted.dtype == torch.uint8
    positions = {tuple(torch.nonzero(frame[..., 0]).flatten().tolist()) for frame in shifted}
    assert len(positions) > 5  # different offsets per frame
    assert all(len(p) == 2 and 2 <= p[0] <= 6 and 2 <= p[1] <= 6 for p in positions)
    assert random_shift(frames, 0) is frames


def test_bc_learns_actions_that_depend_on_instruction_and_image(tmp_path, hash_encoder):
    # Action 0 is +0.8 for PickCube and -0.8 for PushCube (only the instruction tells them apart);
    # action 1 follows the frame's green level (the step index in make_episode's frames).
    from roboscape_r.data.format import MANIFEST_NAME, atomic_write_json, new_manifest, write_shard
    from tests.conftest import make_episode

    episodes = []
    for i in range(6):
        task = ("PickCube", "PushCube")[i % 2]
        episode = make_episode(i, 10, size=16, task=task)
        episode["frames"][..., 0] = 0  # the episode index must not give the task away
        episode["frames"][..., 1] *= 20
        episode["actions"][:] = 0.0
        episode["actions"][:, 0] = 0.8 if task == "PickCube" else -0.8
        episode["actions"][:, 1] = np.arange(10) / 10 - 0.5
        episode["instruction"] = f"{task} task"
        episode["success"][-1] = True
        episodes.append(episode)
    root = tmp_path / "ds"
    manifest = new_manifest({"image_size": 16, "seed": 0})
    manifest["shards"]["shard_00000.h5"] = write_shard(root / "shard_00000.h5", episodes)
    atomic_write_json(root / MANIFEST_NAME, manifest)

    result = train_bc(root, tmp_path / "bc", bc_config(steps=150, val_fraction=0.0, shift_augment_pixels=0),
                      text_encoder=hash_encoder)
    policy = load_policy(result.checkpoint_path, text_encoder=hash_encoder)
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    frames[:, :, :, 1] = np.array([2, 8, 2, 8])[:, None, None] * 20
    actions = policy.act(frames, ["PickCube task", "PickCube task", "PushCube task", "PushCube task"])
    np.testing.assert_allclose(actions[:, 0], [0.8, 0.8, -0.8, -0.8], atol=0.15)
    np.testing.assert_allclose(actions[:, 1], [-0.3, 0.3, -0.3, 0.3], atol=0.15)
