"""Collection on real ManiSkill (CPU rendering), resume after a kill, and the bad-input paths."""

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from roboscape_r.data.collect import CollectConfig, collect, prepare_out_dir
from roboscape_r.data.dataset import ClipDataset
from roboscape_r.data.format import DatasetError, check_dataset, iter_episode_meta, read_episode, read_manifest
from tests.conftest import write_fake_dataset

ROBOSCAPE = [sys.executable, "-m", "roboscape_r.cli"]
ALL_TASKS = ("PickCube", "PushCube", "PullCube", "StackCube")


def short_config(out: Path, **overrides) -> CollectConfig:
    base = dict(out=out, tasks=ALL_TASKS, scenes=("id-default-wood",), episodes=8, source_mix=(0.0, 0.0, 1.0),
                random_steps=5, workers=2, episodes_per_shard=2, seed=3)
    return CollectConfig(**{**base, **overrides})


def episodes_of(root: Path) -> dict[int, dict]:
    manifest = read_manifest(root)
    return {m["episode_index"]: read_episode(root / shard, m["episode_index"]) for shard, m in iter_episode_meta(manifest)}


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("collect") / "ds"
    collect(short_config(out), progress=False)
    return out


@pytest.mark.maniskill
def test_collect_every_task_and_read_back(collected):
    manifest = read_manifest(collected)
    metas = [m for _, m in iter_episode_meta(manifest)]
    assert sorted(m["task"] for m in metas) == sorted(ALL_TASKS * 2)
    assert check_dataset(collected) == []
    episode = episodes_of(collected)[0]
    assert episode["frames"].shape == (6, 64, 64, 3) and episode["frames"].dtype == np.uint8
    assert episode["actions"].shape == (5, 7) and np.abs(episode["actions"]).max() <= 1.0
    assert episode["control_mode"] == "pd_ee_delta_pose" and episode["source"] == "random"
    assert episode["frames"].std() > 10, "frames must show a rendered scene, not a blank image"
    clips = ClipDataset(collected, clip_len=4, split="all")
    assert len(clips) == 8 * 2 and clips[0]["frames"].shape == (4, 64, 64, 3)


@pytest.mark.maniskill
def test_rerun_skips_finished_episodes(collected):
    before = {p.name: p.stat().st_mtime_ns for p in collected.glob("shard_*.h5")}
    collect(short_config(collected), progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in collected.glob("shard_*.h5")} == before


@pytest.mark.maniskill
def test_expert_solves_pickcube(tmp_path):
    out = tmp_path / "expert"
    collect(short_config(out, tasks=("PickCube",), episodes=1, source_mix=(1.0, 0.0, 0.0), workers=1), progress=False)
    (meta,) = [m for _, m in iter_episode_meta(read_manifest(out))]
    assert meta["source"] == "expert" and meta["success_once"], meta


