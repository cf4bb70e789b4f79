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


def make(done_weight=1.0, alignment="absolute"):
    reward = GeneralReward(MeanAbsDistance(), GeneralRewardConfig(done_weight=done_weight, eps=1e-6,
                                                                  alignment=alignment))
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


def test_gain_alignment_pays_nothing_for_holding_still_and_agrees_at_the_goal():
    reward = make(done_weight=0.0, alignment="gain")
    zero = torch.zeros(2)
    # step 1: the golden frame (20) is 20 from the start; matching it gains 20 / d_ref (60)
    assert torch.allclose(reward(solid(20), zero), torch.full((2,), 20 / 60))
    assert torch.allclose(reward(solid(0), zero), torch.zeros(2))  # holding still: exactly 0
    # step 3 (the golden trajectory's last frame): the same as the absolute form
    absolute = make(done_weight=0.0)
    for _ in range(2):  # to the same step
        absolute(solid(0), zero)
    assert torch.allclose(reward(solid(50), zero), absolute(solid(50), zero))


def test_gain_alignment_is_negative_when_moving_away_from_the_golden_frame():
    reward = make(done_weight=0.0, alignment="gain")
    # golden frame 20 is 20 from the start; frame 70 is 50 from it: (20 - 50) / 60
    assert torch.allclose(reward(solid(70), torch.zeros(2)), torch.full((2,), -30 / 60))


def test_gain_prefers_following_the_golden_trajectory_over_holding_still():
    reward_follow, reward_still = make(0.0, "gain"), make(0.0, "gain")
    follow = sum(reward_follow(solid(v), torch.zeros(2)) for v in (20, 40, 60))
    still = sum(reward_still(solid(0), torch.zeros(2)) for _ in range(3))
    assert torch.all(follow > still) and torch.allclose(still, torch.zeros(2))
    # the absolute form, by contrast, also pays a lot for holding still
    absolute_still = make(0.0)
    assert torch.all(sum(absolute_still(solid(0), torch.zeros(2)) for _ in range(3)) > 0.5)


def test_unknown_alignment_is_refused():
    with pytest.raises(ValueError, match="valid: absolute, gain"):
        GeneralRewardConfig(alignment="progress")
    with pytest.raises(ValueError, match="done_weight"):
        GeneralRewardConfig(done_weight=float("nan"))


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
