"""Atomic, versioned checkpoints shared by the tokenizer, the world models and the policy.

A checkpoint is one `torch.save`d dict (see `save_checkpoint`) that holds everything needed
to rebuild a model (`kind`, `config`) and to resume its training exactly (optimizer,
scheduler, step, RNG states). Files are written to a temporary file in the same folder,
fsync'd and renamed over the target, so a crash never leaves a half-written checkpoint under
the real name (DIAMOND's `save_with_backup`, without the backup copy).

Training loops name their files `ckpt_{step:08d}.pt` (`checkpoint_path`) in one folder;
`latest_checkpoint` finds the newest and `keep_last` prunes the oldest.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from roboscape_r.atomic import atomic_path

FORMAT_VERSION = 1
"""Bumped whenever the layout of the saved dict changes; older files are refused."""

CKPT_PATTERN = re.compile(r"^ckpt_(\d{8})\.pt$")
"""File names of step checkpoints: `ckpt_00001234.pt`."""

_REQUIRED_KEYS = ("format_version", "kind", "config", "step", "model")


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit what the caller expects."""


def checkpoint_path(directory: str | Path, step: int) -> Path:
    """Return `directory / f"ckpt_{step:08d}.pt"`, the name `latest_checkpoint` looks for."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return Path(directory) / f"ckpt_{step:08d}.pt"


def step_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """List the `ckpt_NNNNNNNN.pt` files in `directory` as (step, path), oldest first.

    A missing folder gives an empty list; other files (temporaries, logs) are ignored.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        match = CKPT_PATTERN.match(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """Return the path of the highest-step `ckpt_NNNNNNNN.pt` in `directory` (or in its
    `checkpoints/` subfolder, where run folders keep them), or None if there is none."""
    found = step_checkpoints(directory) or step_checkpoints(Path(directory) / "checkpoints")
    return found[-1][1] if found else None


def prune_checkpoints(directory: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the `keep_last` highest-step checkpoints in `directory`; return the deleted paths."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    found = step_checkpoints(directory)
    doomed = [path for _, path in found[:-keep_last]]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def rng_state() -> dict[str, Any]:
    """Capture the torch (CPU and CUDA), numpy and Python RNG states as plain, loadable values.

    numpy's key array is stored as a tensor so that the checkpoint loads with
    `torch.load(weights_only=True)` (no arbitrary pickles).
    """
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (np_name, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(ckpt: dict[str, Any]) -> None:
    """Restore the RNG states stored by `save_checkpoint` in `ckpt` (a dict from `load_checkpoint`).

    CUDA states are restored only when CUDA is available and the checkpoint has as many
    devices' states as there are devices; otherwise they are skipped (e.g. resuming a GPU
    run on the CPU).

    Raises:
        CheckpointError: if `ckpt` has no "rng" entry.
    """
    if "rng" not in ckpt:
        raise CheckpointError("checkpoint dict has no 'rng' entry; was it written by save_checkpoint?")
    state = ckpt["rng"]
    # States may have been loaded onto a GPU with map_location; RNG setters want CPU byte tensors.
    torch.set_rng_state(state["torch"].cpu())
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.cpu().numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    python_state = state["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    cuda_states = state.get("torch_cuda")
    if cuda_states is not None and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state dict (names, dtypes, shapes and values): ties a spatial head to
    its backbone, a token pack to its tokenizer, a cache to the model that computed it."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def save_checkpoint(
    path: str | Path,
    *,
    kind: str,
    config: dict[str, Any],
    model_state: dict[str, Any],
    optimizer_state: dict[str, Any] | None = None,
    scheduler_state: dict[str, Any] | None = None,
    step: int,
    extra: dict[str, Any] | None = None,
    keep_last: int | None = None,
    rng: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically to `path` and return the path.

    Args:
        path: target file; its folder is created if needed.
        kind: what model this is ("tokenizer", "wm_act", "wm_txt", "policy", ...).
        config: the plain dict (e.g. `dataclasses.asdict(cfg)`) the model is rebuilt from.
        model_state, optimizer_state, scheduler_state: `state_dict()`s (the last two optional).
        step: training step the states belong to.
        extra: further plain values or tensors to keep (e.g. data position, EMA weights).
        keep_last: if given, afterwards delete all but this many newest `ckpt_NNNNNNNN.pt`
            files in the same folder.
        rng: the RNG states to store (as `rng_state()` gives them); default this process's now.
            Only a copy of another checkpoint passes its own.

    The file holds: format_version, kind, config, step, model, optimizer, scheduler, extra,
    rng (torch/numpy/python states) and torch_version. Only tensors and plain Python values
    are stored, so `load_checkpoint` can read it with `weights_only=True`.

    Raises:
        TypeError: if `config` is not a dict.
    """
    if not isinstance(config, dict):
        raise TypeError(f"config must be a plain dict (use dataclasses.asdict), got {type(config).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": config,
        "step": int(step),
        "model": model_state,
        "optimizer": optimizer_state,
        "scheduler": scheduler_state,
        "extra": extra or {},
        "rng": rng_state() if rng is None else rng,
        "torch_version": str(torch.__version__),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    if keep_last is not None:
        prune_checkpoints(path.parent, keep_last)
    return path


def load_checkpoint(
    path: str | Path,
    *,
    expected_kind: str,
    expected_config: dict[str, Any] | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` and check it is the one the caller wants.

    Args:
        path: a checkpoint file, or a folder (then its newest `ckpt_NNNNNNNN.pt` is read).
        expected_kind: the `kind` the file must hold, e.g. "tokenizer".
        expected_config: values the stored config must match; nested dicts are compared key
            by key ("model.grid_size"); keys it does not name are not checked.
        map_location: where tensors are loaded (default "cpu").

    Returns:
        The saved dict (keys as listed in `save_checkpoint`, plus "path").

    Raises:
        CheckpointError: missing file or empty folder, truncated or corrupt file, wrong
            format version, wrong kind, or config mismatch; the message names the file and
            what to do.
    """
    path = Path(path)
    if path.is_dir():
        newest = latest_checkpoint(path)
        if newest is None:
            raise CheckpointError(
                f"folder {path} holds no ckpt_NNNNNNNN.pt checkpoint; pass a checkpoint file, "
                "or train first so that one is written there"
            )
        path = newest
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; check the path (a run folder also works: its newest "
            "ckpt_NNNNNNNN.pt is used) or train first"
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for bad files
        if "Unsupported global" in str(error):
            raise CheckpointError(
                f"checkpoint {path} holds objects other than tensors and plain Python values, which "
                f"load_checkpoint refuses to unpickle ({_first_line(error)}); save only state_dicts, "
                "plain dicts/lists/numbers/strings and tensors"
            ) from error
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(error).__name__}: {_first_line(error)}); "
            "delete it and use an earlier checkpoint in the same folder (latest_checkpoint picks the "
            "newest left) or retrain"
        ) from error
    if not isinstance(ckpt, dict) or any(key not in ckpt for key in _REQUIRED_KEYS):
        raise CheckpointError(
            f"checkpoint {path} is not a roboscape-r checkpoint (expected a dict with keys "
            f"{list(_REQUIRED_KEYS)}); it was not written by roboscape_r.checkpoint.save_checkpoint"
        )
    if ckpt["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {ckpt['format_version']} but this code reads version "
            f"{FORMAT_VERSION}; load it with the roboscape-r version that wrote it, or retrain"
        )
    if ckpt["kind"] != expected_kind:
        raise CheckpointError(
            f"checkpoint {path} holds a {ckpt['kind']!r} model but a {expected_kind!r} was expected; "
            f"pass the path of a {expected_kind!r} checkpoint"
        )
    if expected_config is not None:
        differences = config_differences(ckpt["config"], expected_config)
        if differences:
            listed = "; ".join(differences)
            raise CheckpointError(
                f"checkpoint {path} was written with a different config ({listed}); use the config the "
                "checkpoint was written with, or start a new run folder"
            )
    ckpt["path"] = path
    return ckpt


def config_differences(stored: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """Describe each key of `expected` whose value differs in `stored` (nested keys dotted).

    Tuples and lists compare equal when their items do (a config may pass through JSON).
    """
    stored_flat = _flatten(stored)
    missing = object()
    differences = []
    for key, want in _flatten(expected).items():
        have = stored_flat.get(key, missing)
        if have is missing:
            differences.append(f"{key!r}: absent in checkpoint, expected {want!r}")
        elif _normalise(have) != _normalise(want):
            differences.append(f"{key!r}: checkpoint {have!r}, expected {want!r}")
    return differences


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _normalise(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_normalise(item) for item in value]
    return value


def _first_line(error: BaseException) -> str:
    # torch's weights-only message is a page long; the useful part follows "WeightsUnpickler error:".
    text = str(error)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
        text = text.split(". Please use", 1)[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__



def export_weights(source: str | Path, destination: str | Path, *, expected_kind: str) -> Path:
    """Write a weights-only copy of a training checkpoint (no optimizer, scheduler or extras).

    Shipped checkpoints use this: a few MB instead of the ~3x larger resumable training file.
    Loading is unchanged (`load_checkpoint` / `load_tokenizer` / `load_world_model`).
    """
    ckpt = load_checkpoint(source, expected_kind=expected_kind)
    return save_checkpoint(destination, kind=ckpt["kind"], config=ckpt["config"], model_state=ckpt["model"],
                           step=ckpt["step"])
