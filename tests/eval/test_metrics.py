"""Wilson intervals against published values; aggregation of synthetic episode records."""

import math

import pytest

from roboscape_r.eval.metrics import aggregate, format_table, summarize, wilson_interval


@pytest.mark.parametrize("successes, trials, low, high", [
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I, method 3
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
    # symmetric and boundary cases
    (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0000),
])
def test_wilson_matches_published_values(successes, trials, low, high):
    got = wilson_interval(successes, trials)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_is_symmetric_and_contains_the_estimate():
    for n in (1, 7, 50):
        for k in range(n + 1):
            low, high = wilson_interval(k, n)
            assert 0.0 <= low <= k / n <= high <= 1.0
            mirror = wilson_interval(n - k, n)
            assert low == pytest.approx(1 - mirror[1]) and high == pytest.approx(1 - mirror[0])
    # more trials, narrower interval
    assert math.fsum(wilson_interval(50, 100)) == pytest.approx(1.0)
    assert wilson_interval(50, 100)[1] - wilson_interval(50, 100)[0] < wilson_interval(5, 10)[1] - wilson_interval(5, 10)[0]


@pytest.mark.parametrize("successes, trials, match", [(1, 0, "trials must be > 0"), (-1, 5, "successes must be in"),
                                                      (6, 5, "successes must be in")])
def test_wilson_bad_input(successes, trials, match):
    with pytest.raises(ValueError, match=match):
        wilson_interval(successes, trials)


def record(task, scene, split, factor, once, end, length, ret):
    return dict(task=task, scene=scene, env_id=f"RoboScapeR-{task}-{scene}-v1", split=split, factor=factor,
                severity=1 if split == "ood" else 0, success_once=once, success_at_end=end, episode_length=length,
                **{"return": ret})


@pytest.fixture
def records():
    rows = []
    # PickCube in-domain: 3 of 4 succeed once, 2 of 4 at the end
    for once, end, length, ret in [(True, True, 10, 5.0), (True, False, 20, 3.0), (True, True, 30, 4.0),
                                   (False, False, 50, 1.0)]:
        rows.append(record("PickCube", "id-default-wood", "in-domain", "base", once, end, length, ret))
    # PickCube OOD: two factors, one scene each
    rows += [record("PickCube", "ood-color-purple", "ood", "object_color", True, True, 15, 4.0),
             record("PickCube", "ood-color-purple", "ood", "object_color", False, False, 50, 0.5),
             record("PickCube", "ood-light-dim", "ood", "lighting", False, False, 50, 0.0)]
    rows.append(record("PushCube", "ood-light-dim", "ood", "lighting", True, True, 8, 6.0))
    return rows


def test_summarize_counts_rates_and_means(records):
    summary = summarize(records[:4])
    assert summary["episodes"] == 4
    assert summary["success_once"]["count"] == 3 and summary["success_once"]["rate"] == 0.75
    assert summary["success_at_end"]["count"] == 2 and summary["success_at_end"]["rate"] == 0.5
    assert summary["success_once"]["ci95"] == pytest.approx(list(wilson_interval(3, 4)))
    assert summary["mean_episode_length"] == 27.5
    assert summary["mean_return"] == 3.25
    assert summary["std_return"] == pytest.approx(1.707825, rel=1e-5)


def test_aggregate_groups_by_cell_split_and_factor(records):
    tables = aggregate(records)
    cells = {(r["task"], r["scene"]): r for r in tables["cells"]}
    assert set(cells) == {("PickCube", "id-default-wood"), ("PickCube", "ood-color-purple"),
                          ("PickCube", "ood-light-dim"), ("PushCube", "ood-light-dim")}
    assert cells[("PickCube", "ood-color-purple")]["factor"] == "object_color"
    assert cells[("PickCube", "ood-color-purple")]["episodes"] == 2
    task_split = {(r["task"], r["split"]): r for r in tables["task_split"]}
    assert task_split[("PickCube", "ood")]["episodes"] == 3
    assert task_split[("PickCube", "ood")]["success_once"]["count"] == 1
    assert task_split[("PickCube", "in-domain")]["success_at_end"]["rate"] == 0.5
    factor = {(r["split"], r["factor"]): r for r in tables["factor"]}
    assert factor[("ood", "lighting")]["episodes"] == 2  # pooled over PickCube and PushCube
    assert factor[("ood", "lighting")]["success_once"]["count"] == 1
    assert factor[("ood", "lighting")]["mean_return"] == 3.0
    task_factor = {(r["task"], r["factor"]): r for r in tables["task_factor"]}
    assert task_factor[("PickCube", "lighting")]["success_once"]["rate"] == 0.0
    split = {r["split"]: r for r in tables["split"]}
    assert split["ood"]["episodes"] == 4 and split["in-domain"]["episodes"] == 4
    text = format_table(tables, "task_split")
    assert "PickCube" in text and "0.75 [" in text


def test_aggregate_bad_input(records):
    with pytest.raises(ValueError, match="no episodes"):
        aggregate([])
    broken = dict(records[0])
    del broken["success_at_end"]
    with pytest.raises(ValueError, match="lacks \\['success_at_end'\\]"):
        aggregate([records[1], broken])
