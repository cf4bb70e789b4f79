"""PPO (roboscape_r/policy/ppo.py): learns a small control task, resumes exactly, stops on NaN, honours padding."""

import json
import warnings

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from roboscape_r.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, step_checkpoints
from roboscape_r.policy import NonFiniteError, load_policy, train_ppo
from tests.policy.conftest import tiny_policy_config, tiny_ppo_config
from tests.policy.point_env import PointVecEnv, StatelessPointVecEnv


def read_rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def deterministic_success(policy, num_envs=64, seed=123):
    env = PointVecEnv(num_envs=num_envs)
    obs, _ = env.reset(seed=seed)
    success, ended = np.zeros(num_envs, bool), np.zeros(num_envs, bool)
    for _ in range(env.max_steps):
        obs, _, terminated, truncated, _ = env.step(policy.act_embedded(obs["rgb"], obs["instruction"]))
        success |= terminated & ~ended
        ended |= terminated | truncated
    return success.mean()


def test_ppo_learns_point_reaching(tmp_path):
    config = tiny_ppo_config(total_timesteps=32 * 16 * 16, num_steps=16, update_epochs=4, num_minibatches=4,
                             learning_rate=3e-3, ckpt_every=100)
    result = train_ppo(config, PointVecEnv(num_envs=16), tmp_path / "run", policy_config=tiny_policy_config())
    rows = read_rows(tmp_path / "run")
    assert result.finished and result.update == 32 and result.global_step == 32 * 16 * 16
    assert [row["update"] for row in rows] == list(range(1, 33))
    first, last = rows[0]["episode_return"], np.mean([row["episode_return"] for row in rows[-4:]])
    assert first < 0.8, rows[0]  # a random policy: about 0.5
    assert last > 1.2, [row["episode_return"] for row in rows]  # straight to the target: about 1.6
    policy = load_policy(result.checkpoint_path)
    assert deterministic_success(policy) >= 0.7
    assert policy.trainer == "ppo" and policy.step == 32
    # The standard diagnostics reach TensorBoard.
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("charts/episodic_return", "charts/success_once", "charts/learning_rate", "losses/approx_kl",
                "losses/clipfrac", "losses/explained_variance", "losses/entropy", "losses/value_loss",
                "time/steps_per_s"):
        assert tag in tags, sorted(tags)
    assert rows[-1]["charts/learning_rate"] < rows[0]["charts/learning_rate"]  # annealed


def _params(path):
    return load_checkpoint(path, expected_kind="policy")["model"]


@pytest.mark.parametrize("sync_reset", [False, True])
def test_resume_is_exact(tmp_path, sync_reset):
    config = tiny_ppo_config(total_timesteps=4 * 4 * 8)  # 4 updates of 4 envs x 8 steps
    policy_config = tiny_policy_config()
    straight = train_ppo(config, PointVecEnv(num_envs=4, sync_reset=sync_reset), tmp_path / "a",
                         policy_config=policy_config)
    half = dict(config.__dict__, run_updates=2)
    first = train_ppo(type(config)(**half), PointVecEnv(num_envs=4, sync_reset=sync_reset), tmp_path / "b",
                      policy_config=policy_config)
    assert first.update == 2 and not first.finished
    resumed = train_ppo(config, PointVecEnv(num_envs=4, sync_reset=sync_reset, seed=99), tmp_path / "b")
    assert resumed.update == 4 and resumed.finished and resumed.global_step == straight.global_step
    a, b = _params(straight.checkpoint_path), _params(resumed.checkpoint_path)
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5, msg=name)
    rows_a, rows_b = read_rows(tmp_path / "a"), read_rows(tmp_path / "b")
    assert [r["update"] for r in rows_b] == [1, 2, 3, 4]
    for row_a, row_b in zip(rows_a, rows_b):
        for key in ("global_step", "episodes", "episode_return", "losses/value_loss", "losses/approx_kl"):
            assert row_a[key] == pytest.approx(row_b[key], rel=1e-5, abs=1e-7), key


