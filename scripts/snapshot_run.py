"""Copy the small result files of an experiment run folder into another folder (to commit them).

A run folder holds policy checkpoints and videos (tens of MB per cell); the report needs far
less. This copies what `roboscape report` reads, except videos, so that the results of finished
cells survive the machine:

    experiment.json; cells/<method>/seed<k>/cell.json, train/{metrics.jsonl, env.json, router.json},
    eval/results.json, eval/videos/*_strip.png; reward_check/*.json and *.png; wm_eval/metrics.json

and, for a cell not yet done, what its resumption needs: the newest checkpoint and config.json of
each of its policy run folders and its evaluation's journal of finished episodes. They leave the
copy once the cell is done.

Usage: ``python scripts/snapshot_run.py runs/experiment-small results/experiment-small-snapshot``.
`roboscape report` reads the copy. To resume a run on a new machine, copy the snapshot's cells/
into the run folder: finished cells are skipped, and the unfinished one resumes from its
checkpoint or its evaluation journal. A finished BC cell's checkpoint, which later PPO cells of
its seed start from, is not copied: `roboscape experiment` retrains it (minutes) and checks that
the retrained run reproduces the recorded losses.
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
    "reward_check/*.json",
    "reward_check/*.png",
    "wm_eval/metrics.json",
    "cells/*/*/eval/videos/*_strip.png",
)
RESUME_PATTERNS = (
    "eval/episodes.journal.jsonl",
    "train/config.json",
    "train/*/config.json",
)
"""Relative to a cell folder: copied while the cell is not done (with the newest checkpoints)."""


def _resume_files(run_dir: Path) -> list[Path]:
    """The files an unfinished cell resumes from: RESUME_PATTERNS and the newest ckpt_*.pt of
    every checkpoints/ folder of its policy run folders."""
    files = []
    for status in sorted(run_dir.glob("cells/*/*/cell.json")):
        if json.loads(status.read_text()).get("status") == "done":
            continue
        cell = status.parent
        for pattern in RESUME_PATTERNS:
            files += sorted(cell.glob(pattern))
        for folder in sorted(cell.glob("train/**/checkpoints")):
            newest = sorted(folder.glob("ckpt_*.pt"))
            files += newest[-1:]
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
    for source in sources + _resume_files(run_dir):
        target = out / source.relative_to(run_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)  # atomic: a snapshot never holds a half-written file
        copied.append(target)
    kept = set(copied)
    resume_patterns = [f"cells/*/*/{p}" for p in RESUME_PATTERNS] + ["cells/*/*/train/**/checkpoints/ckpt_*.pt"]
    for pattern in (*PATTERNS, *resume_patterns):
        for stale in sorted(out.glob(pattern)):
            if stale not in kept:
                stale.unlink()
                print(f"removed {stale} (no longer in {run_dir})")
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