@pytest.mark.maniskill
def test_kill_and_resume_gives_the_same_episodes(tmp_path, collected):
    out = tmp_path / "killed"
    args = ["collect", "--out", str(out), "--tasks", *ALL_TASKS, "--scenes", "id-default-wood", "--episodes", "8",
            "--source-mix", "0", "0", "1", "--random-steps", "5", "--workers", "1", "--episodes-per-shard", "2",
            "--seed", "3"]
    proc = subprocess.Popen(ROBOSCAPE + args, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def shards_listed() -> int:
        try:
            return len(read_manifest(out)["shards"])
        except DatasetError:
            return 0

    deadline = time.time() + 240
    while time.time() < deadline and shards_listed() == 0:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    shards_at_kill = len(read_manifest(out)["shards"])
    assert 1 <= shards_at_kill < 4, "the kill should land mid-collection"
    assert check_dataset(out) == [], "a kill must leave no corrupt visible shard"
    subprocess.run(ROBOSCAPE + args, check=True, capture_output=True)
    resumed, straight = episodes_of(out), episodes_of(collected)
    assert sorted(resumed) == sorted(straight) == list(range(8))
    for i in straight:
        np.testing.assert_array_equal(resumed[i]["actions"], straight[i]["actions"])
        np.testing.assert_array_equal(resumed[i]["frames"], straight[i]["frames"])


@pytest.mark.maniskill
def test_env_module_hook_adds_a_scene(tmp_path):
    module_dir = tmp_path / "usermod"
    module_dir.mkdir()
    (module_dir / "my_scenes.py").write_text(textwrap.dedent("""
        from roboscape_r.data.scenes import SceneSpec, register_scene
        register_scene("PushCube", SceneSpec("user-green", "ood", "object_color", 1, object_rgba=(0, 1, 0, 1)),
                       env_id_override="MyLab-GreenPush-v1")
    """))
    env = {**os.environ, "PYTHONPATH": f"{module_dir}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = tmp_path / "user"
    result = subprocess.run(ROBOSCAPE + ["collect", "--out", str(out), "--tasks", "PushCube", "--scenes", "MyLab-GreenPush-v1",
                                         "--episodes", "1", "--source-mix", "0", "0", "1", "--random-steps", "3",
                                         "--workers", "1", "--env-module", "my_scenes"],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    (meta,) = [m for _, m in iter_episode_meta(read_manifest(out))]
    assert meta["env_id"] == "MyLab-GreenPush-v1" and meta["task"] == "PushCube"
    frames = episodes_of(out)[0]["frames"]
    green = (frames[0, ..., 1].astype(int) - frames[0, ..., 0].astype(int) > 80).sum()
    assert green > 4, "the user's green cube should be visible"


def test_different_config_is_refused_unless_resume_or_overwrite(tmp_path):
    out = tmp_path / "ds"
    config = short_config(out)
    prepare_out_dir(config)
    from roboscape_r.data.format import MANIFEST_NAME, atomic_write_json, new_manifest

    atomic_write_json(out / MANIFEST_NAME, new_manifest(config.content_dict()))
    changed = dataclasses.replace(config, seed=4)
    with pytest.raises(DatasetError, match="differs in: seed.*--resume.*--overwrite"):
        prepare_out_dir(changed)
    assert prepare_out_dir(dataclasses.replace(changed, resume=True)).seed == 3  # keeps the folder's config
    assert prepare_out_dir(dataclasses.replace(changed, overwrite=True)).seed == 4
    assert not (out / MANIFEST_NAME).exists()


def test_cli_unknown_task_and_scene(tmp_path):
    result = subprocess.run(ROBOSCAPE + ["collect", "--out", str(tmp_path / "x"), "--tasks", "PickCub"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "valid tasks: PickCube" in result.stderr
    result = subprocess.run(ROBOSCAPE + ["collect", "--out", str(tmp_path / "x"), "--scenes", "mars"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "unknown scene 'mars'" in result.stderr and "ood-color-purple" in result.stderr


def test_cli_data_check_and_summary(tmp_path):
    root = write_fake_dataset(tmp_path / "ds", [6, 7, 5, 8])
    ok = subprocess.run(ROBOSCAPE + ["data", "check", str(root)], capture_output=True, text=True)
    assert ok.returncode == 0 and "OK" in ok.stdout
    summary = subprocess.run(ROBOSCAPE + ["data", "summary", str(root)], capture_output=True, text=True)
    assert summary.returncode == 0, summary.stderr
    assert "PickCube" in summary.stdout and (root / "contact_sheet.png").stat().st_size > 1000
    shard = root / "shard_00001.h5"
    shard.write_bytes(shard.read_bytes()[:500])
    bad = subprocess.run(ROBOSCAPE + ["data", "check", str(root)], capture_output=True, text=True)
    assert bad.returncode == 1 and "shard_00001.h5" in bad.stdout and "shard_00000.h5" not in bad.stdout


def test_cli_data_scenes_lists_everything():
    result = subprocess.run(ROBOSCAPE + ["data", "scenes"], capture_output=True, text=True)
    assert result.returncode == 0
    for name in ("PickCube", "StackCube", "id-cyan-slate", "ood-distractors-4", "object_size"):
        assert name in result.stdout


@pytest.mark.maniskill
def test_planner_failing_before_its_first_step_records_random_actions(monkeypatch):
    from roboscape_r.data import collect as C
    from roboscape_r.data import scenes as S

    S.register_all()

    def failed_plan(planner_env, task, seed):
        planner_env.reset(seed=seed)
        return planner_env.unwrapped.get_state_dict(), [], [], False

    monkeypatch.setattr(C, "plan_expert", failed_plan)
    plan = C.EpisodePlan(0, "PushCube", "id-default-wood", S.env_id("PushCube", "id-default-wood"), "expert", 5, "x")
    episode = C.record_episode(plan, CollectConfig(random_steps=3))
    assert episode["source"] == "random" and len(episode["actions"]) == 3
