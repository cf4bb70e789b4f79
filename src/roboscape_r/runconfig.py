"""How a training run executes, shared by the tokenizer's and the world models' train configs.

These fields may change between the calls of one run (a run resumed on another device, with
more threads or a longer time limit continues the same training); every other field of a train
config must match the checkpoint to resume.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunOptions:
    """Execution options of a training run (not part of what is trained)."""

    device: str = "auto"
    """'auto' (CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N' (DDP uses cuda:LOCAL_RANK)."""
    num_threads: int | None = None
    """torch CPU threads for this process (None leaves torch's default)."""
    num_workers: int = 0
    """DataLoader worker processes (0 loads in the main process)."""
    bf16: bool = False
    """bf16 autocast for the forward pass. Off by default: on some CPUs bf16 is 100x slower than
    fp32; turn it on only after measuring (bench/RESULTS.md has GPU numbers per model)."""
    log_every: int = 10
    """Steps between TensorBoard scalars (and non-finite loss checks)."""
    ckpt_every: int = 200
    """Steps between checkpoints (one is also written at the end of every call)."""
    keep_last: int = 3
    """Step checkpoints kept in the run folder."""
    run_steps: int | None = None
    """Train at most this many steps in this call, then checkpoint and return; call again to resume."""
    time_limit_s: float | None = None
    """Stop this call after this many seconds of training, checkpoint and return; call again to resume."""
    resume: bool = True
    """Continue from the newest checkpoint in the run folder; False refuses a folder that has checkpoints."""
    progress: bool = True
    """Show a tqdm progress bar."""


RUNTIME_FIELDS = tuple(f.name for f in dataclasses.fields(RunOptions))
"""Fields that may change between the calls of one run (everything else must match to resume)."""


def resume_relevant(config: Any) -> dict[str, Any]:
    """The part of a train config (as a plain dict) that a resumed run must share with its checkpoint."""
    values = dataclasses.asdict(config)
    for name in RUNTIME_FIELDS:
        values.pop(name)
    return values
