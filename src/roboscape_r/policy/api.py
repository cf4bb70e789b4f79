"""The policy protocol evaluation code relies on: `load_policy(path)` -> `Policy` with `act()`.

    policy = load_policy("runs/ppo/checkpoints")          # a checkpoint file or a run folder
    actions = policy.act(frames_uint8, ["pick up the red cube"] * len(frames_uint8))   # float32 (B, 7)

Actions are deterministic (the clipped Gaussian mean). Instructions are embedded with the
text encoder the policy was trained with (`PolicyConfig.text_encoder`, MiniLM by default),
built on the first call that needs it and cached per string.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from roboscape_r.policy.checkpoint import actor_critic_from_checkpoint, read_policy_checkpoint
from roboscape_r.policy.network import ActorCritic, PolicyConfig


class Policy:
    """A trained policy for evaluation: frames + instruction strings -> actions."""

    def __init__(self, model: ActorCritic, *, text_encoder: Any = None, device: str | torch.device = "cpu",
                 source: Path | None = None, trainer: str | None = None, step: int | None = None) -> None:
        """Wrap a network (use `load_policy` to get one from a checkpoint).

        Args:
            model: the actor-critic.
            text_encoder: a `roboscape_r.worldmodel.text_encoder.TextEncoder` (anything with
                `encode(list[str]) -> (N, dim)` and `dim`); None builds `config.text_encoder` lazily.
            device: where the network runs.
            source, trainer, step: where the policy came from (for reports).
        """
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.config: PolicyConfig = model.config
        self.source = source
        self.trainer = trainer
        self.step = step
        self._text_encoder = text_encoder
        if text_encoder is not None:
            self._check_encoder(text_encoder)

    @property
    def action_dim(self) -> int:
        """Size of an action."""
        return self.config.action_dim

    @property
    def image_size(self) -> int:
        """Height and width of the frames `act` takes."""
        return self.config.image_size

    @property
    def text_encoder(self) -> Any:
        """The instruction encoder (built on first use)."""
        if self._text_encoder is None:
            from roboscape_r.worldmodel.text_encoder import make_text_encoder

            self._text_encoder = make_text_encoder(self.config.text_encoder)
            self._check_encoder(self._text_encoder)
        return self._text_encoder

    def _check_encoder(self, encoder: Any) -> None:
        if int(encoder.dim) != self.config.instruction_dim:
            raise ValueError(f"the text encoder gives {encoder.dim}-d embeddings but the policy takes "
                             f"{self.config.instruction_dim}-d ones (PolicyConfig.instruction_dim); pass the encoder "
                             f"it was trained with ({self.config.text_encoder!r})")

    def act(self, frames_uint8: np.ndarray | torch.Tensor, instructions: Sequence[str]) -> np.ndarray:
        """Deterministic actions for a batch of frames and their instructions.

        Args:
            frames_uint8: uint8 (B, S, S, 3) channel-last, S = image_size (numpy or torch).
            instructions: B strings, one per frame.

        Returns:
            float32 (B, action_dim) numpy array in [-1, 1].

        Raises:
            TypeError: frames are neither a numpy array nor a tensor, or instructions are not strings.
            ValueError: wrong dtype or shape, or a number of instructions other than B.
        """
        frames = self._check_frames(frames_uint8)
        if isinstance(instructions, str) or not isinstance(instructions, Sequence):
            raise TypeError(f"instructions must be a sequence of B strings, got {type(instructions).__name__}; "
                            "wrap a single instruction in a list")
        if len(instructions) != frames.shape[0]:
            raise ValueError(f"got {frames.shape[0]} frames but {len(instructions)} instructions; pass one per frame")
        embeddings = self.text_encoder.encode(list(instructions))
        return self.act_embedded(frames, embeddings)

    def act_embedded(self, frames_uint8: np.ndarray | torch.Tensor,
                     instruction_embeddings: np.ndarray | torch.Tensor) -> np.ndarray:
        """Like `act`, with instruction embeddings float (B, instruction_dim) instead of strings
        (the observation dict of the policy-facing envs carries them)."""
        frames = self._check_frames(frames_uint8)
        embeddings = torch.as_tensor(instruction_embeddings)
        expected = (frames.shape[0], self.config.instruction_dim)
        if not embeddings.dtype.is_floating_point or tuple(embeddings.shape) != expected:
            raise ValueError(f"instruction embeddings must be float {expected}, got {embeddings.dtype} "
                             f"{tuple(embeddings.shape)}")
        with torch.inference_mode():
            frames = frames.to(self.device)
            actions = self.model.deterministic_action(self.model.prepare_frames(frames),
                                                      embeddings.to(self.device, torch.float32))
        return actions.cpu().numpy().astype(np.float32, copy=False)

    def _check_frames(self, frames_uint8: Any) -> torch.Tensor:
        size = self.config.image_size
        expected = f"uint8 frames (B, {size}, {size}, 3) channel-last"
        if isinstance(frames_uint8, np.ndarray):
            frames = torch.from_numpy(np.ascontiguousarray(frames_uint8))
        elif isinstance(frames_uint8, torch.Tensor):
            frames = frames_uint8
        else:
            raise TypeError(f"expected {expected} as a numpy array or torch tensor, got {type(frames_uint8).__name__}")
        if frames.dtype != torch.uint8:
            raise ValueError(f"expected {expected}, got dtype {frames.dtype}; convert float images in [0, 1] with "
                             "(images * 255).round() cast to uint8")
        shape = tuple(frames.shape)
        if len(shape) == 3:
            raise ValueError(f"expected {expected}, got shape {shape}; add a batch dimension with frames[None]")
        if len(shape) != 4 or shape[1:] != (size, size, 3):
            hint = "; it looks channel-first: transpose to (B, H, W, 3)" if len(shape) == 4 and shape[1] == 3 else ""
            raise ValueError(f"expected {expected}, got shape {shape}{hint}; the policy was trained on "
                             f"{size}x{size} frames")
        if shape[0] == 0:
            raise ValueError(f"expected {expected} with B >= 1, got an empty batch")
        return frames


def load_policy(path: str | Path, *, device: str | torch.device = "cpu", text_encoder: Any = None) -> Policy:
    """Load a policy written by `train_bc` or `train_ppo`, or a router of one policy per task.

    Args:
        path: a policy checkpoint file, or a run folder (its newest checkpoint, also under checkpoints/);
            or a router file (`roboscape_r.policy.router`), or a folder holding one as router.json:
            then a `TaskRouter` with the same `act` is returned.
        device: where the network runs.
        text_encoder: instruction encoder to use instead of building `PolicyConfig.text_encoder`
            (e.g. a `PrecomputedTextEncoder` on a machine without the sentence encoder).

    Returns:
        Policy in eval mode.

    Raises:
        roboscape_r.checkpoint.CheckpointError: missing, truncated or corrupt file, a checkpoint of
            another kind (tokenizer, world model), or weights that do not fit the stored config.
    """
    from roboscape_r.policy.router import load_router, router_path

    if router_path(path) is not None:
        return load_router(path, device=device, text_encoder=text_encoder)
    ckpt = read_policy_checkpoint(path)
    model = actor_critic_from_checkpoint(ckpt)
    return Policy(model, text_encoder=text_encoder, device=device, source=Path(ckpt["path"]),
                  trainer=ckpt["config"].get("trainer"), step=int(ckpt["step"]))
