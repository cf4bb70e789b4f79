"""Drift of policies from their BC start: mean |action| and mean |action - BC's action| on frames
of held-out in-domain episodes (6 random frames from each, numpy seed 0).

Usage (from the repository root, with the run folders of the probes and the small run):
    PYTHONPATH=src python results/ppo-probes-seed0/measure_drift.py BC_RUN POLICY_RUN [POLICY_RUN ...]
The first run is the reference (BC); translation, rotation and gripper dimensions are reported apart.
"""
import sys
from pathlib import Path

import numpy as np

from roboscape_r.data.format import read_episode, read_manifest
from roboscape_r.policy import load_policy


def heldout_frames(root: Path, per_episode: int = 6) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(0)
    frames, instructions = [], []
    for shard, entry in read_manifest(root)["shards"].items():
        for meta in entry["episodes"]:
            if not meta["scene"].startswith("id-"):
                continue
            episode = read_episode(root / shard, meta["episode_index"])
            index = rng.choice(len(episode["frames"]), per_episode, replace=False)
            frames.append(episode["frames"][index])
            instructions += [meta["instruction"]] * per_episode
    return np.concatenate(frames), instructions


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    frames, instructions = heldout_frames(Path("data/heldout"))
    print(f"{len(frames)} held-out in-domain frames")
    base = load_policy(sys.argv[1]).act(frames, instructions)
    for path in sys.argv[1:]:
        actions = load_policy(path).act(frames, instructions)
        gap = np.abs(actions - base)
        print(f"{path}: mean|a| trans {np.abs(actions[:, :3]).mean():.3f} rot {np.abs(actions[:, 3:6]).mean():.3f} "
              f"grip {np.abs(actions[:, 6]).mean():.3f}; mean|a - a_BC| trans {gap[:, :3].mean():.3f} "
              f"rot {gap[:, 3:6].mean():.3f} grip {gap[:, 6].mean():.3f}")


if __name__ == "__main__":
    main()
