"""Configurations of the policy trainers: PPO (`train_ppo`) and behaviour cloning (`train_bc`).

The network's own architecture is `PolicyConfig` (network.py). Fields listed in
`PPO_RUNTIME_FIELDS` / `BC_RUNTIME_FIELDS` only say how a call executes and may change when a
run is resumed; every other field must match the run's checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from roboscape_r.policy.network import PolicyConfig


@dataclass(frozen=True)
class PPOConfig:
    """One PPO run (CleanRL's ppo_continuous_action / ManiSkill's ppo_rgb, torch-native and vectorised)."""

    total_timesteps: int = 200_000
    """Env steps of the whole run, counted over all envs (num_envs per vector step, padding
    transitions included); the run does total_timesteps // (num_envs * num_steps) updates."""
    num_steps: int = 50
    """Vector steps per rollout (per update) in each env."""
    update_epochs: int = 4
    """Passes over each rollout."""
    num_minibatches: int = 4
    """Minibatches per pass (of the rollout's valid transitions)."""
    learning_rate: float = 3e-4
    """Adam learning rate (the start value when anneal_lr)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over the run's updates."""
    adam_eps: float = 1e-5
    """Adam epsilon (CleanRL's 1e-5 rather than torch's 1e-8)."""
    gamma: float = 0.8
    """Discount factor; 0.8 as ManiSkill's PPO baselines use for manipulation episodes of ~50 steps."""
    gae_lambda: float = 0.9
    """GAE lambda."""
    norm_adv: bool = True
    """Normalise advantages (zero mean, unit std) within each minibatch."""
    clip_coef: float = 0.2
    """PPO ratio clip range (and value clip range when clip_vloss)."""
    clip_vloss: bool = False
    """Clip the value loss around the rollout's values, as the PPO paper's implementation does."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    target_kl: float | None = 0.2
    """Stop an update's epochs early once the approximate KL to the rollout policy exceeds this (None: never)."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this before GAE (logged returns are unscaled)."""
    critic_warmup_updates: int = 0
    """Updates at the start of the run in which only the critic head is trained (on the shared
    features, detached), so that a bc_init actor is not pushed around by advantages, or by the
    value gradients, of an untrained critic."""
    value_trains_encoder: bool = True
    """Let the value loss train the shared encoder (CNN, instruction MLP, trunk) too, as in
    CleanRL/ManiSkill. False leaves the encoder to the policy loss, the critic head learning on its
    features: this keeps a bc_init encoder from being reshaped by value regression."""
    reset_log_std: bool = True
    """When starting from bc_init, set the action log-std back to PolicyConfig.init_log_std
    (BC with the NLL loss can shrink it so far that PPO no longer explores)."""
    bc_anchor_coef: float = 0.0
    """Weight of an anchor to the bc_init policy: mean over the minibatch's rollout frames of
    ||mean action - BC's mean action||^2, added to the actor's loss (0 turns it off). PPO then moves
    away from BC only where the advantages keep pulling, as in demonstration-regularised
    fine-tuning (e.g. DAPG's decaying imitation term)."""
    bc_anchor_decay: float = 1.0
    """The anchor's weight is bc_anchor_coef * bc_anchor_decay ** (update - 1)."""
    bc_std_from_validation: bool = False
    """When starting from bc_init, set the action std to the BC run's root-mean-square action error
    on its validation split (its last `val/action_mse` in metrics.jsonl): the maximum-likelihood
    std of a Gaussian around BC's mean action, i.e. how far the demonstrations actually stray
    from it. Overrides reset_log_std. A PPO update moves the mean by at most about
    std * sqrt(2 * target_kl), so the std sets the scale of fine-tuning steps; the default
    init_log_std (-0.5, std 0.61) is twice the expert actions' own spread and lets a few noisy
    updates carry the mean far from BC."""
    seed: int = 0
    """Seeds torch, numpy, random and envs.reset."""
    device: str = "auto"
    """'auto' (CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N'."""
    num_threads: int | None = None
    """torch CPU threads for this process (None leaves torch's default)."""
    ckpt_every: int = 10
    """Updates between checkpoints (one is also written when a call ends)."""
    keep_last: int = 3
    """Checkpoints kept in the run folder."""
    run_updates: int | None = None
    """Do at most this many updates in this call, then checkpoint and return; call again to resume."""
    time_limit_s: float | None = None
    """Stop this call after the update that passes this many seconds, checkpoint and return."""
    resume: bool = True
    """Continue from the newest checkpoint in the run folder; False refuses a folder that has checkpoints."""
    progress: bool = True
    """Show a tqdm progress bar."""

    def __post_init__(self) -> None:
        for name in ("total_timesteps", "num_steps", "update_epochs", "num_minibatches", "ckpt_every", "keep_last"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"PPOConfig.{name} must be a positive int, got {value!r}")
        for name in ("learning_rate", "adam_eps", "max_grad_norm", "reward_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PPOConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"PPOConfig.{name} must be in [0, 1], got {getattr(self, name)!r}")
        for name in ("clip_coef", "ent_coef", "vf_coef", "bc_anchor_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"PPOConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.target_kl is not None and self.target_kl <= 0:
            raise ValueError(f"PPOConfig.target_kl must be > 0 or None, got {self.target_kl}")
        if self.critic_warmup_updates < 0:
            raise ValueError(f"PPOConfig.critic_warmup_updates must be >= 0, got {self.critic_warmup_updates}")
        if not 0.0 < self.bc_anchor_decay <= 1.0:
            raise ValueError(f"PPOConfig.bc_anchor_decay must be in (0, 1], got {self.bc_anchor_decay}")
        if self.run_updates is not None and self.run_updates < 1:
            raise ValueError(f"PPOConfig.run_updates must be >= 1 or None, got {self.run_updates}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PPOConfig:
        """Rebuild from `dataclasses.asdict` output (e.g. a run folder's config.json); unknown keys raise TypeError."""
        return cls(**values)


PPO_RUNTIME_FIELDS = ("device", "num_threads", "ckpt_every", "keep_last", "run_updates", "time_limit_s", "resume",
                      "progress")
"""PPOConfig fields that may differ between the calls of one run."""


@dataclass(frozen=True)
class BCConfig:
    """Behaviour cloning from a collected dataset (a warm start for PPO and a baseline of its own)."""

    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """Architecture of the policy (image_size must match the dataset's frames)."""
    loss: Literal["mse", "nll"] = "mse"
    """'mse': squared error of the mean action; 'nll': Gaussian negative log-likelihood (also
    trains the log-std)."""
    sources: tuple[str, ...] = ("expert",)
    """Episode sources to learn from (the dataset's 'source' attribute: expert, perturbed, random)."""
    success_only: bool = True
    """Use only episodes that reach success at least once."""
    tasks: tuple[str, ...] | None = None
    """Tasks to learn (None: every task in the dataset)."""
    steps: int = 2000
    """Optimizer steps."""
    batch_size: int = 64
    """Frames per step."""
    lr: float = 3e-4
    """Peak AdamW learning rate (linear warm-up, cosine decay)."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of lr."""
    warmup_steps: int = 50
    """Steps of linear warm-up."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip_norm: float = 1.0
    """Global gradient-norm clip."""
    shift_augment_pixels: int = 4
    """Random-shift augmentation (DrQ): pad by this many pixels (edge copy) and crop back at a
    random offset per frame; 0 disables it. Few demonstrations overfit without it."""
    val_fraction: float = 0.1
    """Fraction of episodes held out for the validation action error (0: none)."""
    seed: int = 0
    """Seeds initialisation, the validation split and the batch order."""
    device: str = "auto"
    """'auto' (CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N'."""
    num_threads: int | None = None
    """torch CPU threads for this process (None leaves torch's default)."""
    log_every: int = 20
    """Steps between TensorBoard scalars and metrics rows."""
    eval_every: int = 200
    """Steps between validation passes (also at the end)."""
    ckpt_every: int = 500
    """Steps between checkpoints (one is also written at the end)."""
    keep_last: int = 2
    """Checkpoints kept in the run folder."""
    resume: bool = True
    """Continue from the newest checkpoint in the run folder; False refuses a folder that has checkpoints."""
    progress: bool = True
    """Show a tqdm progress bar."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "eval_every", "ckpt_every", "keep_last"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"BCConfig.{name} must be a positive int, got {value!r}")
        if self.loss not in ("mse", "nll"):
            raise ValueError(f"BCConfig.loss must be 'mse' or 'nll', got {self.loss!r}")
        if self.lr <= 0 or not 0.0 <= self.min_lr_ratio <= 1.0 or self.warmup_steps < 0:
            raise ValueError(f"BCConfig: need lr > 0, 0 <= min_lr_ratio <= 1, warmup_steps >= 0; got {self.lr}, "
                             f"{self.min_lr_ratio}, {self.warmup_steps}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"BCConfig.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.shift_augment_pixels < 0:
            raise ValueError(f"BCConfig.shift_augment_pixels must be >= 0, got {self.shift_augment_pixels}")
        if not self.sources:
            raise ValueError("BCConfig.sources must name at least one source (expert, perturbed, random)")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BCConfig:
        """Rebuild from `dataclasses.asdict` output (nested policy dict included)."""
        values = dict(values)
        values["policy"] = PolicyConfig.from_dict(values["policy"])
        values["sources"] = tuple(values["sources"])
        if values.get("tasks") is not None:
            values["tasks"] = tuple(values["tasks"])
        return cls(**values)


BC_RUNTIME_FIELDS = ("device", "num_threads", "log_every", "eval_every", "ckpt_every", "keep_last", "resume",
                     "progress")
"""BCConfig fields that may differ between the calls of one run."""


def resume_relevant(config: PPOConfig | BCConfig) -> dict[str, Any]:
    """The part of a trainer config (plain dict) that a resumed run must share with its checkpoint."""
    runtime = PPO_RUNTIME_FIELDS if isinstance(config, PPOConfig) else BC_RUNTIME_FIELDS
    values = dataclasses.asdict(config)
    for name in runtime:
        values.pop(name)
    return values
