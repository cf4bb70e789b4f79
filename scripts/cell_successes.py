"""Print each finished cell's successes of a run folder, per split and task, and its paired change
against the BC cell of the same seed (episodes both were evaluated on).

Usage: python scripts/cell_successes.py runs/experiment-small
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def successes(results: dict) -> dict[tuple[str, str, str, int], bool]:
    """(split, task, scene, episode index) -> success at any step."""
    return {(e["split"], e["task"], e["scene"], int(e["episode_index"])): bool(e.get("success_once"))
            for e in results.get("episodes", [])}


def main(run: Path) -> None:
    for results_path in sorted(run.glob("cells/*/seed*/eval/results.json")):
        cell = results_path.parent.parent
        method, seed = cell.parent.name, cell.name
        mine = successes(json.loads(results_path.read_text()))
        tasks = sorted({key[1] for key in mine}, key=["PickCube", "PushCube", "PullCube", "StackCube"].index)
        line = [f"{method:>12} {seed}:"]
        bc_path = run / "cells" / "bc" / seed / "eval" / "results.json"
        bc = successes(json.loads(bc_path.read_text())) if bc_path.is_file() and method != "bc" else None
        for split in ("in-domain", "ood"):
            counts = "/".join(str(sum(v for k, v in mine.items() if k[0] == split and k[1] == t)) for t in tasks)
            line.append(f"{split} {counts}")
            if bc is not None:
                shared = [k for k in mine if k in bc and k[0] == split]
                gained = sum(mine[k] and not bc[k] for k in shared)
                lost = sum(bc[k] and not mine[k] for k in shared)
                line.append(f"(vs BC +{gained}/-{lost})")
        status = json.loads((cell / "cell.json").read_text())
        line.append(f"train {status.get('train_wall_s', 0) / 60:.0f} min, eval {status.get('eval_wall_s', 0) / 60:.0f} min")
        print(" ".join(line))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/experiment-small"))
