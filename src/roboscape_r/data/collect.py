"""`roboscape collect`: record episodes of several tasks and scenes into an HDF5 dataset.

Episode ``i`` is fully determined by the config and ``i`` (its task/scene cell, source, env seed,
instruction and noise all come from ``(seed, i)``), so a resumed or re-run collection produces the
same episodes. Shards of ``episodes_per_shard`` episodes are the unit of work for the process
pool and of atomic writing; a rerun skips the shards already listed in the manifest.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from roboscape_r.cpu import init_render_worker
from roboscape_r.data import scenes as S
from roboscape_r.data.format import (
    MANIFEST_NAME, DatasetError, atomic_write_json, config_hash, manifest_counts, new_manifest, read_manifest,
    write_shard,
)
from roboscape_r.data.sources import SOURCES, ExpertPolicy, PerturbConfig, RandomPolicy, plan_expert


@dataclass(frozen=True)
class CollectConfig:
    """Record robot episodes in ManiSkill into a dataset folder."""

    out: Path = Path("data/small")
    """Output dataset folder."""
    tasks: tuple[str, ...] = ("PickCube", "PushCube", "PullCube", "StackCube")
    """Tasks to record (see `roboscape data scenes`)."""
    scenes: tuple[str, ...] = ("in-domain",)
    """Scene names, `in-domain`, `ood`, or env ids registered by --env-module."""
    episodes: int = 16
    """Number of episodes in total (spread evenly over task x scene cells)."""
    source_mix: tuple[float, float, float] = (0.4, 0.4, 0.2)
    """Probabilities of the sources expert, perturbed, random."""
    image_size: int = 64
    """Square RGB frame size in pixels."""
    random_steps: int = 50
    """Length of random-action episodes."""
    seed: int = 0
    """Base seed; episode i uses seeds derived from (seed, i)."""
    workers: int = 2
    """Worker processes (each renders its own envs)."""
    episodes_per_shard: int = 4
    """Episodes per HDF5 shard (the unit of atomic writing and resuming)."""
    perturb: PerturbConfig = field(default_factory=PerturbConfig)
    """Perturbed-expert and random-source settings."""
    env_module: str | None = None
    """Python module to import first; it may register extra env ids (see README)."""
    resume: bool = False
    """Continue a folder made with a different config, keeping the folder's config."""
    overwrite: bool = False
    """Delete an existing dataset folder first."""

    def content_dict(self) -> dict:
        """The fields that determine the episodes' content (not where or how fast they are made)."""
        d = dataclasses.asdict(self)
        for key in ("out", "workers", "resume", "overwrite", "episodes"):
            d.pop(key)
        return json.loads(json.dumps(d, default=str))


@dataclass(frozen=True)
class EpisodePlan:
    episode_index: int
    task: str
    scene: str
    env_id: str
    source: str
    seed: int
    instruction: str


def cells(config: CollectConfig) -> list[tuple[str, str, str]]:
    """(task, scene, env id) combinations to record, validated."""
    S.import_env_module(config.env_module)
    S.register_all()
    tasks = S.check_tasks(list(config.tasks))
    result = []
    for scene in S.resolve_scenes(list(config.scenes)):
        if scene in S.SCENES:
            result += [(t, scene, S.env_id(t, scene)) for t in tasks if S.scene_applies(t, scene)]
        else:  # a user-registered env id: its task comes from its env class
            result.append((S.task_of_env_id(scene), scene, scene))
    return result


