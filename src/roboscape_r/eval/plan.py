"""Which episodes an evaluation runs: its (task, scene) cells, episodes per cell, seeds, instructions.

Everything here is a pure function of the requested tasks, scenes, counts and run seed, so an
evaluation is reproducible and its episodes do not depend on the number of worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roboscape_r.data import scenes as S
from roboscape_r.envs.seeds import eval_seed


@dataclass(frozen=True)
class Cell:
    """One (task, scene) pair to evaluate and what we know about its scene."""

    task: str
    scene: str
    """Our scene name, or the env id of a scene registered by a user module."""
    env_id: str
    split: str
    """``in-domain``, ``ood``, or ``user`` for a user env id registered without a SceneSpec."""
    factor: str
    """``base`` for in-domain scenes, the OOD factor otherwise (``user`` when unknown)."""
    severity: int = 0


@dataclass(frozen=True)
class EpisodeJob:
    """One evaluation episode: where, from which seed, with which instruction."""

    cell: Cell
    episode_index: int
    """Index of the episode within its cell (the seed and the video selection derive from it)."""
    seed: int
    instruction: str
    record_video: bool


def _user_cell(uid: str) -> Cell:
    """A cell for an env id registered by a user module; split/factor from its SceneSpec if any."""
    from mani_skill.utils.registration import REGISTERED_ENVS

    task = S.task_of_env_id(uid)
    scene_kwargs = REGISTERED_ENVS[uid].default_kwargs.get("scene") if uid in REGISTERED_ENVS else None
    if isinstance(scene_kwargs, dict) and "split" in scene_kwargs:
        return Cell(task, uid, uid, scene_kwargs["split"], scene_kwargs.get("factor", "user"),
                    int(scene_kwargs.get("severity", 0)))
    return Cell(task, uid, uid, "user", "user")


def resolve_cells(tasks: list[str], scenes: list[str]) -> list[Cell]:
    """The cells of ``tasks`` x ``scenes``, validated.

    ``scenes`` entries are ``in-domain``, ``ood``, our scene names, or env ids registered (for
    example by ``--env-module``); an env id names its own task and is evaluated whatever ``tasks``
    says. Call :func:`roboscape_r.data.scenes.import_env_module` first for user env ids.

    Raises:
        ValueError: an unknown task or scene (the message lists the valid ones), or no cell at all.
    """
    S.register_all()
    tasks = S.check_tasks(list(tasks))
    cells: list[Cell] = []
    for scene in S.resolve_scenes(list(scenes)):
        if scene in S.SCENES:
            spec = S.SCENES[scene]
            cells += [Cell(t, scene, S.env_id(t, scene), spec.split, spec.factor, spec.severity)
                      for t in tasks if S.scene_applies(t, scene)]
        else:
            cells.append(_user_cell(scene))
    if not cells:
        raise ValueError(f"no (task, scene) pair applies for tasks {tasks} and scenes {scenes}")
    return list(dict.fromkeys(cells))


def _spread(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal counts, larger counts first."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def episodes_per_cell(cells: list[Cell], episodes: int | None, episodes_per_split: int | None) -> dict[Cell, int]:
    """How many episodes each cell gets.

    Exactly one of the two counts is given: ``episodes`` per cell, or ``episodes_per_split`` per
    (task, split), spread evenly over the split's factors and, within a factor, over its scenes
    (so an OOD split weighs every factor alike whatever its number of severities).

    Raises:
        ValueError: both or neither count given, a count < 1, or a per-split count smaller than
            the number of factors of some (task, split) (a factor would go unevaluated).
    """
    if (episodes is None) == (episodes_per_split is None):
        raise ValueError("give exactly one of --episodes (per cell) and --episodes-per-split "
                         f"(per task and split), got episodes={episodes}, episodes_per_split={episodes_per_split}")
    if episodes is not None:
        if episodes < 1:
            raise ValueError(f"--episodes must be >= 1, got {episodes}")
        return {cell: episodes for cell in cells}
    assert episodes_per_split is not None
    if episodes_per_split < 1:
        raise ValueError(f"--episodes-per-split must be >= 1, got {episodes_per_split}")
    counts: dict[Cell, int] = {}
    groups: dict[tuple[str, str], dict[str, list[Cell]]] = {}
    for cell in cells:
        groups.setdefault((cell.task, cell.split), {}).setdefault(cell.factor, []).append(cell)
    for (task, split), by_factor in groups.items():
        if episodes_per_split < len(by_factor):
            raise ValueError(f"--episodes-per-split {episodes_per_split} is fewer than the {len(by_factor)} factors "
                             f"of {task} in split {split!r} ({', '.join(by_factor)}); use at least {len(by_factor)}")
        for factor_count, factor_cells in zip(_spread(episodes_per_split, len(by_factor)), by_factor.values()):
            for cell, count in zip(factor_cells, _spread(factor_count, len(factor_cells))):
                counts[cell] = count
    return {cell: counts[cell] for cell in cells}


def instruction_for(task: str, seed: int) -> str:
    """The instruction of an episode: a paraphrase of ``task`` drawn from a generator seeded by the
    episode's env seed, so the same seed gets the same wording in every scene."""
    paraphrases = S.instructions()[task]
    return paraphrases[int(np.random.default_rng([seed, 7]).integers(len(paraphrases)))]


def plan_jobs(cells: list[Cell], counts: dict[Cell, int], run_seed: int, video_episodes: int) -> list[EpisodeJob]:
    """Every episode of the evaluation, grouped by cell (cells in order, episodes by index).

    Raises:
        ValueError: a bad ``run_seed`` (see :func:`roboscape_r.envs.seeds.eval_seed`) or
            ``video_episodes < 0``.
    """
    if video_episodes < 0:
        raise ValueError(f"--video-episodes must be >= 0, got {video_episodes}")
    jobs = []
    for cell in cells:
        for i in range(counts[cell]):
            seed = eval_seed(run_seed, i)
            jobs.append(EpisodeJob(cell, i, seed, instruction_for(cell.task, seed), i < video_episodes))
    return jobs


def chunk_jobs(jobs: list[EpisodeJob], batch_size: int) -> list[list[EpisodeJob]]:
    """Split jobs into lockstep batches of at most ``batch_size`` episodes of one env id each.

    Raises:
        ValueError: ``batch_size < 1``.
    """
    if batch_size < 1:
        raise ValueError(f"--envs-per-worker must be >= 1, got {batch_size}")
    chunks: list[list[EpisodeJob]] = []
    for job in jobs:
        if chunks and len(chunks[-1]) < batch_size and chunks[-1][0].cell.env_id == job.cell.env_id:
            chunks[-1].append(job)
        else:
            chunks.append([job])
    return chunks
