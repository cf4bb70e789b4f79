"""`roboscape eval`: success rates of a policy in real ManiSkill, per cell, task x split and OOD factor.

One protocol for every policy (see :mod:`roboscape_r.eval.rollout`). Episodes are planned up front
(:mod:`roboscape_r.eval.plan`: cells, counts, seeds disjoint from training seeds, instructions),
cut into lockstep batches of one env id, and spread over a process pool (spawn context). Each
worker loads the policy once (from its checkpoint path, or unpickled when a policy object was
passed) and keeps the envs of its current env id. Results do not depend on the number of
workers: records are sorted back into plan order before aggregation.

Output folder: ``results.json`` (config, seed scheme, per-episode records, aggregated tables)
and ``videos/`` (MP4, GIF and a PNG frame strip of the first K episodes of every cell). While it
runs, finished episodes go to a journal (:mod:`roboscape_r.eval.journal`), so a rerun of an
interrupted evaluation runs only the episodes it had not finished.
"""

from __future__ import annotations

import dataclasses
import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roboscape_r.atomic import atomic_write_json
from roboscape_r.cpu import init_render_worker
from roboscape_r.data import scenes as S
from roboscape_r.envs.seeds import EVAL_SEED_SCHEME
from roboscape_r.eval.journal import EvalJournal, journal_key, policy_fingerprint
from roboscape_r.eval.metrics import METRIC_DEFINITIONS, aggregate
from roboscape_r.eval.plan import EpisodeJob, chunk_jobs, episodes_per_cell, plan_jobs, resolve_cells
from roboscape_r.eval.rollout import check_policy, horizon_of, run_episodes
from roboscape_r.eval.videos import write_episode_media

if TYPE_CHECKING:
    from roboscape_r.policy.api import Policy

