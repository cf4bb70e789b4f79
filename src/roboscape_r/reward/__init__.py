"""Rewards computed from world-model frames: the general reward (ours) and, later, baselines."""

from roboscape_r.reward.general import GeneralReward, GeneralRewardConfig

__all__ = ["GeneralReward", "GeneralRewardConfig"]
