import json

import numpy as np
import pytest
import torch

from roboscape_r.reward.base import EpisodeContext, make_reward, reward_names
from roboscape_r.reward.embedding import (
    ENCODER_NAME,
    EmbeddingReward,
    EmbeddingRewardConfig,
    GoalEmbeddings,
    TokenizerEmbedding,
    compute_goal_embeddings,
    encoder_fingerprint,
)

from tests.reward.conftest import square_episode, tiny_tokenizer, write_square_dataset


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def identical_demos(tmp_path_factory):
    """Successful demos whose first and last frames are the same for every demo of a task (one
    background), plus failed and perturbed episodes that must not enter the goals."""
    plan = [("PickCube", "id-default-wood", True, 8, 0)] * 3 + [("PickCube", "id-default-wood", False, 8)]
    plan += [("PushCube", "id-default-wood", True, 6, 0)] * 2
    root = write_square_dataset(tmp_path_factory.mktemp("demos") / "ds", plan)
    return root


def context(frames, task="PickCube"):
    B = frames.shape[0]
    return EpisodeContext(frames, [task] * B, ["move the square"] * B)


def test_embedding_rows_are_unit_norm_and_differ_between_frames(tokenizer):
    embedder = TokenizerEmbedding(tokenizer, pool_size=2)
    episode = square_episode(0, 8)
    embedding = embedder(torch.from_numpy(episode["frames"]))
    # three feature maps of 8 channels (stem, two levels), 2x2 pooled
    assert embedding.shape == (9, 3 * 8 * 4) and embedding.dtype == torch.float32
    assert torch.allclose(embedding.norm(dim=1), torch.ones(9), atol=1e-5)
    assert not torch.allclose(embedding[0], embedding[-1])
    with pytest.raises(ValueError, match="uint8"):
        embedder(torch.zeros(1, 16, 16, 3))


def test_goal_is_one_start_is_zero_and_the_goal_frame_beats_the_start(tokenizer, identical_demos):
    config = EmbeddingRewardConfig(pool_size=2)
    embedder = TokenizerEmbedding(tokenizer, pool_size=2)
    goals = compute_goal_embeddings(identical_demos, embedder, config, progress=False)
    assert goals.episodes == {"PickCube": 3, "PushCube": 2}  # the failed PickCube episode is not a demo
    reward = EmbeddingReward(embedder, goals, config)
    demo = torch.from_numpy(square_episode(0, 8)["frames"])  # same frames as the demos (index 0 background)
    reward.reset(context(demo[:1]))
    at_goal = reward(demo[-1:], torch.zeros(1))
    reward.reset(context(demo[:1]))
    at_start = reward(demo[:1], torch.zeros(1))
    # All demos of a task are one trajectory here, so S is exactly 0 at their start and 1 at their end.
    assert at_goal.item() == pytest.approx(1.0, abs=1e-4)
    assert at_start.item() == pytest.approx(0.0, abs=1e-4)
    assert at_goal.item() > at_start.item()


def test_vip_mode_telescopes_to_the_similarity_change(tokenizer, identical_demos):
    embedder = TokenizerEmbedding(tokenizer, pool_size=2)
    goals = compute_goal_embeddings(identical_demos, embedder, EmbeddingRewardConfig(pool_size=2), progress=False)
    similarity = EmbeddingReward(embedder, goals, EmbeddingRewardConfig(pool_size=2))
    vip = EmbeddingReward(embedder, goals, EmbeddingRewardConfig(mode="vip", pool_size=2))
    frames = torch.from_numpy(square_episode(5, 8, task="PushCube")["frames"])[:, None]  # (T+1, B=1, H, W, 3)
    similarity.reset(context(frames[0], "PushCube"))
    vip.reset(context(frames[0], "PushCube"))
    start = similarity.score(frames[0])
    vip_sum = sum(vip(frames[t], torch.zeros(1)) for t in range(1, len(frames)))
    end = similarity(frames[-1], torch.zeros(1))
    assert vip_sum.item() == pytest.approx((end - start).item(), abs=1e-5)


