"""ManiSkill evaluation env steps/s with lavapipe's thread pool vs rendering in the calling thread.

`roboscape eval` spreads episodes over one worker process per core. Lavapipe (the CPU Vulkan
driver) starts a rasteriser thread pool per process, as large as the number of cores, so with
one worker per core the pools contend with the other workers. `init_render_worker` therefore
sets ``LP_NUM_THREADS=0`` in every worker (render in the calling thread). This runs the same
evaluation (same policy, tasks, scenes, seeds and workers) both ways, back to back, and prints
env steps/s of each and their ratio.

The policy is the architecture `roboscape experiment` trains (frames round-tripped through the
shipped tokenizer), untrained: its cost per step is that of a trained one, its actions differ.

Usage: python bench/eval_throughput.py [--episodes 16] [--tasks PushCube PickCube] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from roboscape_r.cpu import use_lavapipe

use_lavapipe()


def write_untrained_policy(path: Path, tokenizer: str) -> None:
    """Save a freshly initialised tokenizer-preprocessing policy checkpoint to ``path``."""
    from roboscape_r.checkpoint import save_checkpoint
    from roboscape_r.policy.checkpoint import POLICY_KIND, build_actor_critic, policy_checkpoint_config
    from roboscape_r.policy.network import PolicyConfig

    model = build_actor_critic(PolicyConfig(frame_preprocess="tokenizer", tokenizer_path=tokenizer))
    save_checkpoint(path, kind=POLICY_KIND, config=policy_checkpoint_config("bc", model, {}),
                    model_state=model.state_dict(), step=0)


def eval_steps_per_s(policy: Path, args: argparse.Namespace, lp_threads: str, out: Path) -> dict:
    """Run `roboscape eval` with ``LP_NUM_THREADS=lp_threads`` and return its timing record."""
    env = {**os.environ, "LP_NUM_THREADS": lp_threads}
    command = [sys.executable, "-m", "roboscape_r.cli", "eval", "--policy", str(policy), "--scenes", *args.scenes,
               "--tasks", *args.tasks, "--episodes", str(args.episodes), "--workers", str(args.workers),
               "--video-episodes", "0", "--out", str(out)]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((out / "results.json").read_text())["timing"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=16, help="episodes per (task, scene) cell")
    parser.add_argument("--tasks", nargs="+", default=["PushCube", "PickCube"])
    parser.add_argument("--scenes", nargs="+", default=["id-default-wood"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tokenizer", default="checkpoints/small/tokenizer.pt")
    args = parser.parse_args()
    pool_size = str(os.cpu_count() or 1)  # lavapipe's default pool size
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.pt"
        write_untrained_policy(policy, args.tokenizer)
        rates = {}
        for label, lp_threads in ((f"thread pool (LP_NUM_THREADS={pool_size})", pool_size),
                                  ("calling thread (LP_NUM_THREADS=0, the default)", "0")):
            timing = eval_steps_per_s(policy, args, lp_threads, Path(tmp) / f"eval-{lp_threads}")
            rates[lp_threads] = timing["env_steps_per_s"]
            print(f"{label:50s} {timing['env_steps']:6d} env steps in {timing['elapsed_s']:6.1f} s: "
                  f"{timing['env_steps_per_s']:5.1f} env steps/s ({timing['workers']} workers)", flush=True)
    print(f"ratio calling thread / thread pool: {rates['0'] / rates[pool_size]:.2f}x")


if __name__ == "__main__":
    main()
