"""A synthetic experiment run folder for the report tests, written with the project's own writers
where they exist (eval aggregation and frame strips, the reward check's summary and figure,
PPO's metrics rows, the general reward's describe()), so the formats cannot drift silently.

Planned OOD success_once per (method, task), pooled over the evaluated seeds (5 OOD episodes per
seed and task), which the improvement test recomputes by hand:

    general:   PickCube 6/10, PushCube 4/10  -> 0.5
    sim:       PickCube 4/10, PushCube 2/10  -> 0.3
    bc:        PickCube 0/10, PushCube 0/10  -> 0.0
    embedding: seed 0 only (seed 1 has no eval): PickCube 2/5, PushCube 3/5 -> 0.5
    proxy:     seed 0 failed, seed 1 not run: no results
    custom:    a method not listed in experiment.json, in-domain episodes only
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from roboscape_r.atomic import atomic_write_json
from roboscape_r.data.scenes import env_id
from roboscape_r.envs.seeds import EVAL_SEED_SCHEME
from roboscape_r.eval.evaluate import PROTOCOL, RESULTS_NAME
from roboscape_r.eval.metrics import METRIC_DEFINITIONS, aggregate
from roboscape_r.eval.videos import write_episode_media
from roboscape_r.policy.runtime import append_metrics

REPO = Path(__file__).resolve().parents[2]
TASKS = ("PickCube", "PushCube")
SEEDS = (0, 1)
METHODS = ("general", "embedding", "proxy", "sim", "bc")
ID_SCENE = "id-default-wood"
OOD_SCENES = (("ood-color-purple", "object_color"), ("ood-color-purple", "object_color"),
              ("ood-color-purple", "object_color"), ("ood-light-dim", "lighting"), ("ood-light-dim", "lighting"))
"""The 5 OOD episodes of a task: 3 with another cube colour, 2 with other lighting."""
HORIZON = 12
FRAME = 16
# (method, seed) -> {task: (in-domain successes of 5, OOD successes of 5)}
PLAN = {
    ("general", 0): {"PickCube": (4, 3), "PushCube": (3, 2)},
    ("general", 1): {"PickCube": (5, 3), "PushCube": (3, 2)},
    ("sim", 0): {"PickCube": (5, 2), "PushCube": (4, 1)},
    ("sim", 1): {"PickCube": (5, 2), "PushCube": (5, 1)},
    ("bc", 0): {"PickCube": (2, 0), "PushCube": (1, 0)},
    ("bc", 1): {"PickCube": (1, 0), "PushCube": (2, 0)},
    ("embedding", 0): {"PickCube": (3, 2), "PushCube": (2, 3)},
    ("custom", 0): {"PickCube": (1, None), "PushCube": (0, None)},
}


def episode_frames(index: int, success_step: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(HORIZON+1, FRAME, FRAME, 3) uint8 frames of a square moving right, and success per step."""
    frames = np.full((HORIZON + 1, FRAME, FRAME, 3), 40 + 20 * index, np.uint8)
    for t in range(HORIZON + 1):
        frames[t, 6:10, t % (FRAME - 4):t % (FRAME - 4) + 4] = (220, 60, 60)
    success = np.zeros(HORIZON, bool)
    if success_step is not None:
        success[success_step - 1:] = True
    return frames, success


def episode_records(task: str, scene: str, split: str, factor: str, flags: list[bool]) -> list[dict]:
    """Records shaped like `eval.rollout.run_episodes` output for one (task, scene) cell."""
    records = []
    for i, once in enumerate(flags):
        first = 4 + i if once else None
        records.append(dict(task=task, scene=scene, env_id=env_id(task, scene), split=split, factor=factor,
                            severity=0 if split == "in-domain" else 1, episode_index=i, seed=2**31 + i,
                            instruction=f"do {task}", success_once=once, success_at_end=once and i % 2 == 0,
                            first_success_step=first, episode_length=first or HORIZON, horizon=HORIZON,
                            **{"return": float(3 * once + 0.1 * i)}))
    return records


