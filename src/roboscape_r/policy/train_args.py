"""Arguments and runners of `roboscape train-policy` (PPO) and `roboscape train-bc`.

`train-policy --env wm` trains inside the world model with a reward chosen by name (general,
embedding, proxy); `--env sim` trains in ManiSkill with the simulator's dense reward, the
physics-simulator baseline. Both write a run folder that `load_policy` and `roboscape eval` read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from roboscape_r.atomic import atomic_write_json
from roboscape_r.envs.world_model import WorldModelEnvConfig
from roboscape_r.policy.config import BCConfig, PPOConfig
from roboscape_r.policy.network import PolicyConfig


@dataclass(frozen=True)
class SimEnvArgs:
    """The ManiSkill training env of the simulator baseline."""

    tasks: tuple[str, ...] = ("PickCube", "PushCube", "PullCube", "StackCube")
    """Tasks trained at once (one task for the per-task baseline of the paper)."""
    scenes: tuple[str, ...] = ("in-domain",)
    """Training scenes: split names, scene names or env ids."""
    num_envs: int = 2
    """Parallel ManiSkill envs."""
    num_workers: int = 2
    """Processes stepping them (0: in this process)."""
    max_steps_per_episode: int | None = None
    """Time limit; default each env id's registered limit."""
    env_module: str | None = None
    """Module registering extra env ids."""


@dataclass(frozen=True)
class TrainPolicyArgs:
    """Train a policy with PPO inside the world model (--env wm) or in ManiSkill (--env sim)."""

    out: Path = Path("runs/policy")
    """Run folder: config, TensorBoard logs, metrics.jsonl, checkpoints (resumes from it)."""
    env: Literal["wm", "sim"] = "wm"
    """Where the policy trains: the world model (reward chosen by --wm.reward) or the simulator."""
    wm: WorldModelEnvConfig = field(default_factory=WorldModelEnvConfig)
    """World-model env options (--env wm)."""
    sim: SimEnvArgs = field(default_factory=SimEnvArgs)
    """ManiSkill env options (--env sim)."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """PPO hyperparameters and run options."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """Network; with --env wm the frames are by default round-tripped through the world model's
    tokenizer at evaluation too (see `frame_preprocess`)."""
    bc_init: Path | None = None
    """A policy checkpoint (e.g. from `roboscape train-bc`) to start from."""


@dataclass(frozen=True)
class TrainBCArgs:
    """Behaviour cloning from a dataset's expert episodes: a baseline and a PPO warm start."""

    data: Path = Path("data/train")
    """Dataset folder written by `roboscape collect`."""
    out: Path = Path("runs/bc")
    """Run folder (resumes from it)."""
    train: BCConfig = field(default_factory=BCConfig)
    """Training options."""


def build_envs(args: TrainPolicyArgs):
    """The vector env named by args.env, and the policy config that fits it (None with --bc-init:
    the BC checkpoint's architecture and frame preprocessing are kept)."""
    policy = None if args.bc_init is not None else args.policy
    if args.env == "wm":
        from roboscape_r.envs.world_model import WorldModelVectorEnv

        envs = WorldModelVectorEnv(replace(args.wm, seed=args.ppo.seed))
        if policy is not None and policy.frame_preprocess == "none":
            # The policy sees decoded world-model frames in training; in ManiSkill it must see the
            # same kind of image, so real frames go through the same tokenizer first.
            policy = replace(policy, frame_preprocess="tokenizer", tokenizer_path=str(args.wm.tokenizer_path))
        return envs, policy, envs.describe()
    from roboscape_r.envs.maniskill import make_maniskill_vector_env

    sim = args.sim
    envs = make_maniskill_vector_env(tasks=sim.tasks, scenes=sim.scenes, num_envs=sim.num_envs, seed=args.ppo.seed,
                                     env_module=sim.env_module, max_steps_per_episode=sim.max_steps_per_episode,
                                     num_workers=sim.num_workers)
    return envs, policy, {"env": "sim", "reward": "maniskill normalized_dense", "env_ids": list(envs.env_ids)}


def run_train_policy(args: TrainPolicyArgs):
    """Build the env, write `env.json` into the run folder, and train (resuming if possible)."""
    from roboscape_r.policy.ppo import train_ppo

    envs, policy, description = build_envs(args)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.out / "env.json", json.loads(json.dumps(
            {"env": args.env, **description, "args": asdict(args)}, default=str)))
        return train_ppo(args.ppo, envs, args.out, policy_config=policy, bc_init=args.bc_init)
    finally:
        close = getattr(envs, "close", None)
        if close is not None:
            close()
