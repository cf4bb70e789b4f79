"""Policy checkpoints: one `kind="policy"` file layout shared by BC and PPO.

The stored config is a dict

    {"trainer": "bc" | "ppo", "policy": PolicyConfig dict, "tokenizer": TokenizerConfig dict | None,
     "train": the trainer's config dict, ...}

and the model state holds the whole `ActorCritic`, including the frozen tokenizer of a
`frame_preprocess="tokenizer"` policy, so a policy is rebuilt from its file alone (the
`tokenizer_path` it was trained with is kept only as a record). A BC checkpoint is therefore a
valid `bc_init` for PPO and a valid argument of `load_policy`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from roboscape_r.checkpoint import CheckpointError, load_checkpoint
from roboscape_r.policy.network import ActorCritic, PolicyConfig
from roboscape_r.policy.preprocess import preprocessor_from_config, preprocessor_from_path

POLICY_KIND = "policy"
"""`kind` of every policy checkpoint."""


def build_actor_critic(config: PolicyConfig) -> ActorCritic:
    """A freshly initialised network for `config`; loads the tokenizer from `config.tokenizer_path`
    when `config.frame_preprocess == "tokenizer"`.

    Raises:
        roboscape_r.checkpoint.CheckpointError: the tokenizer checkpoint is missing or corrupt.
        ValueError: the tokenizer's image size differs from `config.image_size`.
    """
    path = config.tokenizer_path if config.frame_preprocess == "tokenizer" else None
    return ActorCritic(config, preprocessor_from_path(path, config.image_size))


def policy_checkpoint_config(trainer: str, model: ActorCritic, train_config: dict[str, Any],
                             **more: Any) -> dict[str, Any]:
    """The `config` dict of a policy checkpoint (see the module docstring)."""
    return {"trainer": trainer, "policy": model.config.to_dict(),
            "tokenizer": model.preprocessor.tokenizer_config(), "train": train_config, **more}


def read_policy_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a policy checkpoint (file, or run folder: its newest) and check its layout.

    Raises:
        roboscape_r.checkpoint.CheckpointError: missing, truncated or corrupt file, a checkpoint of
            another kind (e.g. a tokenizer), or a policy config that does not parse.
    """
    ckpt = load_checkpoint(path, expected_kind=POLICY_KIND, map_location=map_location)
    config = ckpt["config"]
    if not isinstance(config, dict) or not isinstance(config.get("policy"), dict):
        raise CheckpointError(
            f"policy checkpoint {ckpt['path']} has no 'policy' config; it was not written by train_bc/train_ppo"
        )
    try:
        PolicyConfig.from_dict(config["policy"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"policy checkpoint {ckpt['path']} holds a PolicyConfig this code cannot rebuild ({error}); load it with "
            "the roboscape-r version that wrote it, or retrain"
        ) from error
    return ckpt


def actor_critic_from_checkpoint(ckpt: dict[str, Any]) -> ActorCritic:
    """Rebuild the network of a checkpoint dict from `read_policy_checkpoint`, weights loaded, in eval mode.

    Raises:
        roboscape_r.checkpoint.CheckpointError: the weights do not fit the stored architecture.
    """
    config = PolicyConfig.from_dict(ckpt["config"]["policy"])
    model = ActorCritic(config, preprocessor_from_config(ckpt["config"].get("tokenizer"), config.image_size))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as error:
        raise CheckpointError(
            f"policy checkpoint {ckpt.get('path')} has weights that do not fit its PolicyConfig ({str(error)[:300]}); "
            "the file is inconsistent: retrain or use another checkpoint"
        ) from error
    return model.eval()
