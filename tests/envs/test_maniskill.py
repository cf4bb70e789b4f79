"""The ManiSkill training vector env of the `sim` baseline (short episodes, CPU rendering)."""

import hashlib

import gymnasium as gym
import numpy as np
import pytest
import torch

from roboscape_r.data import scenes as S
from roboscape_r.envs.maniskill import SIM_ENV_ID, ManiSkillVectorEnv, sim_env_ids
from roboscape_r.envs.seeds import TRAIN_SEED_LIMIT
from roboscape_r.worldmodel.text_encoder import TextEncoder

PICK = S.env_id("PickCube", "id-default-wood")
PUSH = S.env_id("PushCube", "id-default-wood")


class HashEncoder(TextEncoder):
    """A 384-d pseudo-random unit vector per string (stands in for MiniLM)."""

    dim = 384

    def _encode_uncached(self, instructions):
        rows = [torch.randn(self.dim, generator=torch.Generator().manual_seed(
            int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little"))) for t in instructions]
        return torch.nn.functional.normalize(torch.stack(rows), dim=1)


@pytest.fixture(scope="module")
def envs():
    vec = ManiSkillVectorEnv([PICK, PUSH], num_envs=2, seed=0, max_episode_steps=3, text_encoder=HashEncoder())
    yield vec
    vec.close()


@pytest.mark.maniskill
def test_reset_gives_the_shared_observation_dict(envs):
    obs, info = envs.reset(seed=1)
    assert obs["rgb"].shape == (2, 64, 64, 3) and obs["rgb"].dtype == np.uint8
    assert obs["instruction"].shape == (2, 384) and obs["instruction"].dtype == np.float32
    assert envs.observation_space.contains(obs) and envs.single_action_space.shape == (7,)
    assert envs.current_env_ids == [PICK, PUSH], "slots take the env ids round-robin"
    for i, task in enumerate(("PickCube", "PushCube")):
        assert envs.instructions[i] in S.instructions()[task]
        np.testing.assert_allclose(obs["instruction"][i], HashEncoder().encode([envs.instructions[i]])[0], atol=1e-6)
    assert (info["episode_seed"] < TRAIN_SEED_LIMIT).all() and not info["success"].any()
    assert obs["rgb"].std() > 10, "frames must show a rendered scene"


@pytest.mark.maniskill
def test_step_and_autoreset_follow_gymnasium_conventions(envs):
    obs, info = envs.reset(seed=2)
    first_seeds = info["episode_seed"]
    returns = np.zeros(2)
    for t in range(3):
        obs, reward, terminated, truncated, info = envs.step(np.zeros((2, 7), np.float32))
        returns += reward
        assert reward.shape == (2,) and reward.dtype == np.float32 and np.isfinite(reward).all()
        assert info["success"].shape == (2,) and info["success"].dtype == bool
        assert (info["elapsed_steps"] == t + 1).all()
        if t < 2:
            assert not (terminated | truncated).any() and "final_observation" not in info
    assert (terminated | truncated).all(), "the 3-step time limit ends both episodes"
    assert info["_final_observation"].all() and info["_final_info"].all()
    final = info["final_observation"][0]
    assert final["rgb"].shape == (64, 64, 3) and final["instruction"].shape == (384,)
    assert not np.array_equal(final["rgb"], obs["rgb"][0]), "the returned obs is the new episode's first frame"
    episode = info["final_info"][1]["episode"]
    assert episode["l"] == 3 and episode["r"] == pytest.approx(returns[1], rel=1e-6)
    assert info["final_info"][0]["episode_seed"] == first_seeds[0]
    assert envs.observation_space.contains(obs)


@pytest.mark.maniskill
def test_seeded_resets_are_reproducible(envs):
    a, info_a = envs.reset(seed=7)
    step_a = envs.step(np.full((2, 7), 0.5, np.float32))[0]
    b, info_b = envs.reset(seed=7)
    step_b = envs.step(np.full((2, 7), 0.5, np.float32))[0]
    np.testing.assert_array_equal(info_a["episode_seed"], info_b["episode_seed"])
    np.testing.assert_array_equal(a["rgb"], b["rgb"])
    np.testing.assert_array_equal(step_a["rgb"], step_b["rgb"])
    _, info_c = envs.reset(seed=8)
    assert not np.array_equal(info_a["episode_seed"], info_c["episode_seed"])


@pytest.mark.maniskill
def test_one_slot_cycles_through_its_env_ids():
    vec = ManiSkillVectorEnv([PICK, PUSH], num_envs=1, seed=0, max_episode_steps=1, text_encoder=HashEncoder())
    try:
        vec.reset()
        seen = [vec.current_env_ids[0]]
        for _ in range(3):
            _, _, _, truncated, info = vec.step(np.zeros((1, 7), np.float32))
            assert truncated[0] and info["final_info"][0]["env_id"] == seen[-1]
            seen.append(vec.current_env_ids[0])
        assert seen == [PICK, PUSH, PICK, PUSH]
        assert {vec.instructions[0]} <= set(S.instructions()["PushCube"])
    finally:
        vec.close()


@pytest.mark.maniskill
def test_gymnasium_id_builds_the_vector_env():
    vec = gym.make(SIM_ENV_ID, tasks=["PullCube"], scenes=["id-cyan-slate"], num_envs=1, max_steps_per_episode=2,
                   text_encoder=HashEncoder())
    try:
        assert isinstance(vec, ManiSkillVectorEnv) and vec.env_ids == [S.env_id("PullCube", "id-cyan-slate")]
        vec.reset(seed=0)
        assert vec.step(np.zeros((1, 7)))[3].tolist() == [False]
        assert vec.step(np.zeros((1, 7)))[3].tolist() == [True]
    finally:
        vec.close()
    made = gym.make_vec(SIM_ENV_ID, 1, vectorization_mode="custom",
                        vector_kwargs=dict(env_ids=[PICK], text_encoder=HashEncoder()))
    assert isinstance(made, ManiSkillVectorEnv) and made.num_envs == 1
    made.close()


@pytest.mark.maniskill
def test_ppo_reads_observations_and_final_observations(envs):
    from roboscape_r.policy.vecenv import final_observations, obs_to_tensors, step_success

    obs, _ = envs.reset(seed=3)
    frames, instructions = obs_to_tensors(obs, 2, 64, 384, torch.device("cpu"))
    assert frames.dtype == torch.uint8 and instructions.shape == (2, 384)
    for _ in range(3):
        obs, _, terminated, truncated, info = envs.step(np.zeros((2, 7), np.float32))
    finished = torch.as_tensor(terminated | truncated)
    final_frames, _ = final_observations(info, finished.nonzero().flatten(), 64, 384, torch.device("cpu"))
    assert final_frames.shape == (2, 64, 64, 3)
    assert step_success(info, finished).shape == (2,)


def test_env_ids_from_tasks_and_scenes():
    ids = sim_env_ids(["PickCube", "StackCube"], ["in-domain"])
    assert len(ids) == 2 * len(S.scenes_in_split("in-domain")) and PICK in ids
    assert sim_env_ids(["StackCube"], ["ood-size-small", "ood-light-dim"]) == [S.env_id("StackCube", "ood-light-dim")]
    with pytest.raises(ValueError, match="unknown scene 'id-nope'"):
        sim_env_ids(["PickCube"], ["id-nope"])
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['Pick'\]"):
        sim_env_ids(["Pick"], ["in-domain"])


@pytest.mark.parametrize("kwargs, match", [
    (dict(env_ids=["NoSuchEnv-v1"], num_envs=1), r"env id\(s\) \['NoSuchEnv-v1'\] are not registered"),
    (dict(env_ids=[], num_envs=1), "env_ids is empty"),
    (dict(env_ids=[PICK], num_envs=0), "num_envs must be >= 1"),
    (dict(env_ids=[PICK], num_envs=1, max_episode_steps=0), "max_episode_steps must be >= 1"),
    (dict(env_ids=[PICK], num_envs=1, num_workers=2), r"num_workers must be in \[0, num_envs=1\]"),
])
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ManiSkillVectorEnv(text_encoder=HashEncoder(), **kwargs)


@pytest.mark.maniskill
def test_bad_actions_and_order(envs):
    fresh = ManiSkillVectorEnv([PICK], num_envs=1, text_encoder=HashEncoder())
    with pytest.raises(RuntimeError, match="call reset"):
        fresh.step(np.zeros((1, 7)))
    fresh.close()
    envs.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions must have shape \(2, 7\), got \(7,\)"):
        envs.step(np.zeros(7))
    bad = np.zeros((2, 7))
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf in env\(s\) \[1\]"):
        envs.step(bad)
    with pytest.raises(ValueError, match="reset got 3 seeds for 2 envs"):
        envs.reset(seed=[1, 2, 3])


@pytest.mark.slow
@pytest.mark.maniskill
def test_worker_processes_give_the_same_episodes(envs):
    actions = np.random.default_rng(0).uniform(-1, 1, (5, 2, 7)).astype(np.float32)

    def run(vec):
        obs, info = vec.reset(seed=11)
        frames, rewards = [obs["rgb"]], []
        for a in actions:
            obs, reward, terminated, truncated, info = vec.step(a)
            frames.append(obs["rgb"])
            rewards.append(reward)
        return np.stack(frames), np.stack(rewards), list(vec.current_env_ids)

    local = run(envs)
    remote_env = ManiSkillVectorEnv([PICK, PUSH], num_envs=2, seed=0, max_episode_steps=3, text_encoder=HashEncoder(),
                                    num_workers=2)
    try:
        remote = run(remote_env)
    finally:
        remote_env.close()
    np.testing.assert_array_equal(local[0], remote[0])
    np.testing.assert_allclose(local[1], remote[1], rtol=1e-6)
    assert local[2] == remote[2]