def test_resume_without_env_state_resets_and_warns(tmp_path):
    config = tiny_ppo_config(run_updates=1)
    train_ppo(config, StatelessPointVecEnv(num_envs=4), tmp_path / "run", policy_config=tiny_policy_config())
    with pytest.warns(UserWarning, match="reset on resume"):
        result = train_ppo(config, StatelessPointVecEnv(num_envs=4), tmp_path / "run")
    assert result.update == 2
    assert len(read_rows(tmp_path / "run")) == 2


def test_resume_refuses_another_setup(tmp_path):
    config = tiny_ppo_config(run_updates=1)
    train_ppo(config, PointVecEnv(num_envs=4), tmp_path / "run", policy_config=tiny_policy_config())
    with pytest.raises(CheckpointError, match="learning_rate"):
        train_ppo(tiny_ppo_config(learning_rate=5e-4), PointVecEnv(num_envs=4), tmp_path / "run")
    with pytest.raises(CheckpointError, match="num_envs"):
        train_ppo(tiny_ppo_config(total_timesteps=2 * 4 * 8 * 4), PointVecEnv(num_envs=8), tmp_path / "run")
    with pytest.raises(CheckpointError, match="hidden_dim"):
        train_ppo(config, PointVecEnv(num_envs=4), tmp_path / "run", policy_config=tiny_policy_config(hidden_dim=32))
    with pytest.raises(FileExistsError, match="resume=True"):
        train_ppo(tiny_ppo_config(resume=False), PointVecEnv(num_envs=4), tmp_path / "run")


def test_a_checkpoint_older_than_an_option_resumes_while_that_option_is_at_its_default(tmp_path):
    config = tiny_ppo_config(run_updates=1)
    first = train_ppo(config, PointVecEnv(num_envs=4), tmp_path / "run", policy_config=tiny_policy_config())
    ckpt = torch.load(first.checkpoint_path, map_location="cpu", weights_only=False)
    del ckpt["config"]["train"]["bc_std_from_validation"]  # as written before the option existed
    torch.save(ckpt, first.checkpoint_path)
    with pytest.raises(CheckpointError, match="bc_std_from_validation"):
        train_ppo(tiny_ppo_config(run_updates=1, bc_std_from_validation=True), PointVecEnv(num_envs=4),
                  tmp_path / "run")
    assert train_ppo(config, PointVecEnv(num_envs=4), tmp_path / "run").update == 2


@pytest.mark.parametrize("fault, match", [
    ("nan_reward_at", "reward was NaN/inf for envs \\[0\\]"),
    ("huge_reward_at", "loss was NaN/inf"),
    ("nan_instruction_at", "NaN/inf actions"),
])
def test_nan_stops_with_update_and_step_keeping_last_good_checkpoint(tmp_path, fault, match):
    # 4 envs x 8 steps per update: vector step 10 lies in update 2 (global steps 33..64).
    env = PointVecEnv(num_envs=4, **{fault: 10})
    with pytest.raises(NonFiniteError, match=match) as error:
        train_ppo(tiny_ppo_config(), env, tmp_path / "run", policy_config=tiny_policy_config())
    assert "update 2" in str(error.value) and "global step" in str(error.value)
    assert "ckpt_00000001.pt" in str(error.value)
    assert [step for step, _ in step_checkpoints(tmp_path / "run" / "checkpoints")] == [1]
    assert load_policy(tmp_path / "run").step == 1


def test_padding_transitions_are_dropped(tmp_path):
    # Padding rewards are NaN: any leak into GAE, losses or statistics would show up as NaN/inf.
    config = tiny_ppo_config(total_timesteps=3 * 4 * 16, num_steps=16)
    result = train_ppo(config, PointVecEnv(num_envs=4, sync_reset=True), tmp_path / "run",
                       policy_config=tiny_policy_config())
    rows = read_rows(tmp_path / "run")
    assert result.finished
    assert all(row["charts/valid_fraction"] < 1.0 for row in rows)
    assert all(row["valid_steps"] == round(row["charts/valid_fraction"] * 4 * 16) for row in rows)
    for row in rows:
        assert np.isfinite(row["losses/value_loss"]) and np.isfinite(row["episode_return"])
        assert 1 <= row["episode_length"] <= 12  # episode lengths count valid steps only


