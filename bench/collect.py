"""Collection throughput vs raw ManiSkill stepping, side by side in one run.

Prints, for the same task, scene, camera and image size:
  * raw ManiSkill RGB env steps/s (the same actions from the same seed, nothing recorded);
  * our recording loop's frames/s in the same process (random source: frames, actions, rewards,
    flags kept, as `roboscape collect` does), and the ratio of the two (target >= 0.8);
  * the whole `collect` pipeline (process pool of --workers, HDF5 shards, manifest) in frames/s;
  * the time of one expert demo per task (motion planning + closed-loop ee tracking + rendering).

Usage: python bench/collect.py [--task PickCube] [--steps 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from roboscape_r.cpu import use_lavapipe

use_lavapipe()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="PickCube")
    parser.add_argument("--scene", default="id-default-wood")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--expert-tasks", nargs="*", default=["PickCube", "PushCube", "PullCube", "StackCube"])
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from roboscape_r.data import scenes as S
    from roboscape_r.data.collect import CollectConfig, EpisodePlan, collect, make_env, record_episode

    S.register_all()
    uid = S.env_id(args.task, args.scene)
    # Our recording loop first (random source); the raw loop then replays the very same actions
    # from the same seed, so the two differ only in what is recorded (physics cost depends on
    # the actions: uniform noise and smooth random walks hit contacts differently).
    config = CollectConfig(random_steps=args.steps, image_size=args.image_size)
    plan = EpisodePlan(0, args.task, args.scene, uid, "random", 0, "bench")
    record_episode(plan, config)  # warm-up (env creation)
    t = time.perf_counter()
    episode = record_episode(plan, config)
    ours_frames_per_s = len(episode["actions"]) / (time.perf_counter() - t)

    env = make_env(uid, args.image_size, S.CONTROL_MODE)
    env.reset(seed=0)
    t = time.perf_counter()
    env.reset(seed=plan.seed)
    for action in episode["actions"]:
        env.step(action)
    raw_steps_per_s = len(episode["actions"]) / (time.perf_counter() - t)

    with tempfile.TemporaryDirectory() as tmp:
        n_episodes = 4 * args.workers
        pool_config = CollectConfig(out=Path(tmp) / "ds", tasks=(args.task,), scenes=(args.scene,), episodes=n_episodes,
                                    source_mix=(0.0, 0.0, 1.0), random_steps=args.steps // 2, workers=args.workers,
                                    episodes_per_shard=2, image_size=args.image_size)
        t = time.perf_counter()
        manifest = collect(pool_config, progress=False)
        pool_seconds = time.perf_counter() - t
        pool_frames = sum(m["length"] for s in manifest["shards"].values() for m in s["episodes"])

    print(f"task {args.task}, scene {args.scene}, {args.image_size}x{args.image_size} RGB, control {S.CONTROL_MODE}")
    print(f"raw ManiSkill env steps/s (1 env, same actions, nothing kept): {raw_steps_per_s:8.1f}")
    print(f"our recording loop frames/s (same process, random source): {ours_frames_per_s:8.1f}")
    print(f"ratio ours / raw:                                          {ours_frames_per_s / raw_steps_per_s:8.2f}  (target >= 0.8)")
    print(f"collect pipeline frames/s ({args.workers} workers, incl. start-up, HDF5, manifest): "
          f"{pool_frames / pool_seconds:8.1f}  ({pool_frames} frames in {pool_seconds:.1f} s; "
          f"ratio to 1 raw env {pool_frames / pool_seconds / raw_steps_per_s:.2f})")
    print("\nexpert demo time per task (plan + track + render, one episode, after warm-up):")
    for task in args.expert_tasks:
        tuid = S.env_id(task, args.scene)
        record_episode(EpisodePlan(0, task, args.scene, tuid, "random", 1, "warm-up"),
                       CollectConfig(random_steps=2, image_size=args.image_size))
        t = time.perf_counter()
        episode = record_episode(EpisodePlan(0, task, args.scene, tuid, "expert", 1, "bench"),
                                 CollectConfig(image_size=args.image_size))
        seconds = time.perf_counter() - t
        print(f"  {task:<10} {seconds:6.1f} s  {len(episode['actions']):4d} steps  success_once={bool(episode['success'].any())}")


if __name__ == "__main__":
    main()
