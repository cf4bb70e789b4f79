"""PPO on the project's own vector envs: the world-model env (tiny random models) and ManiSkill (slow)."""

import json

import numpy as np
import torch
import pytest

from roboscape_r.policy import PolicyConfig, PPOConfig, load_policy, train_ppo


def test_ppo_on_world_model_env_with_tokenizer_frames(tmp_path):
    pytest.importorskip("roboscape_r.envs.world_model")
    from roboscape_r.envs.world_model import WorldModelVectorEnv
    from tests.envs.wm_env_helpers import make_assets, text_encoder

    assets = make_assets(tmp_path / "assets")
    # done_threshold 1.0: no episode terminates, all are truncated at 6 steps and must be
    # bootstrapped from info["final_observation"].
    env = WorldModelVectorEnv(text_encoder=text_encoder(), num_envs=3, done_threshold=1.0, **assets)
    policy_config = PolicyConfig(frame_preprocess="tokenizer", tokenizer_path=str(assets["tokenizer_path"]))
    config = PPOConfig(total_timesteps=3 * 12 * 2, num_steps=12, device="cpu", progress=False, ckpt_every=1)
    result = train_ppo(config, env, tmp_path / "ppo", policy_config=policy_config)
    rows = [json.loads(line) for line in (tmp_path / "ppo" / "metrics.jsonl").read_text().splitlines()]
    assert result.finished and result.global_step == 72
    assert all(row["charts/missing_final_obs"] == 0 for row in rows)
    assert [row["episodes"] for row in rows] == [6, 6] and rows[0]["episode_length"] == 6.0
    policy = load_policy(tmp_path / "ppo", text_encoder=text_encoder())
    actions = policy.act(np.zeros((2, 64, 64, 3), np.uint8), ["do PickCube number 0", "do PushCube number 1"])
    assert actions.shape == (2, 7) and actions.dtype == np.float32


@pytest.mark.slow
@pytest.mark.maniskill
def test_ppo_on_maniskill_env(tmp_path):
    # The real simulator with the default MiniLM instruction encoder: gymnasium 0.29's object-array
    # final observations; about 45 s on two CPU cores (rendering dominates).
    from roboscape_r.envs.maniskill import make_maniskill_vector_env

    env = make_maniskill_vector_env(tasks=("PushCube",), num_envs=2, max_steps_per_episode=5)
    config = PPOConfig(total_timesteps=2 * 8, num_steps=8, device="cpu", progress=False)
    result = train_ppo(config, env, tmp_path / "ppo")
    row = json.loads((tmp_path / "ppo" / "metrics.jsonl").read_text().splitlines()[-1])
    assert result.finished and row["episodes"] == 2 and row["charts/missing_final_obs"] == 0
    assert row["episode_length"] == 5.0 and row["success_at_end"] is not None


def test_frames_already_decoded_by_the_policys_tokenizer_are_not_round_tripped_again(tmp_path):
    from types import SimpleNamespace

    from roboscape_r.policy.checkpoint import build_actor_critic
    from roboscape_r.policy.ppo import _frame_preparation
    from tests.envs.wm_env_helpers import save_tokenizer

    tokenizer = save_tokenizer(tmp_path / "tok.pt")
    other = save_tokenizer(tmp_path / "other.pt", seed=1)
    model = build_actor_critic(PolicyConfig(frame_preprocess="tokenizer", tokenizer_path=str(tokenizer)))
    frames = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    same = _frame_preparation(model, SimpleNamespace(frames_decoded_by=tokenizer))
    assert torch.equal(same(frames), frames)
    for envs in (SimpleNamespace(frames_decoded_by=other), SimpleNamespace()):
        prepared = _frame_preparation(model, envs)(frames)
        assert torch.equal(prepared, model.prepare_frames(frames)) and not torch.equal(prepared, frames)