@pytest.mark.parametrize("final_obs", ["gymnasium", "none"])
def test_final_observation_forms(tmp_path, final_obs):
    config = tiny_ppo_config(total_timesteps=2 * 4 * 16, num_steps=16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_ppo(config, PointVecEnv(num_envs=4, final_obs=final_obs), tmp_path / "run",
                  policy_config=tiny_policy_config())
    rows = read_rows(tmp_path / "run")
    missing = sum(row["charts/missing_final_obs"] for row in rows)
    warned = any("final_observation" in str(w.message) for w in caught)
    if final_obs == "none":
        assert missing > 0 and warned
    else:
        assert missing == 0 and not warned
        assert sum(row["episodes"] for row in rows) > 0 and rows[-1]["success_once"] is not None


def test_bad_setups_raise(tmp_path):
    with pytest.raises(ValueError, match="less than one update"):
        train_ppo(tiny_ppo_config(total_timesteps=10), PointVecEnv(num_envs=4), tmp_path / "a",
                  policy_config=tiny_policy_config())
    with pytest.raises(ValueError, match="PolicyConfig.image_size"):
        train_ppo(tiny_ppo_config(), PointVecEnv(num_envs=4, image_size=12), tmp_path / "b",
                  policy_config=tiny_policy_config())
    with pytest.raises(ValueError, match="action_dim is 3"):
        train_ppo(tiny_ppo_config(), PointVecEnv(num_envs=4), tmp_path / "c",
                  policy_config=tiny_policy_config(action_dim=3))
    with pytest.raises(ValueError, match="PPOConfig.gamma"):
        tiny_ppo_config(gamma=1.5)
    assert latest_checkpoint(tmp_path / "a") is None


def test_configs_round_trip_through_json():
    import dataclasses

    from roboscape_r.policy.config import BCConfig, PPOConfig

    ppo = tiny_ppo_config(target_kl=None)
    assert PPOConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(ppo)))) == ppo
    bc = BCConfig(policy=tiny_policy_config(), tasks=("PickCube",))
    assert BCConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(bc)))) == bc


@pytest.mark.parametrize("value_trains_encoder", [True, False])
def test_the_value_loss_reaches_the_shared_encoder_only_when_configured(value_trains_encoder):
    from roboscape_r.policy.network import ActorCritic
    from roboscape_r.policy.ppo_update import ppo_update
    from roboscape_r.policy.rollout import RolloutBuffer

    torch.manual_seed(0)
    model = ActorCritic(tiny_policy_config())
    T, N = 4, 3
    buffer = RolloutBuffer(T, N, 16, 8, 7, torch.device("cpu"))
    buffer.frames.random_(0, 256)
    buffer.instructions.normal_()
    with torch.no_grad():
        out = model.act_and_value(buffer.flat("frames"), buffer.flat("instructions"))
    buffer.actions.copy_(out.action.view(T, N, 7))
    buffer.log_probs.copy_(out.log_prob.view(T, N))
    buffer.values.copy_(out.value.view(T, N))
    encoder = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("cnn.", "trunk.", "instruction_mlp."))}
    config = tiny_ppo_config(value_trains_encoder=value_trains_encoder, update_epochs=1, num_minibatches=1, target_kl=None)
    # Zero advantages: the policy loss has no gradient, so only the value loss (returns far from
    # the values) can move anything.
    ppo_update(model, torch.optim.Adam(model.parameters(), lr=1e-2), config, buffer,
               torch.zeros(T, N), torch.full((T, N), 10.0))
    moved = [k for k, v in encoder.items() if not torch.equal(v, model.state_dict()[k])]
    assert bool(moved) == value_trains_encoder, moved
