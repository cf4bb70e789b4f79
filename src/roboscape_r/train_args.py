"""Arguments of the `roboscape train-tokenizer` and `roboscape train-wm` commands.

Kept out of `cli.py` so that the light commands (collect, data) do not import torch models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from roboscape_r.tokenizer.config import TokenizerTrainConfig
from roboscape_r.worldmodel.config import WMTrainConfig


@dataclass(frozen=True)
class TrainTokenizerArgs:
    """Train the LFQ tokenizer on every frame of a dataset's training split (resumes from --out)."""

    data: Path = Path("data/train")
    """Dataset folder written by `roboscape collect`."""
    out: Path = Path("runs/tokenizer")
    """Run folder: config, TensorBoard logs, checkpoints."""
    train: TokenizerTrainConfig = field(default_factory=TokenizerTrainConfig)
    """Training options."""


@dataclass(frozen=True)
class TrainWMArgs:
    """Train a world model on tokenised episodes of a dataset's training split (resumes from --out)."""

    data: Path = Path("data/train")
    """Dataset folder written by `roboscape collect`."""
    extra_data: tuple[Path, ...] = ()
    """More dataset folders (e.g. a later collection with another seed) whose training splits
    join --data's."""
    tokenizer: Path = Path("checkpoints/small/tokenizer.pt")
    """Tokenizer checkpoint (file or run folder)."""
    out: Path = Path("runs/wm_act")
    """Run folder: config, TensorBoard logs, checkpoints, token cache."""
    train: WMTrainConfig = field(default_factory=WMTrainConfig)
    """Training options (--train.kind act|txt)."""
