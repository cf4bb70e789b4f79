"""How the general reward's alignment term behaves inside the world model, for a policy and for standing still.

Runs the world-model env with the general reward for one episode batch, once with a policy's
deterministic actions and once with zero actions (the arm holds still), and prints, over all
steps, the mean alignment term align_t (the reward minus its done term), the share of steps
clipped at -1 (further from the golden frame than twice the start-to-goal distance) and the
share above 0. A reward that guides a policy should score its motion above standing still.

Usage: python scripts/general_reward_alignment.py --policy runs/experiment-small/cells/bc/seed0/train/checkpoints
       [--envs 16] [--steps 60] [--seed 1]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", required=True, help="policy checkpoint (file or run folder)")
    parser.add_argument("--envs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from roboscape_r.envs.world_model import WorldModelEnvConfig, WorldModelVectorEnv
    from roboscape_r.policy import load_policy
    from roboscape_r.reward.general import GeneralReward

    env = WorldModelVectorEnv(WorldModelEnvConfig(num_envs=args.envs, max_steps_per_episode=args.steps,
                                                  golden_length=args.steps, seed=0))
    if not isinstance(env.reward_fn, GeneralReward):
        raise SystemExit(f"the env's reward is {env.reward_fn.name!r}, not the general reward")
    policy = load_policy(args.policy)
    print(f"general reward, distance {env.reward_fn.distance_name}; {args.envs} envs x {args.steps} steps, "
          f"start seed {args.seed}")
    for name in ("policy", "zero actions"):
        obs, _ = env.reset(seed=args.seed)  # the same starts and golden trajectories for both
        aligns = []
        for _ in range(args.steps):
            if name == "policy":
                actions = policy.act_embedded(obs["rgb"], obs["instruction"])
            else:
                actions = np.zeros((args.envs, env.single_action_space.shape[0]), np.float32)
            obs, reward, _, _, info = env.step(actions)
            done_term = env.reward_fn.config.done_weight * np.asarray(info["done_prob"], np.float64)
            valid = np.asarray(info["valid"], bool)  # envs whose episode already ended are padding
            aligns.append(np.where(valid, np.asarray(reward, np.float64) - done_term, np.nan))
        align = np.stack(aligns)
        first = align[:5][~np.isnan(align[:5])]
        align = align[~np.isnan(align)]
        print(f"{name:13s} mean align {align.mean():+.3f}  clipped at -1: {100 * (align <= -0.999).mean():5.1f}%  "
              f"above 0: {100 * (align > 0).mean():5.1f}%  first 5 steps {first.mean():+.3f}  ({align.size} steps)")


if __name__ == "__main__":
    main()
