"""Probe: general-reward PPO from BC seed 0 with the action std set from BC's validation error."""
import sys
from dataclasses import replace
from pathlib import Path

import yaml

from roboscape_r.envs.world_model import WorldModelEnvConfig
from roboscape_r.eval.evaluate import EvalConfig, evaluate
from roboscape_r.experiment import _override
from roboscape_r.policy.config import PPOConfig
from roboscape_r.policy.train_args import TrainPolicyArgs, run_train_policy


def main():
    method = sys.argv[1] if len(sys.argv) > 1 else "general"
    preset = yaml.safe_load(Path("configs/experiment/small.yaml").read_text())
    variant = sys.argv[2] if len(sys.argv) > 2 else "std"
    out = Path(f"runs/probe_std/{method}0" if variant == "std" else f"runs/probe_{variant}/{method}0")
    ppo = _override(PPOConfig, preset["ppo"], PPOConfig(seed=0, total_timesteps=preset["env_steps_per_policy"]))
    ppo = replace(ppo, bc_std_from_validation=variant == "std", num_threads=1,
                  bc_anchor_coef=10.0 if variant == "anchor" else 0.0)
    ck = preset["checkpoints"]
    wm = _override(WorldModelEnvConfig, preset["wm_env"], WorldModelEnvConfig(
        tokenizer_path=Path(ck["tokenizer"]), wm_act_path=Path(ck["wm_act"]), wm_txt_path=Path(ck["wm_txt"]),
        dataset=Path(preset["data"]["train"]), tasks=tuple(preset["tasks"]), reward=method,
        golden_source="dataset" if variant == "oracle" else "wm_txt"))
    result = run_train_policy(TrainPolicyArgs(out=out / "train", env="wm", wm=wm, ppo=ppo,
                                              bc_init=Path("runs/experiment-small/cells/bc/seed0/train")))
    print("trained", result.global_step, flush=True)
    config = _override(EvalConfig, preset["eval"], EvalConfig(policy=out / "train", tasks=tuple(preset["tasks"]),
                                                             scenes=("in-domain",), seed=0, out=out / "eval"))
    res = evaluate(config)
    print("evaluated", flush=True)


if __name__ == '__main__':
    main()