def test_goals_round_trip_and_factory_caches_them(tokenizer, identical_demos, tmp_path):
    path = tmp_path / "goals.json"
    reward = make_reward("embedding", tokenizer=tokenizer, goals=path, dataset=identical_demos, pool_size=2)
    assert path.is_file() and not list(tmp_path.glob(".*.tmp"))
    raw = json.loads(path.read_text())
    assert raw["encoder"] == ENCODER_NAME and raw["encoder_fingerprint"] == encoder_fingerprint(tokenizer)
    loaded = GoalEmbeddings.load(path)
    for task in ("PickCube", "PushCube"):
        assert torch.allclose(loaded.goals[task], reward.goals.goals[task])
    # Second call reads the file; no dataset needed.
    again = make_reward("embedding", tokenizer=tokenizer, goals=path, pool_size=2)
    description = again.describe()
    assert description["encoder"] == ENCODER_NAME and description["goals"] == str(path)
    assert "embedding" in reward_names()


def test_batch_of_mixed_tasks_matches_single_envs(tokenizer, identical_demos):
    embedder = TokenizerEmbedding(tokenizer, pool_size=2)
    goals = compute_goal_embeddings(identical_demos, embedder, EmbeddingRewardConfig(pool_size=2), progress=False)
    reward = EmbeddingReward(embedder, goals, EmbeddingRewardConfig(pool_size=2))
    first = torch.stack([torch.from_numpy(square_episode(i, 6)["frames"][0]) for i in (0, 1)])
    frames = torch.stack([torch.from_numpy(square_episode(i, 6)["frames"][3]) for i in (0, 1)])
    reward.reset(EpisodeContext(first, ["PickCube", "PushCube"], ["a", "b"]))
    batched = reward(frames, torch.zeros(2))
    singles = []
    for b, task in enumerate(["PickCube", "PushCube"]):
        reward.reset(context(first[b:b + 1], task))
        singles.append(reward(frames[b:b + 1], torch.zeros(1)))
    assert torch.allclose(batched, torch.cat(singles), atol=1e-5)


def test_error_paths(tokenizer, identical_demos, tmp_path):
    with pytest.raises(ValueError, match="trained tokenizer"):
        make_reward("embedding", goals=tmp_path / "g.json", dataset=identical_demos)
    with pytest.raises(ValueError, match="pass goals=FILE .* or dataset=DIR"):
        make_reward("embedding", tokenizer=tokenizer, goals=tmp_path / "missing.json")
    path = tmp_path / "goals.json"
    make_reward("embedding", tokenizer=tokenizer, goals=path, dataset=identical_demos, pool_size=2)
    with pytest.raises(ValueError, match="another tokenizer"):
        make_reward("embedding", tokenizer=tiny_tokenizer(seed=1), goals=path, pool_size=2)
    with pytest.raises(ValueError, match="pool_size 2"):
        make_reward("embedding", tokenizer=tokenizer, goals=path, pool_size=4)
    reward = make_reward("embedding", tokenizer=tokenizer, goals=path, pool_size=2)
    frames = torch.from_numpy(square_episode(0, 4)["frames"])
    with pytest.raises(RuntimeError, match="reset"):
        reward(frames[:1], torch.zeros(1))
    with pytest.raises(ValueError, match=r"no goal embedding for task\(s\) \['StackCube'\]"):
        reward.reset(context(frames[:1], "StackCube"))
    reward.reset(context(frames[:2]))
    with pytest.raises(ValueError, match="done_prob"):
        reward(frames[:2], torch.zeros(3))
    (tmp_path / "bad.json").write_text('{"format": 99}')
    with pytest.raises(ValueError, match="not a goal-embedding file"):
        GoalEmbeddings.load(tmp_path / "bad.json")
    failed_only = write_square_dataset(tmp_path / "failed", [("PickCube", "id-default-wood", False, 5)])
    with pytest.raises(ValueError, match="no successful episodes"):
        make_reward("embedding", tokenizer=tokenizer, dataset=failed_only)
    with pytest.raises(ValueError, match="mode"):
        EmbeddingRewardConfig(mode="cosine")


def test_progress_along_a_demo_is_mostly_increasing(tokenizer, identical_demos):
    """Not guaranteed for a random encoder, but the square moves monotonically and S is 0 at the
    start and 1 at the end: most of the trajectory should rise."""
    reward = make_reward("embedding", tokenizer=tokenizer, dataset=identical_demos, pool_size=2)
    frames = torch.from_numpy(square_episode(0, 8)["frames"])
    reward.reset(context(frames[:1]))
    values = np.array([reward(frames[t:t + 1], torch.zeros(1)).item() for t in range(1, 9)])
    assert np.corrcoef(values, np.arange(8))[0, 1] > 0.5