def plan_episodes(config: CollectConfig) -> list[EpisodePlan]:
    """Deterministic plan of every episode (cell, source, seed, instruction)."""
    mix = np.asarray(config.source_mix, dtype=float)
    if mix.shape != (len(SOURCES),) or (mix < 0).any() or mix.sum() <= 0:
        raise ValueError(f"source_mix must be {len(SOURCES)} non-negative weights for {SOURCES}, got {config.source_mix}")
    if config.episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {config.episodes}")
    mix = mix / mix.sum()
    all_cells = cells(config)
    plans = []
    for i in range(config.episodes):
        rng = np.random.default_rng([config.seed, i, 0])
        task, scene, uid = all_cells[i % len(all_cells)]
        paraphrases = S.instructions()[task]
        plans.append(EpisodePlan(
            episode_index=i, task=task, scene=scene, env_id=uid,
            source=SOURCES[int(rng.choice(len(SOURCES), p=mix))],
            seed=int(rng.integers(0, 2**31 - 1)),
            instruction=paraphrases[int(rng.integers(len(paraphrases)))],
        ))
    return plans


# --------------------------------------------------------------------------- worker side
_ENVS: dict = {}


def make_env(uid: str, image_size: int, control_mode: str, obs_mode: str = "rgb"):
    """Make a registered env at ``image_size``; our scene variants take it directly."""
    import gymnasium as gym
    from mani_skill.utils.registration import REGISTERED_ENVS

    import torch

    kwargs = dict(obs_mode=obs_mode, control_mode=control_mode, reward_mode="normalized_dense",
                  render_mode="rgb_array", render_backend="sapien_cuda" if torch.cuda.is_available() else "sapien_cpu")
    if "image_size" in REGISTERED_ENVS[uid].default_kwargs:
        kwargs["image_size"] = image_size
    else:
        kwargs["sensor_configs"] = dict(width=image_size, height=image_size)
    return gym.make(uid, **kwargs)


def _cached_env(uid: str, image_size: int, control_mode: str, obs_mode: str):
    key = (uid, image_size, control_mode, obs_mode)
    if key not in _ENVS:
        _ENVS[key] = make_env(uid, image_size, control_mode, obs_mode)
    return _ENVS[key]


def _frame(obs) -> np.ndarray:
    return obs["sensor_data"]["base_camera"]["rgb"][0].cpu().numpy()


def record_episode(plan: EpisodePlan, config: CollectConfig) -> dict:
    """Run one planned episode in the rendering env and return its arrays and metadata."""
    env = _cached_env(plan.env_id, config.image_size, S.CONTROL_MODE, "rgb")
    max_steps = env.spec.max_episode_steps or S.TASKS[plan.task].max_episode_steps
    rng = np.random.default_rng([config.seed, plan.episode_index, 1])
    obs, _ = env.reset(seed=plan.seed)
    source = plan.source
    if source in ("expert", "perturbed"):
        planner_env = _cached_env(plan.env_id, config.image_size, "pd_joint_pos", "none")
        initial_state, targets, grippers, _ = plan_expert(planner_env, plan.task, plan.seed)
        env.unwrapped.set_state_dict(initial_state)
        obs = env.unwrapped.get_obs()
        if not targets:  # the planner failed before its first step: nothing to track
            source = "random"
    if source in ("expert", "perturbed"):
        policy = ExpertPolicy(targets, grippers, rng, config.perturb if source == "perturbed" else None)
        max_steps = min(max_steps, len(targets) + 40)  # detours lengthen perturbed episodes
    else:
        policy = RandomPolicy(rng, config.perturb)
        max_steps = min(max_steps, config.random_steps)
    frames, actions, rewards, success, terminated, truncated = [_frame(obs)], [], [], [], [], []
    for _ in range(max_steps):
        action = policy.act(env)
        if action is None:
            break
        obs, reward, term, trunc, info = env.step(action)
        frames.append(_frame(obs))
        actions.append(action)
        rewards.append(float(reward[0]))
        success.append(bool(info["success"][0]))
        terminated.append(bool(term[0]))
        truncated.append(bool(trunc[0]))
    truncated[-1] = truncated[-1] or not terminated[-1]  # the recording stopped here
    return dict(
        frames=np.stack(frames), actions=np.stack(actions), rewards=np.asarray(rewards, np.float32),
        success=np.asarray(success), terminated=np.asarray(terminated), truncated=np.asarray(truncated),
        control_mode=S.CONTROL_MODE, **{**dataclasses.asdict(plan), "source": source},
    )


