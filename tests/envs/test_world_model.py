"""Tests of roboscape_r/envs/world_model.py, world_model_single.py, models.py and registration.py.

Tiny random world models and a tiny tokenizer are saved as real checkpoints, start frames come
from a fake dataset, and instructions are embedded by a precomputed table (a stand-in for MiniLM).
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from roboscape_r.checkpoint import CheckpointError
from roboscape_r.envs.registration import SINGLE_ENV_ID, VECTOR_ENV_ID
from roboscape_r.envs.world_model import WorldModelEnvConfig, WorldModelVectorEnv, make_config
from roboscape_r.envs.world_model_single import WorldModelEnv
from roboscape_r.worldmodel.rollout import StepFrames
from roboscape_r.worldmodel.text_encoder import PrecomputedTextEncoder
from tests.envs.wm_env_helpers import TEXT_DIM, make_assets, save_tokenizer, save_world_model, text_encoder


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models: extra threads only add synchronisation cost on a shared 2-core machine.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict:
    return make_assets(tmp_path_factory.mktemp("wm_env"))


def make_env(assets: dict, **overrides) -> WorldModelVectorEnv:
    kwargs = {**assets, "num_envs": 3, **overrides}
    encoder = kwargs.pop("text_encoder", None) or text_encoder()
    return WorldModelVectorEnv(text_encoder=encoder, **kwargs)


def random_actions(num_envs: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (num_envs, 7)).astype(np.float32)


class ScriptedDone:
    """Wraps a WorldModelRollout: done probabilities follow a schedule (steps, N), and every
    step's frames are filled with 10 * step, so that frozen (padding) frames can be told apart."""

    def __init__(self, rollout, schedule) -> None:
        self.rollout, self.schedule, self.t = rollout, torch.tensor(schedule, dtype=torch.float32), 0

    def reset(self, *args, **kwargs):
        self.t = 0
        return self.rollout.reset(*args, **kwargs)

    def step(self, actions):
        frames, _ = self.rollout.step(actions)
        done_prob = self.schedule[min(self.t, len(self.schedule) - 1)]
        self.t += 1
        return StepFrames(torch.full_like(frames, 10 * self.t), done_prob)


# ----------------------------------------------------------------------------- observations


def test_observation_shapes_dtypes_and_instruction_embedding(assets):
    env = make_env(assets, done_threshold=1.0, render_mode="rgb_array")
    obs, info = env.reset(seed=0)
    assert obs["rgb"].shape == (3, 64, 64, 3) and obs["rgb"].dtype == np.uint8
    assert obs["instruction"].shape == (3, TEXT_DIM) and obs["instruction"].dtype == np.float32
    assert obs in env.observation_space
    assert env.single_action_space == gym.spaces.Box(-1, 1, (7,), np.float32)
    assert set(info["task"]) <= {"PickCube", "PushCube"} and len(info["instruction"]) == 3
    expected = text_encoder().encode(list(info["instruction"])).numpy()
    np.testing.assert_allclose(obs["instruction"], expected)

    obs, reward, terminated, truncated, info = env.step(random_actions(3, 0))
    assert obs in env.observation_space
    assert reward.shape == (3,) and reward.dtype == np.float32 and np.isfinite(reward).all()
    assert terminated.dtype == truncated.dtype == np.bool_ and terminated.shape == truncated.shape == (3,)
    assert info["valid"].all() and info["success"].dtype == np.bool_ and info["done_prob"].shape == (3,)
    assert (info["elapsed_steps"] == 1).all()
    np.testing.assert_array_equal(env.render(), obs["rgb"])


def test_same_seed_same_rollout_other_seed_differs(assets):
    def rollout(seed: int) -> list[np.ndarray]:
        env = make_env(assets, done_threshold=1.0, act_temperature=1.0, txt_temperature=1.0, seed=123)
        obs, _ = env.reset(seed=seed)
        seen = [obs["rgb"], obs["instruction"]]
        for t in range(4):
            obs, reward, *_ = env.step(random_actions(3, t))
            seen += [obs["rgb"], reward]
        return seen

    first, again, other = rollout(7), rollout(7), rollout(8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(first, other))


# ----------------------------------------------------------------- episode ends and padding