def write_eval(out: Path, plan: dict[str, tuple[int, int | None]]) -> dict:
    """An eval folder as `roboscape eval` writes it: results.json and strips of each cell's episode 0."""
    episodes, videos = [], []
    for task, (id_ok, ood_ok) in plan.items():
        episodes += episode_records(task, ID_SCENE, "in-domain", "base", [i < id_ok for i in range(5)])
        if ood_ok is None:
            continue
        flags = [i < ood_ok for i in range(5)]
        for scene in dict.fromkeys(s for s, _ in OOD_SCENES):
            idx = [i for i, (s, _) in enumerate(OOD_SCENES) if s == scene]
            factor = OOD_SCENES[idx[0]][1]
            episodes += episode_records(task, scene, "ood", factor, [flags[i] for i in idx])
    for record in episodes:
        if record["episode_index"] == 0:  # the first episode of every cell has media, as with video_episodes=1
            frames, success = episode_frames(len(videos), record["first_success_step"])
            videos.append(write_episode_media({**record, "frames": frames, "success_per_step": success},
                                              out / "videos", fps=10, scale=2, strip_every=3))
    results = {"format": "roboscape-eval-v1", "policy": {"path": "train/checkpoints", "class": "ActorCriticPolicy"},
               "config": {"episodes": 5, "seed": 0}, "protocol": PROTOCOL, "seed_scheme": EVAL_SEED_SCHEME,
               "definitions": METRIC_DEFINITIONS, "episodes": episodes, **aggregate(episodes), "videos": videos,
               "timing": {"elapsed_s": 1.0, "env_steps": HORIZON * len(episodes)}}
    atomic_write_json(out / RESULTS_NAME, results)
    return results


def general_reward_describe() -> dict:
    """describe() of the real general reward with the tokenizer-feature distance of a tiny tokenizer."""
    from roboscape_r.reward.general import GeneralReward
    from roboscape_r.tokenizer.config import TokenizerConfig
    from roboscape_r.tokenizer.model import Tokenizer
    from roboscape_r.tokenizer.perceptual import TokenizerFeatureDistance

    config = TokenizerConfig(image_size=FRAME, grid_size=4, stem_factor=2, channels=8, max_channels=8,
                             codebook_bits=4, num_res_blocks=1, refine_channels=0, norm_groups=4)
    return GeneralReward(TokenizerFeatureDistance(Tokenizer(config).eval())).describe()


def ppo_rows(template: dict, seed: int, updates: int = 10, steps_per_update: int = 64) -> list[dict]:
    """PPO metrics rows with the columns of a real row (`template`), success rising with the update."""
    rows = []
    for u in range(1, updates + 1):
        success = min(1.0, 0.1 * u + 0.05 * seed)
        rows.append({**template, "update": u, "global_step": u * steps_per_update, "episodes": 4,
                     "success_once": success, "success_at_end": success / 2})
    rows[2].update(episodes=0, success_once=None, success_at_end=None)  # an update in which no episode ended
    return rows


def write_cell(root: Path, method: str, seed: int, template: dict, describe: dict) -> None:
    cell = root / "cells" / method / f"seed{seed}"
    train = cell / "train"
    train.mkdir(parents=True, exist_ok=True)
    if method == "bc":
        for step in (50, 100):
            append_metrics(train / "metrics.jsonl", {"step": step, "losses/bc_loss": 1.0 / step})
    else:
        for row in ppo_rows(template, seed):
            append_metrics(train / "metrics.jsonl", row)
        env = {"env": "sim", "reward": "maniskill normalized_dense"} if method == "sim" else {
            "env": "wm", "reward": describe if method == "general" else {"name": method}}
        atomic_write_json(train / "env.json", env)
    failed = method == "proxy"
    info = {"method": method, "seed": seed, "status": "failed" if failed else "done",
            "train_wall_s": 100.0 + seed, "eval_wall_s": 0.0 if failed else 30.0,
            "env_steps": 0 if method == "bc" else 640, "train_git_revision": "aaaaaaaaaaaaaaaa"}
    if not failed:
        info["eval_git_revision"] = "bbbbbbbbbbbbbbbb"
    if failed:
        info["error"] = "NonFiniteError: reward was NaN"
    atomic_write_json(cell / "cell.json", info)
    if (method, seed) in PLAN:
        write_eval(cell / "eval", PLAN[(method, seed)])


