"""Run plumbing shared by the policy trainers: seeding, devices, the metrics file, the NaN error."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from roboscape_r.atomic import atomic_write_bytes
from roboscape_r.tokenizer.train import resolve_device

__all__ = ["NonFiniteError", "append_metrics", "resolve_device", "seed_everything", "truncate_metrics"]


class NonFiniteError(RuntimeError):
    """A reward, an action or a loss became NaN/inf during policy training."""


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def append_metrics(path: Path, row: dict[str, Any]) -> dict[str, Any]:
    """Append `row` as one JSON line to `path` and return it; NaN values become null (NaN is not JSON)."""
    row = {key: None if isinstance(value, float) and math.isnan(value) else value for key, value in row.items()}
    with open(path, "a") as handle:
        handle.write(json.dumps(row) + "\n")
    return row


def truncate_metrics(path: Path, key: str, last: int) -> None:
    """Keep only the rows of the JSONL file `path` whose `key` is <= `last` (rewritten atomically).

    A resumed run calls this first: rows written after its checkpoint (a crash between the
    two) would otherwise appear twice; a line cut off by a crash is dropped too.
    """
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and row.get(key, math.inf) <= last:
            kept.append(line)
    atomic_write_bytes(path, "".join(line + "\n" for line in kept).encode())