def test_padding_valid_mask_and_synchronous_autoreset(assets):
    env = make_env(assets, max_steps_per_episode=5, done_threshold=0.5)
    # env 0 succeeds at step 2, env 1 at step 4, env 2 never (truncated at step 5)
    schedule = [[0.1, 0.1, 0.1], [0.9, 0.1, 0.1], [0.9, 0.1, 0.1], [0.9, 0.9, 0.1], [0.9, 0.9, 0.1], [0.1] * 3]
    env.rollout = ScriptedDone(env.rollout, schedule)
    env.reset(seed=1, options={"start_indices": [0, 1, 2]})
    rewards, valids = [], []
    for t in range(1, 6):
        obs, reward, terminated, truncated, info = env.step(random_actions(3, t))
        rewards.append(reward)
        valids.append(info["valid"])
        assert info["valid"].tolist() == [t <= 2, t <= 4, True]
        assert (reward[~info["valid"]] == 0).all()
        assert terminated.tolist() == [t == 2, t == 4, False]
        assert info["success"].tolist() == terminated.tolist()
        assert truncated.tolist() == [False, False, t == 5]
        if t == 2:
            final_frame_0 = obs["rgb"][0].copy()
            assert (final_frame_0 == 20).all()
            assert info["_final_observation"].tolist() == [True, False, False]
            np.testing.assert_array_equal(info["final_observation"]["rgb"][0], final_frame_0)
        if t in (3, 4):  # env 0 is padding: its observation stays its final frame
            np.testing.assert_array_equal(obs["rgb"][0], final_frame_0)
            assert "start_index" not in info
    # step 5: the last env ended, so the whole batch was reset in the same call
    assert info["_final_info"].tolist() == [False, False, True]
    assert info["final_info"]["episode_length"].tolist()[2] == 5
    np.testing.assert_allclose(info["final_info"]["episode_return"][2], np.sum([r[2] for r in rewards]), rtol=1e-5)
    assert info["start_index"].shape == (3,) and "task" in info
    with torch.inference_mode():  # obs are the new episodes' first frames, as the tokenizer reconstructs them
        first = env.starts.frames[torch.from_numpy(info["start_index"])]
        expected = env.tokenizer.decode(env.tokenizer.encode(first)).numpy()
    np.testing.assert_array_equal(obs["rgb"], expected)
    obs, reward, terminated, truncated, info = env.step(random_actions(3, 9))
    assert info["valid"].all() and (info["elapsed_steps"] == 1).all()


def test_done_threshold_terminates_and_max_steps_truncates(assets):
    env = make_env(assets, done_threshold=0.0, max_steps_per_episode=4)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(random_actions(3, 0))
    assert terminated.all() and info["success"].all() and not truncated.any()
    assert info["_final_info"].all() and "start_index" in info  # all ended at once: batch reset
    assert (info["final_info"]["episode_length"] == 1).all()

    env = make_env(assets, done_threshold=1.0, max_steps_per_episode=4)
    env.reset(seed=0)
    for t in range(4):
        obs, reward, terminated, truncated, info = env.step(random_actions(3, t))
        assert not terminated.any() and not info["success"].any()
        assert truncated.all() == (t == 3)
    assert info["valid"].all() and (info["final_info"]["episode_length"] == 4).all()


def test_without_autoreset_stepping_an_ended_batch_raises(assets):
    env = make_env(assets, done_threshold=0.0, autoreset=False)
    env.reset(seed=0)
    env.step(random_actions(3, 0))
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(random_actions(3, 1))
    env.reset()
    env.step(random_actions(3, 1))


# --------------------------------------------------------------------------- golden cache


def test_golden_trajectories_are_cached_per_start_and_instruction(assets):
    env = make_env(assets, done_threshold=1.0)
    calls = []
    generate = env.golden_rollout.generate_golden
    env.golden_rollout.generate_golden = lambda frames, *a, **k: calls.append(len(frames)) or generate(frames, *a, **k)
    env.reset(options={"start_indices": [0, 0, 1]})
    assert calls == [2] and (env.golden_cache.misses, env.golden_cache.hits) == (2, 0)
    golden_first = env.reward_fn.golden.clone()
    assert golden_first.shape == (3, 4, 64, 64, 3)
    env.reset(options={"start_indices": [1, 0, 2]})
    assert calls == [2, 1] and env.golden_cache.hits == 2
    torch.testing.assert_close(env.reward_fn.golden[0], golden_first[2])
    torch.testing.assert_close(env.reward_fn.golden[1], golden_first[0])


