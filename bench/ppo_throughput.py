"""PPO env steps/s in the world-model env vs in ManiSkill RGB, side by side in one run.

Both runs use the same PPO code (`train_ppo`), the same policy network (frames round-tripped
through the tokenizer, as in `roboscape experiment`) and the same rollout length; only the env
differs:
  * world model: `WorldModelVectorEnv` with the shipped checkpoints (checkpoints/small), the
    general reward, N envs in lockstep (golden trajectories generated once per start and cached,
    as in training; the cache is warmed before timing so the figure is the steady state);
  * ManiSkill: `ManiSkillVectorEnv` over the same tasks' in-domain scenes with the simulator's
    dense reward, rendering 64x64 RGB every step, spread over worker processes.
Printed: env steps/s of whole PPO updates (rollout + update) from each run's metrics.jsonl and
their ratio. Target (issue: RL inside the world model): >= 10x.

Usage: python bench/ppo_throughput.py [--wm-envs 32] [--sim-envs 2] [--updates 2] [--threads 2]
Needs data/train (start frames) or --data.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from roboscape_r.cpu import use_lavapipe  # noqa: E402

use_lavapipe()


def ppo_steps_per_s(envs, num_steps: int, updates: int, out: Path, threads: int) -> tuple[float, float]:
    """(steady-state steps/s over all updates but the first, wall seconds) of a short PPO run."""
    from roboscape_r.policy import PolicyConfig, PPOConfig, train_ppo

    # As in `roboscape experiment`: the policy round-trips frames through the world model's
    # tokenizer (skipped for the world-model env, whose frames already are such decodings).
    policy = PolicyConfig(frame_preprocess="tokenizer", tokenizer_path="checkpoints/small/tokenizer.pt")
    config = PPOConfig(total_timesteps=envs.num_envs * num_steps * updates, num_steps=num_steps, device="cpu",
                       num_threads=threads, progress=False, ckpt_every=10**6)
    started = time.time()
    train_ppo(config, envs, out, policy_config=policy)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steady = rows[1:] or rows
    return sum(r["time/steps_per_s"] for r in steady) / len(steady), time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wm-envs", type=int, default=32)
    parser.add_argument("--sim-envs", type=int, default=2)
    parser.add_argument("--num-steps", type=int, default=16, help="rollout length per PPO update")
    parser.add_argument("--updates", type=int, default=3, help="PPO updates per env (the first is not timed)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=Path("data/train"))
    parser.add_argument("--tasks", nargs="+", default=["PickCube", "PushCube"])
    args = parser.parse_args()
    import torch

    from roboscape_r.envs.maniskill import make_maniskill_vector_env
    from roboscape_r.envs.world_model import WorldModelVectorEnv

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        wm = WorldModelVectorEnv(num_envs=args.wm_envs, dataset=args.data, tasks=tuple(args.tasks),
                                 max_steps_per_episode=args.num_steps, golden_length=args.num_steps)
        warm_started = time.time()
        for seed in range(3):  # fill the golden cache with the starts PPO will draw
            wm.reset(seed=seed)
        warm_s = time.time() - warm_started
        wm_sps, wm_wall = ppo_steps_per_s(wm, args.num_steps, args.updates, Path(tmp) / "wm", args.threads)
        wm.close()
        sim = make_maniskill_vector_env(tasks=tuple(args.tasks), num_envs=args.sim_envs,
                                        num_workers=min(args.sim_envs, 2), max_steps_per_episode=args.num_steps)
        sim_sps, sim_wall = ppo_steps_per_s(sim, args.num_steps, args.updates, Path(tmp) / "sim", args.threads)
        sim.close()
    print(f"PPO, {args.num_steps} steps per rollout, {args.updates} updates (first untimed), {args.threads} torch threads, "
          f"{os.cpu_count()} CPUs")
    print(f"  world-model env, {args.wm_envs} envs: {wm_sps:8.1f} env steps/s  (run {wm_wall:.0f} s; golden cache "
          f"warm-up {warm_s:.0f} s, not timed)")
    print(f"  ManiSkill RGB,   {args.sim_envs} envs: {sim_sps:8.1f} env steps/s  (run {sim_wall:.0f} s)")
    print(f"  ratio world model / ManiSkill: {wm_sps / sim_sps:.2f}x  (target >= 10x)")


if __name__ == "__main__":
    main()
