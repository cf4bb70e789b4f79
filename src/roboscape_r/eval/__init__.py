"""Evaluation in ManiSkill: one protocol for every policy, success metrics with confidence intervals."""

from roboscape_r.eval.evaluate import EvalConfig, evaluate
from roboscape_r.eval.metrics import aggregate, summarize, wilson_interval
from roboscape_r.eval.rollout import PolicyOutputError

__all__ = ["EvalConfig", "PolicyOutputError", "aggregate", "evaluate", "summarize", "wilson_interval"]
