"""Policy stage: actor-critic network, PPO, behaviour cloning and the `load_policy` API."""

from roboscape_r.policy.api import Policy, load_policy
from roboscape_r.policy.bc import BCResult, train_bc
from roboscape_r.policy.config import BCConfig, PPOConfig
from roboscape_r.policy.gae import GAEResult, compute_gae
from roboscape_r.policy.network import ActorCritic, PolicyConfig
from roboscape_r.policy.ppo import PPOResult, train_ppo
from roboscape_r.policy.runtime import NonFiniteError

__all__ = [
    "ActorCritic",
    "BCConfig",
    "BCResult",
    "GAEResult",
    "NonFiniteError",
    "PPOConfig",
    "PPOResult",
    "Policy",
    "PolicyConfig",
    "compute_gae",
    "load_policy",
    "train_bc",
    "train_ppo",
]
