"""Copy the small result files of an experiment run folder into another folder (to commit them).

A run folder holds policy checkpoints and videos (tens of MB per cell); the report needs far
less. This copies what `roboscape report` reads, except videos, so that the results of finished
cells survive the machine:

    experiment.json; cells/<method>/seed<k>/cell.json, train/{metrics.jsonl, env.json, router.json},
    eval/results.json; reward_check/{reward_check.json,.png}, wm_eval/metrics.json and the
    stage.json beside each (what made them: a resumed run keeps them); and of each cell's
    frame strips, the first of each split in its video list (the ones the report would show)

and what later work resumes from: the slim copy (`policy.slim.pt`: the policy without its frozen
tokenizer, a few MB) of every BC policy, which the PPO cells of its seed start from, and, for a
cell trained but not yet evaluated, its policies' slim copies and its evaluation's journal of
finished episodes, and for a cell whose training is under way, a slim copy of each of its runs'
newest training checkpoint with the optimizer, RNG and trainer state (`resume.slim.pt`, about 8 MB;
written here, not copied). They leave the copy once the cell is done.

Usage: ``python scripts/snapshot_run.py runs/experiment-small results/experiment-small-snapshot``.
`roboscape report` reads the copy. To resume a run on a new machine, copy the snapshot's
experiment.json, cells/, reward_check/ and wm_eval/ into the run folder (`scripts/run_small.sh`
does): finished cells and final stages are skipped, `roboscape experiment` rebuilds each policy
checkpoint from its slim copy (checking the weights against the original's digest), an
evaluation resumes from its journal, and a training under way resumes from its `resume.slim.pt`
(as from a checkpoint on the same machine: the envs are reset).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

PATTERNS = (
    "experiment.json",
    "cells/*/*/cell.json",
    "cells/*/*/train/metrics.jsonl",
    "cells/*/*/train/env.json",
    "cells/*/*/train/router.json",
    "cells/*/*/eval/results.json",
    "reward_check/reward_check.json",
    "reward_check/reward_check.png",
    "reward_check/stage.json",
    "wm_eval/metrics.json",
    "wm_eval/stage.json",
    "cells/bc/*/train/policy.slim.pt",
)
RESUME_PATTERNS = (
    "eval/episodes.journal.jsonl",
    "train/policy.slim.pt",
    "train/*/policy.slim.pt",
)
"""Relative to a cell folder: copied while the cell is not done."""
TRAINING_SLIM_PATTERNS = ("train/resume.slim.pt", "train/*/resume.slim.pt")
"""Relative to a cell folder: written by `_training_slims` while the cell is training."""


def _training_slims(run_dir: Path, out: Path) -> list[Path]:
    """For each cell still training, the slim copy with training state (`resume.slim.pt`) of the
    newest checkpoint of each of its policy runs, written straight into `out`."""
    from roboscape_r.checkpoint import latest_checkpoint
    from roboscape_r.policy.checkpoint import RESUME_SLIM_NAME, write_slim_policy

    written = []
    for status_path in sorted(run_dir.glob("cells/*/*/cell.json")):
        status = json.loads(status_path.read_text())
        if status.get("status") in ("done", "trained") or status.get("trained"):
            continue
        train_dir = status_path.parent / "train"
        for folder in [train_dir, *sorted(p for p in train_dir.glob("*") if p.is_dir())]:
            newest = latest_checkpoint(folder / "checkpoints")
            if newest is not None:
                tokenizer = json.loads((run_dir / "experiment.json").read_text())["config"]["checkpoints"]["tokenizer"]
                target = out / folder.relative_to(run_dir) / RESUME_SLIM_NAME
                written.append(write_slim_policy(newest, target, tokenizer, training_state=True))
    return written


def _resume_files(run_dir: Path) -> list[Path]:
    """The files of RESUME_PATTERNS of every cell not yet done."""
    files = []
    for status in sorted(run_dir.glob("cells/*/*/cell.json")):
        if json.loads(status.read_text()).get("status") != "done":
            files += [path for pattern in RESUME_PATTERNS for path in sorted(status.parent.glob(pattern))]
    return files


def _report_strips(run_dir: Path) -> list[Path]:
    """Per evaluated cell, the frame strip of each split that `roboscape report` would show
    (`roboscape_r.report.strips.first_strip`); the other ~60 strips of a cell (2 MB) are left out."""
    from roboscape_r.report.strips import first_strip

    files = []
    for results_path in sorted(run_dir.glob("cells/*/*/eval/results.json")):
        results = json.loads(results_path.read_text())
        for split in ("in-domain", "ood"):
            found = first_strip(results_path.parent, results, split)
            if found is not None:
                files.append(found[1])
    return files


def snapshot(run_dir: Path, out: Path) -> list[Path]:
    """Copy the files of PATTERNS from run_dir to out (same relative paths); returns the copies.

    The copy mirrors the run: a file of PATTERNS in `out` that the run no longer has (a cell
    moved aside to be redone) is deleted, so that old and new settings never mix in a report.
    Files outside PATTERNS (a README beside the copy) are left alone."""
    if not (run_dir / "experiment.json").is_file():
        raise SystemExit(f"{run_dir} is not an experiment run folder (no experiment.json)")
    copied = []
    sources = [source for pattern in PATTERNS for source in sorted(run_dir.glob(pattern))]
    for source in sources + _report_strips(run_dir) + _resume_files(run_dir):
        target = out / source.relative_to(run_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)  # atomic: a snapshot never holds a half-written file
        copied.append(target)
    copied += _training_slims(run_dir, out)
    kept = set(copied)
    for pattern in (*PATTERNS, "cells/*/*/eval/videos/*_strip.png",
                    *(f"cells/*/*/{p}" for p in RESUME_PATTERNS + TRAINING_SLIM_PATTERNS)):
        for stale in sorted(out.glob(pattern)):
            if stale not in kept:
                stale.unlink()
                print(f"removed {stale} (no longer in {run_dir}, or a strip no longer chosen)")
    for folder in sorted((out / "cells").glob("**/"), key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return copied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    copied = snapshot(args.run_dir, args.out)
    size = sum(p.stat().st_size for p in copied)
    print(f"{args.out}: {len(copied)} files, {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
