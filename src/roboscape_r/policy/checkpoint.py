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

import hashlib
from pathlib import Path
from typing import Any

import torch

from roboscape_r.checkpoint import CheckpointError, checkpoint_path, load_checkpoint, save_checkpoint
from roboscape_r.data.format import sha256_file
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


SLIM_KIND = "policy-slim"
"""`kind` of a policy file without its frozen tokenizer and optimizer (`write_slim_policy`)."""
SLIM_NAME = "policy.slim.pt"
"""File name of a run folder's slim copy of its final policy."""
RESUME_SLIM_NAME = "resume.slim.pt"
"""File name of the slim copy of a run folder's newest training checkpoint, with the optimizer,
RNG and trainer state kept (`write_slim_policy(..., training_state=True)`): what an interrupted
training resumes from on another machine."""
TOKENIZER_PREFIX = "preprocessor.tokenizer."


def weights_digest(state: dict[str, Any]) -> str:
    """SHA-256 over a state dict's names, dtypes, shapes and values (key order ignored): the same
    for two files holding the same weights, whatever else they hold (optimizer, step, extra)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        else:
            digest.update(f"{key}|{value!r}|".encode())
    return digest.hexdigest()


def write_slim_policy(source: str | Path, out: str | Path, tokenizer_path: str | Path | None, *,
                      training_state: bool = False) -> Path:
    """Write `out`: the policy of checkpoint `source` (file or run folder) without the frozen
    tokenizer's weights and without optimizer state, a few MB instead of tens. That is small enough
    to commit, so that a run folder's policies survive the machine; `restore_slim_policy` puts the
    tokenizer back from `tokenizer_path` and gives the same weights. With `training_state` the
    optimizer, scheduler, RNG and trainer state (`extra`) are kept too (about 8 MB for the small
    preset's policy), so that the rebuilt checkpoint resumes the training as the original would.

    Raises:
        roboscape_r.checkpoint.CheckpointError: `source` is not a policy checkpoint, or its tokenizer
            weights differ from those in `tokenizer_path` (the slim file could not be restored).
    """
    ckpt = read_policy_checkpoint(source)
    model = {k: v for k, v in ckpt["model"].items() if not k.startswith(TOKENIZER_PREFIX)}
    tokenizer_sha = None
    if len(model) < len(ckpt["model"]):
        if tokenizer_path is None:
            raise CheckpointError(f"policy {ckpt['path']} holds a tokenizer: give the tokenizer checkpoint it was trained with")
        tokenizer = _tokenizer_state(tokenizer_path)
        kept = {k[len(TOKENIZER_PREFIX):]: v for k, v in ckpt["model"].items() if k.startswith(TOKENIZER_PREFIX)}
        if weights_digest(kept) != weights_digest(tokenizer):
            raise CheckpointError(f"the tokenizer inside policy {ckpt['path']} differs from {tokenizer_path}; "
                                  "give the tokenizer checkpoint the policy was trained with")
        tokenizer_sha = sha256_file(Path(tokenizer_path))
    extra = {"tokenizer_sha256": tokenizer_sha, "weights_sha256": weights_digest(ckpt["model"]),
             "source": Path(ckpt["path"]).name}
    if training_state:
        extra.update(training_extra=ckpt.get("extra") or {}, training_rng=ckpt["rng"])
    return save_checkpoint(out, kind=SLIM_KIND, config=ckpt["config"], model_state=model, step=int(ckpt["step"]),
                           optimizer_state=ckpt.get("optimizer") if training_state else None,
                           scheduler_state=ckpt.get("scheduler") if training_state else None, extra=extra)


def restore_slim_policy(slim: str | Path, tokenizer_path: str | Path | None, run_dir: str | Path) -> Path:
    """Rebuild the full policy checkpoint of a `write_slim_policy` file into `run_dir/checkpoints/`
    (its original step number) and return its path; the weights are checked against the digest
    of the original. A slim copy with training state gives back the optimizer, scheduler, RNG and
    trainer state as well.

    Raises:
        roboscape_r.checkpoint.CheckpointError: `slim` is missing or corrupt, or `tokenizer_path` is
            not the tokenizer file the policy was trained with (the message names both).
    """
    ckpt = load_checkpoint(slim, expected_kind=SLIM_KIND)
    extra = ckpt.get("extra") or {}
    model = dict(ckpt["model"])
    if extra.get("tokenizer_sha256") is not None:
        if tokenizer_path is None or not Path(tokenizer_path).is_file():
            raise CheckpointError(f"slim policy {slim} needs its tokenizer checkpoint; {tokenizer_path} is not a file")
        found = sha256_file(Path(tokenizer_path))
        if found != extra["tokenizer_sha256"]:
            raise CheckpointError(f"slim policy {slim} was written with a tokenizer of SHA-256 "
                                  f"{extra['tokenizer_sha256'][:16]}..., but {tokenizer_path} has {found[:16]}...; "
                                  "restore it with the tokenizer checkpoint the policy was trained with")
        model.update({TOKENIZER_PREFIX + k: v for k, v in _tokenizer_state(tokenizer_path).items()})
    if weights_digest(model) != extra.get("weights_sha256"):
        raise CheckpointError(f"slim policy {slim}: the rebuilt weights differ from the original policy's; "
                              "the file is inconsistent: retrain the policy")
    actor_critic_from_checkpoint({"config": ckpt["config"], "model": model, "path": slim})  # the architecture fits
    # Without training state the slim file holds no optimizer or scheduler, and the RNG is this process's.
    return save_checkpoint(checkpoint_path(Path(run_dir) / "checkpoints", int(ckpt["step"])), kind=POLICY_KIND,
                           config=ckpt["config"], model_state=model, optimizer_state=ckpt.get("optimizer"),
                           scheduler_state=ckpt.get("scheduler"), step=int(ckpt["step"]), rng=extra.get("training_rng"),
                           extra={**extra.get("training_extra", {}), "restored_from": str(Path(slim).name)})


def _tokenizer_state(path: str | Path) -> dict[str, Any]:
    return load_checkpoint(path, expected_kind="tokenizer")["model"]