def write_reward_check(out: Path) -> dict:
    """reward_check.json and .png via the check's own summary and figure functions."""
    from roboscape_r.reward.check import CheckEpisode, summarize
    from roboscape_r.reward.check_report import write_example_figure
    from roboscape_r.worldmodel.evaluate_report import jsonable

    rng = np.random.default_rng(0)
    episodes, per_reward = [], {"sim": [], "general": [], "embedding": []}
    terms = {"general/alignment": [], "general/done": []}
    for i, (split, scene) in enumerate([("in-domain", ID_SCENE)] * 4 + [("ood/object_color", "ood-color-purple")] * 4
                                       + [("ood/lighting", "ood-light-dim")] * 4):
        ok, length = i % 2 == 0, 10
        frames, _ = episode_frames(i, 5 if ok else None)
        progress = np.linspace(0.1, 1.0, length) * (1.0 if ok else 0.3)
        episodes.append(CheckEpisode(split, scene, "PickCube", "pick the cube", torch.from_numpy(frames[:length + 1]),
                                     torch.zeros(length, 7), progress.astype(np.float32), ok))
        per_reward["sim"].append(progress)
        per_reward["general"].append(progress * 0.8 + 0.01 * rng.standard_normal(length) * (not ok))
        per_reward["embedding"].append(rng.standard_normal(length))
        terms["general/done"].append(np.where(np.arange(length) >= 5, 0.5, 0.0) * ok)
        terms["general/alignment"].append(per_reward["general"][-1] - terms["general/done"][-1])
    result = summarize(episodes, per_reward, terms)
    rewards = {"sim": {"status": "ok", "describe": {"name": "sim"}},
               "general": {"status": "ok", "describe": general_reward_describe()},
               "embedding": {"status": "ok", "describe": {"name": "embedding"}},
               "proxy": {"status": "skipped", "reason": "--proxy not given"}}
    result = jsonable({"config": {"data": "data/heldout"}, "rewards": rewards, "notes": {}, **result})
    example = result["example"]
    write_example_figure(out / "reward_check.png", episodes[example["episode"]],
                         {name: values[example["episode"]] for name, values in per_reward.items()}, example["kind"])
    atomic_write_json(out / "reward_check.json", result)
    return result


def write_fake_run(root: Path, template: dict) -> Path:
    """The whole synthetic run folder (see the module docstring); returns `root`."""
    describe = general_reward_describe()
    atomic_write_json(root / "experiment.json", {
        "preset": "demo", "config": {"name": "demo", "ppo": {"total_timesteps": 640, "num_envs": 4},
                                     "eval": {"episodes": 5}, "tasks": list(TASKS)},
        "git_revision": "0123abc", "date": "2025-01-02T03:04:05", "tasks": list(TASKS), "methods": list(METHODS),
        "seeds": list(SEEDS), "env_steps_per_policy": 640})
    for method in METHODS:
        for seed in SEEDS:
            if (method, seed) == ("proxy", 1):
                continue  # not run yet
            write_cell(root, method, seed, template, describe)
    write_cell(root, "custom", 0, template, describe)
    shutil.rmtree(root / "cells" / "embedding" / "seed1" / "eval", ignore_errors=True)
    write_reward_check(root / "reward_check")
    (root / "wm_eval").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "checkpoints" / "small" / "eval_wm_metrics.json", root / "wm_eval" / "metrics.json")
    return root


def real_ppo_template(out: Path) -> tuple[dict, list[dict]]:
    """Run real PPO for a few updates on the point env; (a metrics row without its values, all rows)."""
    from roboscape_r.policy.ppo import train_ppo
    from tests.policy.conftest import tiny_policy_config, tiny_ppo_config
    from tests.policy.point_env import PointVecEnv

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_ppo(tiny_ppo_config(total_timesteps=4 * 8 * 6), PointVecEnv(num_envs=4, max_steps=6), out,
                  policy_config=tiny_policy_config())
    finally:
        torch.set_num_threads(previous)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return dict(rows[-1]), rows