def test_oracle_golden_is_the_start_episode_s_recorded_frames(assets):
    from roboscape_r.data.format import read_episode

    # The fake dataset's successful episodes are the even ones (all PickCube), of 5, 4 and 5 steps.
    env = make_env(assets, tasks=("PickCube",), golden_source="dataset", golden_length=6, done_threshold=1.0)
    assert env.components.wm_txt is None and env.golden_rollout is None
    assert env.starts.episode_indices == (0, 2, 4)
    env.reset(options={"start_indices": [1, 0, 1]})
    golden = env.reward_fn.golden
    assert golden.shape == (3, 6, 64, 64, 3)
    real = torch.from_numpy(read_episode(Path(assets["dataset"]) / env.starts.shards[1], 2)["frames"][1:])  # 4 frames
    expected = env.tokenizer.decode(env.tokenizer.encode(real))
    torch.testing.assert_close(golden[0, :4], expected)
    assert torch.equal(golden[0, 4:], expected[-1:].expand(2, -1, -1, -1))  # last frame repeated
    torch.testing.assert_close(golden[2], golden[0])
    assert not torch.equal(golden[1], golden[0])
    assert env.describe()["golden"].startswith("ORACLE")
    with pytest.raises(ValueError, match="no successful episodes of task"):
        make_env(assets, golden_source="dataset")  # no PushCube episode succeeded
    with pytest.raises(ValueError, match="golden_source"):
        make_env(assets, golden_source="imagined")


def test_golden_cache_is_bounded(assets):
    one_trajectory_mb = 4 * 64 * 64 * 3 / 2**20
    env = make_env(assets, done_threshold=1.0, golden_cache_mb=2.5 * one_trajectory_mb)
    env.reset(options={"start_indices": [0, 1, 2]})
    env.reset(options={"start_indices": [3, 4, 5]})
    assert len(env.golden_cache) == 2 and env.golden_cache.bytes <= env.golden_cache.max_bytes


# ------------------------------------------------------------------------------ bad input


def test_bad_actions_are_refused(assets):
    env = make_env(assets)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(3, 7\)"):
        env.step(np.zeros((3, 6), np.float32))
    with pytest.raises(ValueError, match=r"shape \(3, 7\)"):
        env.step(np.zeros((2, 7), np.float32))
    actions = np.zeros((3, 7), np.float32)
    actions[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"envs \[1\] contain NaN"):
        env.step(actions)


def test_step_before_reset_raises(assets):
    with pytest.raises(RuntimeError, match="reset"):
        make_env(assets).step(np.zeros((3, 7), np.float32))


def test_unknown_reward_lists_valid_ones(assets):
    with pytest.raises(ValueError, match=r"unknown reward 'nope'; valid rewards: .*general"):
        make_env(assets, reward="nope")


def test_unknown_config_field_and_bad_values(assets):
    with pytest.raises(ValueError, match="unknown WorldModelEnvConfig field.*num_env\\b.*valid fields"):
        make_config(num_env=4)
    with pytest.raises(ValueError, match="done_threshold"):
        WorldModelEnvConfig(done_threshold=1.5)
    with pytest.raises(ValueError, match="unknown task"):
        WorldModelEnvConfig(tasks=("LiftCube",))
    with pytest.raises(ValueError, match="one int"):
        make_env(assets).reset(seed=[1, 2, 3])


def test_missing_checkpoint_is_named(assets, tmp_path):
    missing = tmp_path / "nowhere" / "wm_act.pt"
    with pytest.raises(CheckpointError, match=rf"wm_act_path: checkpoint {missing} does not exist.*train-wm"):
        make_env(assets, wm_act_path=missing)
    with pytest.raises(CheckpointError, match="tokenizer_path: .*does not exist"):
        make_env(assets, tokenizer_path=tmp_path / "tok.pt")


