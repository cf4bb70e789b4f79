"""Evaluation plan: cells, episode counts (per cell or per split over factors), seeds, instructions."""

from collections import Counter

import numpy as np
import pytest

from roboscape_r.data import scenes as S
from roboscape_r.envs.seeds import EVAL_SEED_BASE, MAX_EVAL_RUN_SEED, TRAIN_SEED_LIMIT, eval_seed, is_eval_seed, train_seed
from roboscape_r.eval.plan import chunk_jobs, episodes_per_cell, instruction_for, plan_jobs, resolve_cells
from roboscape_r.eval.rollout import PolicyOutputError, check_actions, check_policy
from tests.eval.policies import FrameHashPolicy


def test_eval_seeds_never_meet_training_seeds():
    assert eval_seed(0, 0) == EVAL_SEED_BASE >= TRAIN_SEED_LIMIT
    assert eval_seed(MAX_EVAL_RUN_SEED, 999_999) < 2**32  # ManiSkill seeds numpy's RandomState: < 2**32
    assert eval_seed(1, 0) > eval_seed(0, 999_999)
    rng = np.random.default_rng(0)
    assert not any(is_eval_seed(train_seed(rng)) for _ in range(10_000))
    with pytest.raises(ValueError, match="evaluation seed must be in"):
        eval_seed(MAX_EVAL_RUN_SEED + 1, 0)
    with pytest.raises(ValueError, match="episode index"):
        eval_seed(0, -1)


def test_cells_of_splits_and_scene_names():
    cells = resolve_cells(["PickCube", "StackCube"], ["in-domain", "ood-size-small"])
    in_domain = [c for c in cells if c.split == "in-domain"]
    assert len(in_domain) == 2 * len(S.scenes_in_split("in-domain"))
    # object size does not apply to StackCube
    assert [(c.task, c.scene) for c in cells if c.split == "ood"] == [("PickCube", "ood-size-small")]
    cell = next(c for c in cells if c.scene == "ood-size-small")
    assert (cell.env_id, cell.factor, cell.severity) == ("RoboScapeR-PickCube-ood-size-small-v1", "object_size", 1)


@pytest.mark.parametrize("tasks, scenes, match", [
    (["PickCube"], ["ood-colour-purple"], "unknown scene 'ood-colour-purple'; valid: in-domain, ood, id-default-wood"),
    (["PickCub"], ["in-domain"], r"unknown task\(s\) \['PickCub'\]; valid tasks: PickCube, PushCube"),
    (["StackCube"], ["ood-size-small"], "no \\(task, scene\\) pair applies"),
])
def test_unknown_names_list_the_valid_ones(tasks, scenes, match):
    with pytest.raises(ValueError, match=match):
        resolve_cells(tasks, scenes)


def test_per_split_count_spreads_evenly_over_factors():
    cells = resolve_cells(["PickCube", "StackCube"], ["ood"])
    counts = episodes_per_cell(cells, None, 13)
    for task, factors in (("PickCube", 6), ("StackCube", 5)):
        per_factor = Counter()
        for cell, n in counts.items():
            if cell.task == task:
                per_factor[cell.factor] += n
        assert sum(per_factor.values()) == 13 and len(per_factor) == factors
        assert max(per_factor.values()) - min(per_factor.values()) <= 1
    # within a factor the scenes (severities) share its episodes
    color = [n for cell, n in counts.items() if cell.task == "PickCube" and cell.factor == "object_color"]
    assert sorted(color) == [1, 2]  # 13 = 3 + 2 * 5: the first factor gets 3
    assert episodes_per_cell(cells, 3, None) == {cell: 3 for cell in cells}


@pytest.mark.parametrize("episodes, per_split, match", [
    (None, None, "give exactly one of"), (2, 3, "give exactly one of"), (0, None, "--episodes must be >= 1"),
    (None, 4, "fewer than the 6 factors of PickCube"),
])
def test_bad_counts(episodes, per_split, match):
    with pytest.raises(ValueError, match=match):
        episodes_per_cell(resolve_cells(["PickCube"], ["ood"]), episodes, per_split)


def test_jobs_are_deterministic_paired_and_chunked():
    cells = resolve_cells(["PickCube", "PushCube"], ["id-default-wood", "ood-light-dim"])
    jobs = plan_jobs(cells, episodes_per_cell(cells, 5, None), run_seed=0, video_episodes=2)
    assert jobs == plan_jobs(cells, episodes_per_cell(cells, 5, None), run_seed=0, video_episodes=2)
    assert len(jobs) == 20 and sum(j.record_video for j in jobs) == 8
    by_cell = {}
    for job in jobs:
        by_cell.setdefault(job.cell, []).append(job)
        assert job.instruction in S.instructions()[job.cell.task]
        assert is_eval_seed(job.seed)
    # episode i starts from the same seed (and wording) in every scene: paired comparisons
    seeds = {tuple(j.seed for j in js) for js in by_cell.values()}
    assert len(seeds) == 1
    assert instruction_for("PickCube", jobs[0].seed) == jobs[0].instruction
    assert len({instruction_for("PickCube", eval_seed(0, i)) for i in range(40)}) > 1, "wordings should vary"
    assert {j.seed for j in plan_jobs(cells, {c: 5 for c in cells}, 1, 0)}.isdisjoint({j.seed for j in jobs})
    chunks = chunk_jobs(jobs, 2)
    assert [len(c) for c in chunks] == [2, 2, 1] * 4
    assert all(len({j.cell.env_id for j in c}) == 1 for c in chunks)
    assert [j for c in chunks for j in c] == jobs
    with pytest.raises(ValueError, match="--envs-per-worker must be >= 1"):
        chunk_jobs(jobs, 0)
    with pytest.raises(ValueError, match="--video-episodes must be >= 0"):
        plan_jobs(cells, {c: 1 for c in cells}, 0, -1)


def test_check_actions_accepts_the_protocol_and_names_violations():
    out = check_actions(np.full((3, 7), 2.0), 3)
    assert out.dtype == np.float32 and out.shape == (3, 7) and out.max() == 1.0  # clipped into the action space
    with pytest.raises(PolicyOutputError, match=r"shape \(3, 6\) for 3 frame\(s\) \(env X\); expected \(3, 7\)"):
        check_actions(np.zeros((3, 6)), 3, " (env X)")
    with pytest.raises(PolicyOutputError, match=r"shape \(7,\) for 1 frame"):
        check_actions(np.zeros(7), 1)
    bad = np.zeros((2, 7))
    bad[1, 4] = np.nan
    with pytest.raises(PolicyOutputError, match=r"non-finite actions \(NaN or inf\) in row\(s\) \[1\]"):
        check_actions(bad, 2)
    with pytest.raises(PolicyOutputError, match="not a numeric array"):
        check_actions([["a"] * 7], 1)


def test_check_policy_attributes():
    assert check_policy(FrameHashPolicy(image_size=48)) == 48

    class NoAct:
        action_dim, image_size = 7, 64

    class SixDof(FrameHashPolicy):
        action_dim = 6

    with pytest.raises(PolicyOutputError, match="has no act"):
        check_policy(NoAct())
    with pytest.raises(PolicyOutputError, match="action_dim is 6"):
        check_policy(SixDof())
