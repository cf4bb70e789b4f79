import pytest
import torch

from roboscape_r.reward.base import EpisodeContext, make_reward, reward_names
from roboscape_r.reward.general import GeneralReward, GeneralRewardConfig
from roboscape_r.tokenizer.perceptual import PerceptualDistance


class MeanAbsDistance(PerceptualDistance):
    """A transparent stand-in: mean absolute pixel difference (the reward uses only ratios of it)."""

    name = "mean-abs"

    def distance(self, images_a, images_b):
        return (images_a - images_b).abs().mean(dim=(1, 2, 3))


def solid(value, batch=2, size=4):
    return torch.full((batch, size, size, 3), value, dtype=torch.uint8)


def context(first_frames, golden_frames):
    B = first_frames.shape[0]
    return EpisodeContext(first_frames, ["PickCube"] * B, ["pick up the cube"] * B, golden_frames)


def make(done_weight=1.0):
    reward = GeneralReward(MeanAbsDistance(), GeneralRewardConfig(done_weight=done_weight, eps=1e-6))
    golden = torch.stack([solid(20), solid(40), solid(60)], dim=1)  # (B, T=3, H, W, 3)
    reward.reset(context(solid(0), golden))
    return reward


def test_matching_the_golden_frame_scores_one_and_staying_put_scores_about_zero():
    reward = make(done_weight=0.0)
    zero = torch.zeros(2)
    assert torch.allclose(reward(solid(20), zero), torch.ones(2))  # step 1 target is golden[0] = 20
    # step 2 target is 40; the frame is still the start (0): d = 40, d_ref = d(start, goal) = 60
    assert torch.allclose(reward(solid(0), zero), torch.full((2,), 1 - 40 / 60))


def test_after_the_golden_trajectory_ends_its_last_frame_is_the_target():
    reward = make(done_weight=0.0)
    for _ in range(5):
        last = reward(solid(60), torch.zeros(2))
    assert torch.allclose(last, torch.ones(2))


def test_alignment_is_clipped_and_done_is_added():
    reward = make(done_weight=0.5)
    far = reward(solid(255), torch.tensor([0.0, 1.0]))  # d = 235 > 2 * d_ref: clipped at -1
    assert torch.allclose(far, torch.tensor([-1.0, -0.5]))


def test_bad_input():
    reward = GeneralReward(MeanAbsDistance())
    with pytest.raises(RuntimeError, match="reset"):
        reward(solid(0), torch.zeros(2))
    with pytest.raises(ValueError, match="golden_frames"):
        reward.reset(context(solid(0), solid(0)))
    reward = make()
    with pytest.raises(ValueError, match="expected frames"):
        reward(solid(0, batch=3), torch.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        reward(solid(0), torch.tensor([0.0, float("nan")]))
    assert reward.distance_name == "mean-abs"


def test_with_the_tokenizer_feature_distance():
    from roboscape_r.tokenizer import Tokenizer
    from roboscape_r.tokenizer.config import TokenizerConfig
    from roboscape_r.tokenizer.perceptual import TokenizerFeatureDistance

    torch.manual_seed(0)
    tokenizer = Tokenizer(TokenizerConfig(channels=16, max_channels=32, codebook_bits=10, num_res_blocks=1,
                                          refine_channels=4, norm_groups=8))  # 64x64 frames
    reward = GeneralReward(TokenizerFeatureDistance(tokenizer))
    start = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    goal = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    reward.reset(context(start, goal[:, None]))
    at_goal = reward(goal, torch.zeros(2))
    at_start = reward(start, torch.zeros(2))
    assert reward.distance_name == "tokenizer-features-lpips"
    assert torch.all(at_goal > at_start) and torch.allclose(at_goal, torch.ones(2), atol=1e-3)


def test_registry():
    assert "general" in reward_names()
    with pytest.raises(ValueError, match="valid rewards: .*general"):
        make_reward("no-such-reward")
    with pytest.raises(ValueError, match="tokenizer"):
        make_reward("general", tokenizer=None, prefer_lpips=False)


def test_general_without_golden_is_refused():
    reward = GeneralReward(MeanAbsDistance())
    with pytest.raises(ValueError, match="golden trajectory"):
        reward.reset(context(solid(0), None))
    with pytest.raises(ValueError, match="one per env"):
        EpisodeContext(solid(0), ["PickCube"], ["x", "y"])
