"""Which ManiSkill env seeds training may use and which are reserved for evaluation.

ManiSkill seeds its episode RNG with ``numpy.random.RandomState(seed)``, which takes seeds in
``[0, 2**32)``. We split that range in two halves so that no evaluation episode ever starts from
a state a policy (or the dataset a world model learned from) was trained on:

* training (dataset collection, the simulator training env): seeds in ``[0, 2**31)``;
* evaluation: ``EVAL_SEED_BASE + seed * EVAL_SEEDS_PER_RUN_SEED + episode_index``, all in
  ``[2**31, 2**32)``. The episode index counts episodes within one (task, scene) cell, so episode
  ``i`` of every scene starts from the same seed: scene comparisons are paired.
"""

from __future__ import annotations

import numpy as np

TRAIN_SEED_LIMIT = 2**31
"""Training env seeds lie in ``[0, TRAIN_SEED_LIMIT)``."""
EVAL_SEED_BASE = 2**31
"""The smallest evaluation env seed."""
EVAL_SEEDS_PER_RUN_SEED = 1_000_000
"""Episode indices available per evaluation run seed (``--seed``)."""
MAX_EVAL_RUN_SEED = (2**32 - EVAL_SEED_BASE) // EVAL_SEEDS_PER_RUN_SEED - 1
"""The largest evaluation run seed that keeps every env seed below ``2**32``."""

EVAL_SEED_SCHEME = (
    f"env seed = {EVAL_SEED_BASE} + run_seed * {EVAL_SEEDS_PER_RUN_SEED} + episode index within the "
    f"(task, scene) cell; training env seeds are < {TRAIN_SEED_LIMIT}, so evaluation never reuses a training seed"
)


def eval_seed(run_seed: int, episode_index: int) -> int:
    """The ManiSkill env seed of evaluation episode ``episode_index`` of a cell.

    Raises:
        ValueError: ``run_seed`` outside ``[0, MAX_EVAL_RUN_SEED]`` or ``episode_index`` outside
            ``[0, EVAL_SEEDS_PER_RUN_SEED)``.
    """
    if not 0 <= run_seed <= MAX_EVAL_RUN_SEED:
        raise ValueError(f"evaluation seed must be in [0, {MAX_EVAL_RUN_SEED}], got {run_seed}")
    if not 0 <= episode_index < EVAL_SEEDS_PER_RUN_SEED:
        raise ValueError(f"episode index must be in [0, {EVAL_SEEDS_PER_RUN_SEED}), got {episode_index}")
    return EVAL_SEED_BASE + run_seed * EVAL_SEEDS_PER_RUN_SEED + episode_index


def train_seed(rng: np.random.Generator) -> int:
    """Draw one training env seed (in ``[0, TRAIN_SEED_LIMIT)``) from ``rng``."""
    return int(rng.integers(0, TRAIN_SEED_LIMIT))


def is_eval_seed(seed: int) -> bool:
    """Whether ``seed`` lies in the evaluation range."""
    return EVAL_SEED_BASE <= seed < 2**32