RESULTS_NAME = "results.json"
DEFAULT_EPISODES_PER_CELL = 10
PROTOCOL = ("deterministic actions from Policy.act on the current RGB frame and the episode's instruction; "
            "every episode runs the full horizon from its seed (success does not end it, no partial resets); "
            "actions clipped to [-1, 1] in the pd_ee_delta_pose space")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluate a policy in ManiSkill scenes (in-domain and out-of-domain)."""

    policy: Path | None = None
    """Policy checkpoint, loaded with roboscape_r.load_policy (required on the command line)."""
    scenes: tuple[str, ...] = ("in-domain",)
    """`in-domain`, `ood`, scene names (`roboscape data scenes`), or env ids registered by --env-module."""
    tasks: tuple[str, ...] = ("PickCube", "PushCube", "PullCube", "StackCube")
    """Tasks to evaluate (env ids given in --scenes bring their own task)."""
    episodes: int | None = None
    """Episodes per (task, scene) cell (10 unless --episodes-per-split is given)."""
    episodes_per_split: int | None = None
    """Episodes per task and split instead, spread evenly over the split's factors, then their scenes."""
    max_steps: int | None = None
    """Steps per episode; default: each env id's registered time limit."""
    seed: int = 0
    """Evaluation run seed; env seeds are 2**31 + seed * 10**6 + episode index (training seeds are < 2**31)."""
    workers: int = 2
    """Worker processes, each rendering its own envs (1 runs in this process)."""
    envs_per_worker: int = 4
    """Episodes of one cell a worker steps in lockstep (one batched policy call per step)."""
    out: Path = Path("runs/eval")
    """Output folder for results.json and videos/."""
    video_episodes: int = 1
    """Record MP4/GIF videos and PNG frame strips of the first K episodes of every cell."""
    video_fps: int = 20
    """Frames per second of the videos."""
    video_scale: int = 4
    """Integer upscaling of video frames (64x64 is too small to watch)."""
    strip_every: int = 10
    """Steps between the frames of a PNG frame strip."""
    env_module: str | None = None
    """Python module to import first; it may register extra env ids (see README)."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")

    def per_cell_episodes(self) -> int | None:
        """The per-cell count to use: --episodes, or the default unless counting per split."""
        if self.episodes is None and self.episodes_per_split is None:
            return DEFAULT_EPISODES_PER_CELL
        return self.episodes


# --------------------------------------------------------------------------- worker side
class EpisodeWorker:
    """Holds one policy and the envs of the env id it is currently evaluating."""

    def __init__(self, policy: "Policy", image_size: int) -> None:
        self.policy = policy
        self.image_size = image_size
        self.env_id: str | None = None
        self.envs: list = []

    def run(self, jobs: list[EpisodeJob], horizon: int) -> list[dict]:
        """Run a lockstep batch of episodes of one env id (see :func:`run_episodes`)."""
        from roboscape_r.envs.maniskill_slots import make_held_env

        env_id = jobs[0].cell.env_id
        if env_id != self.env_id:  # chunks arrive grouped by env id: keep only the current one's envs
            self.close()
            self.env_id = env_id
        while len(self.envs) < len(jobs):
            self.envs.append(make_held_env(env_id, self.image_size))
        return run_episodes(self.envs, self.policy, jobs, horizon)

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs, self.env_id = [], None


_POOL_ARGS: tuple | None = None
_POOL_WORKER: EpisodeWorker | None = None


def _pool_init(policy_source: Any, env_module: str | None) -> None:
    # Only store the arguments: an exception in a pool initializer breaks the whole pool, so the
    # real set-up happens in the first task, where errors reach the caller with their message.
    global _POOL_ARGS
    _POOL_ARGS = (policy_source, env_module)


def _pool_run(jobs: list[EpisodeJob], horizon: int) -> list[dict]:
    global _POOL_WORKER
    if _POOL_WORKER is None:
        init_render_worker()  # one core per worker; the pool provides the parallelism
        policy_source, env_module = _POOL_ARGS
        S.import_env_module(env_module)
        S.register_all()
        policy = _load_policy(policy_source) if isinstance(policy_source, (str, Path)) else policy_source
        _POOL_WORKER = EpisodeWorker(policy, check_policy(policy))
    return _POOL_WORKER.run(jobs, horizon)


def _load_policy(path: str | Path) -> "Policy":
    from roboscape_r.policy import load_policy  # (= roboscape_r.load_policy) imported only when a path is given

    return load_policy(Path(path))


# --------------------------------------------------------------------------- driver side
def _run_chunks(chunks: list[list[EpisodeJob]], workers: int, policy: "Policy", image_size: int, policy_source: Any,
                env_module: str | None, horizons: dict[str, int], receive: Any) -> None:
    """Run every chunk, in this process (one worker) or over a spawn pool, passing each result to ``receive``."""
    if not chunks:
        return
    if workers == 1:
        worker = EpisodeWorker(policy, image_size)
        try:
            for chunk in chunks:
                receive(worker.run(chunk, horizons[chunk[0].cell.env_id]))
        finally:
            worker.close()
        return
    import multiprocessing as mp

    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_pool_init,
                               initargs=(policy_source, env_module))
    try:
        futures = [pool.submit(_pool_run, chunk, horizons[chunk[0].cell.env_id]) for chunk in chunks]
        for future in as_completed(futures):
            receive(future.result())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # do not wait for the queued chunks
        raise
    pool.shutdown()


def _policy_info(policy: Any, source: Path | None) -> dict:
    return {"path": str(source) if source is not None else None, "class": type(policy).__qualname__,
            "module": type(policy).__module__, "image_size": int(policy.image_size)}


def _json_config(config: EvalConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def evaluate(config: EvalConfig, policy: "Policy | None" = None, progress: bool = True) -> dict:
    """Evaluate a policy and write ``results.json`` and videos into ``config.out``.

    Args:
        config: what to evaluate and how.
        policy: a Policy-protocol object; when None it is loaded from ``config.policy``. With
            several workers an object is pickled to them (test doubles, scripted policies).
        progress: show a tqdm bar over episodes.

    Returns:
        The results dict written to ``config.out / results.json``.

    Raises:
        ValueError: unknown tasks/scenes, bad counts or seeds, no policy, a missing checkpoint,
            or a policy that breaks the protocol (:class:`roboscape_r.eval.rollout.PolicyOutputError`).
    """
    from tqdm import tqdm

    if policy is None:
        if config.policy is None:
            raise ValueError("no policy given; pass --policy CHECKPOINT")
        if not Path(config.policy).exists():
            raise ValueError(f"policy checkpoint {config.policy} does not exist; pass the path of a saved policy")
    S.import_env_module(config.env_module)
    cells = resolve_cells(list(config.tasks), list(config.scenes))
    counts = episodes_per_cell(cells, config.per_cell_episodes(), config.episodes_per_split)
    jobs = plan_jobs(cells, counts, config.seed, config.video_episodes)
    horizons = {cell.env_id: horizon_of(cell.env_id, config.max_steps) for cell in cells}
    if policy is None:
        policy = _load_policy(config.policy)
        policy_source: Any = Path(config.policy)
    else:
        policy_source = policy
    image_size = check_policy(policy)
    fingerprint = policy_fingerprint(policy)
    journal = EvalJournal(Path(config.out), journal_key(_json_config(config), fingerprint) if fingerprint else None)
    journal.load((job.cell.env_id, job.episode_index) for job in jobs)
    if journal.note and progress:
        print(f"[eval] {journal.note}", flush=True)
    finished = journal.done_ids()
    chunks = chunk_jobs([job for job in jobs if (job.cell.env_id, job.episode_index) not in finished],
                        config.envs_per_worker)
    workers = max(1, min(config.workers, len(chunks)))

    video_dir = Path(config.out) / "videos"
    records: list[dict] = list(journal.records)
    videos: list[dict] = list(journal.videos)
    bar = tqdm(total=len(jobs), initial=len(records), unit="episode", desc="eval", disable=not progress)
    start = time.perf_counter()

    def receive(batch: list[dict]) -> None:
        # Videos are written as episodes arrive, so frames never pile up in memory.
        batch_videos = []
        for record in batch:
            if "frames" in record:
                batch_videos.append(write_episode_media(record, video_dir, config.video_fps, config.video_scale,
                                                        config.strip_every))
                del record["frames"], record["success_per_step"]
        journal.append(batch, batch_videos, journal.elapsed_s + time.perf_counter() - start)
        videos.extend(batch_videos)
        records.extend(batch)
        bar.update(len(batch))

    try:
        _run_chunks(chunks, workers, policy, image_size, policy_source, config.env_module, horizons, receive)
    finally:
        bar.close()
        journal.close()
    elapsed_s = journal.elapsed_s + time.perf_counter() - start
    rank = {(job.cell.env_id, job.episode_index): k for k, job in enumerate(jobs)}
    episodes = sorted(records, key=lambda r: rank[(r["env_id"], r["episode_index"])])
    videos.sort(key=lambda v: rank[(v["env_id"], v["episode_index"])])
    env_steps = sum(r["horizon"] for r in episodes)
    results = {
        "format": "roboscape-eval-v1",
        "policy": _policy_info(policy, config.policy),
        "config": _json_config(config),
        "protocol": PROTOCOL,
        "seed_scheme": EVAL_SEED_SCHEME,
        "definitions": METRIC_DEFINITIONS,
        "episodes": episodes,
        **aggregate(episodes),
        "videos": videos,
        "timing": {"elapsed_s": elapsed_s, "env_steps": env_steps, "env_steps_per_s": env_steps / max(elapsed_s, 1e-9),
                   "workers": workers, "resumed_episodes": len(journal.records),
                   "resumed_elapsed_s": journal.elapsed_s},
    }
    atomic_write_json(Path(config.out) / RESULTS_NAME, results)
    journal.finish()
    return results