def test_wrong_kind_and_mismatched_models_are_refused(assets, tmp_path):
    with pytest.raises(CheckpointError, match="wm_act_path: .*holds a 'wm_txt' model"):
        make_env(assets, wm_act_path=assets["wm_txt_path"])
    coarse = save_tokenizer(tmp_path / "tok2.pt", grid_size=2)
    with pytest.raises(ValueError, match="expects 4x4 token grids but the tokenizer .*tok2.pt.* makes 2x2"):
        make_env(assets, tokenizer_path=coarse)
    big_vocab = save_world_model(tmp_path / "act_big.pt", "act", codebook_size=32)
    with pytest.raises(ValueError, match="32-token vocabulary but the tokenizer .* has 16 codes"):
        make_env(assets, wm_act_path=big_vocab)
    small_text = PrecomputedTextEncoder({"do PickCube number 0": [0.0] * 8})
    with pytest.raises(ValueError, match="384-d instruction embeddings but the text encoder makes 8-d"):
        make_env(assets, text_encoder=small_text)


def test_dataset_without_requested_task(assets):
    with pytest.raises(ValueError, match=r"no episodes of task\(s\) \['StackCube'\].*PickCube/id-default-wood"):
        make_env(assets, tasks=("PickCube", "StackCube"))


# ----------------------------------------------------------------- describe, registration


def test_describe_is_json_and_names_the_reward(assets):
    description = make_env(assets).describe()
    json.dumps(description)
    assert description["reward"]["name"] == "general" and description["config"]["num_envs"] == 3
    assert description["wm_act"]["cond"] == "act" and description["wm_txt"]["cond"] == "txt"
    assert description["start_frames"] == {"PickCube/id-default-wood": 3, "PushCube/id-default-wood": 3}


def test_registered_vector_env_by_name(assets):
    env = gym.make(VECTOR_ENV_ID, text_encoder=text_encoder(), **{**assets, "num_envs": 2})
    assert isinstance(env, WorldModelVectorEnv) and env.num_envs == 2
    obs, _ = env.reset(seed=0)
    assert obs["rgb"].shape == (2, 64, 64, 3)
    vec = gym.make_vec(VECTOR_ENV_ID, 4, vectorization_mode="custom",
                       vector_kwargs={**assets, "text_encoder": text_encoder()})
    assert isinstance(vec.unwrapped, WorldModelVectorEnv) and vec.unwrapped.num_envs == 4


@pytest.mark.filterwarnings("ignore:.*Box observation space m.* value is -infinity")
def test_single_env_passes_gymnasium_check_env(assets):
    from gymnasium.utils.env_checker import check_env

    env = gym.make(SINGLE_ENV_ID, text_encoder=text_encoder(), **assets)
    assert isinstance(env.unwrapped, WorldModelEnv) and env.unwrapped.config.num_envs == 1
    check_env(env.unwrapped)
    obs, info = env.reset(seed=3)
    assert obs["rgb"].shape == (64, 64, 3) and isinstance(info["task"], str)
    with pytest.raises(ValueError, match=r"shape \(7,\)"):
        env.unwrapped.step(np.zeros(6, np.float32))


def test_single_env_refuses_batches(assets):
    with pytest.raises(ValueError, match="single env"):
        WorldModelEnv(text_encoder=text_encoder(), **{**assets, "num_envs": 4})


def test_stable_baselines3_ppo_trains_on_single_env(assets):
    from stable_baselines3 import PPO

    env = WorldModelEnv(text_encoder=text_encoder(), **{**assets, "done_threshold": 0.5})
    model = PPO("MultiInputPolicy", env, n_steps=250, batch_size=125, n_epochs=1, seed=0, device="cpu",
                policy_kwargs=dict(net_arch=[32], features_extractor_kwargs=dict(cnn_output_dim=32)))
    model.learn(total_timesteps=1000)
    assert model.num_timesteps >= 1000
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (7,) and np.isfinite(action).all()


def test_importing_the_package_registers_ids_without_loading_torch():
    import subprocess
    import sys

    code = ("import sys, gymnasium as gym, roboscape_r.envs; "
            "print(gym.spec('RoboScapeR/WorldModel-v0').entry_point, gym.spec('RoboScapeR/WorldModelSingle-v0').id, "
            "'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["roboscape_r.envs.world_model:WorldModelVectorEnv",
                                     "RoboScapeR/WorldModelSingle-v0", "False"]
