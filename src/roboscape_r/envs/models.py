"""Load the tokenizer, WM_act and WM_txt of a world-model env, and check that they fit together.

A tokenizer, a WM_act and a WM_txt from different training runs load without complaint but
produce garbage (token ids mean different images), so every mismatch that can be seen from
the configs is refused here with the file names and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from roboscape_r.checkpoint import CheckpointError
from roboscape_r.worldmodel.world_model import WorldModel

if TYPE_CHECKING:
    from roboscape_r.envs.world_model import WorldModelEnvConfig

ACTION_DIM = 7
"""Actions of every policy-facing env: ManiSkill's pd_ee_delta_pose, 7-D in [-1, 1]."""

_TRAIN_HINT = {
    "tokenizer_path": "train one with `roboscape train-tokenizer`",
    "wm_act_path": "train one with `roboscape train-wm --train.kind act`",
    "wm_txt_path": "train one with `roboscape train-wm --train.kind txt`, or use a reward that needs no golden "
                   "trajectory",
}


def resolve_device(device: str) -> torch.device:
    """torch.device for "cpu", "cuda", "cuda:N" or "auto" (CUDA when available)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use device='cpu'")
    return resolved


@dataclass(frozen=True)
class WorldModelComponents:
    """The models a world-model env runs (already on their device, in eval mode)."""

    tokenizer: Any
    """Frame tokenizer: encode uint8 (B, H, W, 3) -> long (B, h, w), decode back; has image_size,
    grid_size and codebook_size (as `roboscape_r.tokenizer.Tokenizer`)."""
    wm_act: WorldModel
    """Action-conditioned world model (cond "act")."""
    wm_txt: WorldModel | None = None
    """Instruction-conditioned world model (cond "txt"); needed only by rewards with a golden trajectory."""

    def check(self, *, text_dim: int, needs_txt: bool, config: WorldModelEnvConfig) -> None:
        """Raise ValueError unless the models share the tokenizer's grid and codebook, WM_act takes
        7-D actions and WM_txt (when needed) takes `text_dim`-d instruction embeddings."""
        grid = _attribute(self.tokenizer, "grid_size")
        codebook = _attribute(self.tokenizer, "codebook_size")
        models = [("wm_act_path", self.wm_act, "act")]
        if needs_txt:
            if self.wm_txt is None:
                raise ValueError(f"reward {config.reward!r} needs a golden trajectory but no WM_txt was given; "
                                 f"pass wm_txt (or a checkpoint as wm_txt_path={str(config.wm_txt_path)!r})")
            models.append(("wm_txt_path", self.wm_txt, "txt"))
        for name, model, cond in models:
            path = getattr(config, name)
            cfg = model.config
            if cfg.cond != cond:
                raise ValueError(f"{name}={str(path)!r} is a WM_{cfg.cond} model, but WM_{cond} is expected there")
            if grid is not None and (cfg.grid_h, cfg.grid_w) != (grid, grid):
                raise ValueError(
                    f"{name}={str(path)!r} expects {cfg.grid_h}x{cfg.grid_w} token grids but the tokenizer "
                    f"{str(config.tokenizer_path)!r} makes {grid}x{grid}; use the tokenizer the world model was "
                    "trained with"
                )
            if codebook is not None and cfg.codebook_size != codebook:
                raise ValueError(
                    f"{name}={str(path)!r} has a {cfg.codebook_size}-token vocabulary but the tokenizer "
                    f"{str(config.tokenizer_path)!r} has {codebook} codes; use the tokenizer the world model was "
                    "trained with"
                )
        if self.wm_act.config.action_dim != ACTION_DIM:
            raise ValueError(f"wm_act_path={str(config.wm_act_path)!r} takes {self.wm_act.config.action_dim}-D "
                             f"actions, but the env's action space is {ACTION_DIM}-D pd_ee_delta_pose")
        if needs_txt and self.wm_txt.config.text_dim != text_dim:
            raise ValueError(
                f"wm_txt_path={str(config.wm_txt_path)!r} takes {self.wm_txt.config.text_dim}-d instruction "
                f"embeddings but the text encoder makes {text_dim}-d ones; use the encoder WM_txt was trained with "
                "(WorldModelEnvConfig.text_encoder)"
            )

    def check_frames(self, image_size: tuple[int, int], dataset: Path) -> None:
        """Raise ValueError unless the dataset's (H, W) frames are the tokenizer's size."""
        size = _attribute(self.tokenizer, "image_size")
        if size is not None and tuple(image_size) != (size, size):
            raise ValueError(f"dataset {str(dataset)!r} has {image_size[0]}x{image_size[1]} frames but the tokenizer "
                             f"takes {size}x{size}; use a dataset recorded at the tokenizer's image size")


def load_env_tokenizer(config: WorldModelEnvConfig, device: torch.device) -> Any:
    """The tokenizer of `config.tokenizer_path`, frozen, on `device`.

    Raises:
        CheckpointError: missing, corrupt or not a tokenizer (names the field, file and fix).
    """
    from roboscape_r.tokenizer.model import load_tokenizer

    try:
        tokenizer = load_tokenizer(config.tokenizer_path, map_location=device)
    except CheckpointError as error:
        raise CheckpointError(f"tokenizer_path: {error}; {_TRAIN_HINT['tokenizer_path']}") from error
    return tokenizer.eval().requires_grad_(False)


def load_env_world_model(config: WorldModelEnvConfig, kind: str, device: torch.device) -> WorldModel:
    """WM_act (kind "act") or WM_txt ("txt") from the config's checkpoint path, frozen, on `device`.

    Raises:
        CheckpointError: missing, corrupt or the other kind (names the field, file and fix).
    """
    from roboscape_r.worldmodel.train import load_world_model

    name = f"wm_{kind}_path"
    try:
        model = load_world_model(getattr(config, name), kind, map_location=device)
    except CheckpointError as error:
        raise CheckpointError(f"{name}: {error}; {_TRAIN_HINT[name]}") from error
    return model.eval().requires_grad_(False)


def _attribute(obj: Any, name: str) -> Any:
    if hasattr(obj, name):
        return getattr(obj, name)
    return getattr(getattr(obj, "config", None), name, None)