def _worker_init(env_module: str | None) -> None:
    init_render_worker()
    S.import_env_module(env_module)
    S.register_all()


def _record_shard(args) -> tuple[str, dict]:
    shard_name, plans, config = args
    episodes = [record_episode(plan, config) for plan in plans]
    entry = write_shard(Path(config.out) / shard_name, episodes)
    return shard_name, entry


# --------------------------------------------------------------------------- driver side
def shard_name(index: int) -> str:
    return f"shard_{index:05d}.h5"


def prepare_out_dir(config: CollectConfig) -> CollectConfig:
    """Create or validate the output folder; return the config to use (the folder's, on --resume)."""
    out = Path(config.out)
    manifest_path = out / MANIFEST_NAME
    if config.overwrite and out.exists():
        shutil.rmtree(out)
    if not manifest_path.exists():
        if out.exists() and any(p for p in out.iterdir() if not p.name.startswith(".")):
            raise DatasetError(f"{out} exists and is not a roboscape dataset; choose another --out or pass --overwrite")
        out.mkdir(parents=True, exist_ok=True)
        return config
    manifest = read_manifest(out)
    if manifest["config_hash"] == config_hash(config.content_dict()):
        return config
    if not config.resume:
        theirs = manifest["config"]
        ours = config.content_dict()
        diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        raise DatasetError(f"{out} was made with a different config (differs in: {', '.join(diff)}); pass --resume "
                           "to continue it with its own config, or --overwrite to delete it and start again")
    stored = dict(manifest["config"])
    stored["perturb"] = PerturbConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored["perturb"].items()})
    for key in ("tasks", "scenes", "source_mix"):
        stored[key] = tuple(stored[key])
    return dataclasses.replace(config, **stored)


def collect(config: CollectConfig, progress: bool = True) -> dict:
    """Record the dataset described by ``config``; returns the final manifest."""
    from tqdm import tqdm

    config = prepare_out_dir(config)
    out = Path(config.out)
    plans = plan_episodes(config)
    per = config.episodes_per_shard
    shards = {shard_name(k): plans[k * per:(k + 1) * per] for k in range((len(plans) + per - 1) // per)}
    manifest_path = out / MANIFEST_NAME
    manifest = read_manifest(out) if manifest_path.exists() else new_manifest(config.content_dict())
    # A shard renamed into place whose manifest update was lost to a crash is recorded again
    # (episodes are deterministic, so the result is the same); leftover temp files are removed.
    for name in shards:
        if name not in manifest["shards"] and (out / name).exists():
            (out / name).unlink()
    for tmp in out.glob(".*.tmp"):
        tmp.unlink()
    pending = [(name, plans_, config) for name, plans_ in shards.items() if name not in manifest["shards"]]
    manifest["episodes"] = config.episodes
    bar = tqdm(total=len(plans), initial=len(plans) - sum(len(p[1]) for p in pending), unit="episode",
               desc="collect", disable=not progress)
    started = time.time()
    if pending:
        workers = max(1, min(config.workers, len(pending)))
        ctx = mp.get_context("spawn")  # SAPIEN/Vulkan state does not survive fork
        with ctx.Pool(workers, initializer=_worker_init, initargs=(config.env_module,)) as pool:
            for name, entry in pool.imap_unordered(_record_shard, pending):
                manifest["shards"][name] = entry
                atomic_write_json(manifest_path, manifest)
                bar.update(len(entry["episodes"]))
    bar.close()
    manifest["counts"] = manifest_counts(manifest)
    manifest["collect_seconds"] = manifest.get("collect_seconds", 0.0) + time.time() - started
    atomic_write_json(manifest_path, manifest)
    return manifest


__all__ = ["CollectConfig", "EpisodePlan", "collect", "make_env", "plan_episodes", "record_episode"]
