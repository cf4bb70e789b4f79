"""Evaluation in real ManiSkill (short episodes): results JSON, videos, worker pool, user envs, errors."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from roboscape_r.eval import EvalConfig, PolicyOutputError, evaluate
from roboscape_r.eval.evaluate import RESULTS_NAME
from tests.eval.policies import FrameHashPolicy, NaNAfterPolicy, WrongShapePolicy

ROBOSCAPE = [sys.executable, "-m", "roboscape_r.cli"]
TWO_SCENES = ("id-default-wood", "ood-color-purple")


def short_config(out: Path, **overrides) -> EvalConfig:
    base = dict(scenes=TWO_SCENES, tasks=("PickCube",), episodes=2, max_steps=12, workers=1, envs_per_worker=2,
                out=out, video_episodes=1, strip_every=5)
    return EvalConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    policy = FrameHashPolicy()
    results = evaluate(short_config(out), policy, progress=False)
    return out, results, policy


@pytest.mark.maniskill
def test_results_json_episodes_and_tables(in_process):
    out, results, policy = in_process
    assert json.loads((out / RESULTS_NAME).read_text()) == json.loads(json.dumps(results))
    episodes = results["episodes"]
    assert [(e["scene"], e["episode_index"]) for e in episodes] == [(s, i) for s in TWO_SCENES for i in range(2)]
    assert policy.calls == 2 * 12, "one batched act() call per step for the two lockstep episodes of a cell"
    for e in episodes:
        assert e["horizon"] == 12 and 1 <= e["episode_length"] <= 12
        assert e["seed"] >= 2**31 and e["instruction"]
        assert np.isfinite(e["return"]) and e["return"] > 0, "normalized dense reward is positive"
        assert e["success_once"] or not e["success_at_end"]
    assert episodes[0]["seed"] == episodes[2]["seed"], "episode i of every scene starts from the same seed"
    cells = {c["scene"]: c for c in results["cells"]}
    assert cells["ood-color-purple"]["split"] == "ood" and cells["ood-color-purple"]["factor"] == "object_color"
    assert cells["id-default-wood"]["episodes"] == 2
    assert {(r["task"], r["split"]) for r in results["task_split"]} == {("PickCube", "in-domain"), ("PickCube", "ood")}
    assert "2**31" in results["seed_scheme"] or str(2**31) in results["seed_scheme"]
    assert results["policy"]["class"] == "FrameHashPolicy" and results["timing"]["env_steps"] == 48


@pytest.mark.maniskill
def test_videos_and_frame_strips(in_process):
    out, results, _ = in_process
    assert len(results["videos"]) == 2, "first episode of each cell"
    entry = results["videos"][0]
    video = iio.imread(out / entry["mp4"])
    assert video.shape[0] == 13 and video.shape[1:] == (256, 256, 3)  # reset frame + 12 steps, 4x upscaled
    gif = iio.imread(out / entry["gif"])
    assert gif.shape[0] == 13
    assert video.std() > 10, "the video must show a rendered scene"
    strip = iio.imread(out / entry["strip"])
    assert strip.shape[0] == 2 * 64 + 4 and strip.shape[1] == 4 * (2 * 64 + 4)  # frames 0, 5, 10, 12


@pytest.mark.maniskill
def test_results_do_not_depend_on_batching(in_process, tmp_path):
    _, results, _ = in_process
    again = evaluate(short_config(tmp_path / "b1", envs_per_worker=1, video_episodes=0), FrameHashPolicy(),
                     progress=False)
    assert again["episodes"] == results["episodes"]


@pytest.mark.maniskill
def test_an_interrupted_evaluation_resumes(in_process, tmp_path, monkeypatch):
    """A crash after two of four episodes, then a rerun: only the other two run, and the results
    are those of a straight run."""
    import importlib

    from roboscape_r.eval.journal import JOURNAL_NAME

    evaluate_module = importlib.import_module("roboscape_r.eval.evaluate")  # the package exports the function
    _, straight, _ = in_process
    source = tmp_path / "policy.pt"
    source.write_bytes(b"weights")
    config = short_config(tmp_path / "run", envs_per_worker=1)
    real_run, runs = evaluate_module.EpisodeWorker.run, []

    def crash_on_third(self, jobs, horizon):
        runs.append(jobs)
        if len(runs) == 3:
            raise KeyboardInterrupt("machine went away")
        return real_run(self, jobs, horizon)

    monkeypatch.setattr(evaluate_module.EpisodeWorker, "run", crash_on_third)
    first = FrameHashPolicy()
    first.source = source
    with pytest.raises(KeyboardInterrupt):
        evaluate(config, first, progress=False)
    assert (config.out / JOURNAL_NAME).is_file() and not (config.out / RESULTS_NAME).exists()
    monkeypatch.setattr(evaluate_module.EpisodeWorker, "run", real_run)

    second = FrameHashPolicy()
    second.source = source
    results = evaluate(config, second, progress=False)
    assert second.calls == 2 * 12, "only the two unfinished episodes ran"
    assert results["episodes"] == straight["episodes"] and results["timing"]["resumed_episodes"] == 2
    assert results["timing"]["elapsed_s"] > results["timing"]["resumed_elapsed_s"] > 0, "time counts over both runs"
    assert [v["episode_index"] for v in results["videos"]] == [0, 0]
    assert all((config.out / v["mp4"]).is_file() for v in results["videos"])
    assert not (config.out / JOURNAL_NAME).exists(), "the journal goes once results.json is written"

    source.write_bytes(b"retrained")  # other weights: nothing of the old run may be reused
    (config.out / RESULTS_NAME).unlink()
    with pytest.raises(KeyboardInterrupt):
        runs.clear()
        monkeypatch.setattr(evaluate_module.EpisodeWorker, "run", crash_on_third)
        evaluate(config, first, progress=False)
    monkeypatch.setattr(evaluate_module.EpisodeWorker, "run", real_run)
    source.write_bytes(b"weights again")
    third = FrameHashPolicy()
    third.source = source
    evaluate(config, third, progress=False)
    assert third.calls == 4 * 12 and (config.out / (JOURNAL_NAME + ".stale")).is_file()


@pytest.mark.maniskill
@pytest.mark.parametrize("policy, match", [
    (WrongShapePolicy(), r"policy.act returned actions of shape \(1, 6\) for 1 frame\(s\) "
                         r"\(env RoboScapeR-PickCube-id-default-wood-v1, seeds \[2147483648\], step 0\); expected \(1, 7\)"),
    (NaNAfterPolicy(nan_call=3), r"non-finite actions \(NaN or inf\) in row\(s\) \[0\] .*step 2\)"),
])
def test_policy_breaking_the_protocol_is_named(policy, match, tmp_path):
    config = short_config(tmp_path / "bad", scenes=("id-default-wood",), episodes=1, max_steps=4, video_episodes=0)
    with pytest.raises(PolicyOutputError, match=match):
        evaluate(config, policy, progress=False)
    assert not (tmp_path / "bad" / RESULTS_NAME).exists()


@pytest.mark.maniskill
def test_real_policy_object_follows_the_protocol(tmp_path):
    torch = pytest.importorskip("torch")
    from roboscape_r.policy.api import Policy
    from roboscape_r.policy.network import ActorCritic, PolicyConfig
    from tests.eval.policies import HashTextEncoder

    torch.manual_seed(0)
    config = PolicyConfig(image_size=64, instruction_dim=8, cnn_channels=(8, 16), cnn_kernels=(8, 4),
                          cnn_strides=(4, 2), image_feature_dim=32, instruction_hidden_dim=16, hidden_dim=32)
    policy = Policy(ActorCritic(config), text_encoder=HashTextEncoder(8))
    results = evaluate(short_config(tmp_path / "real", scenes=("id-default-wood",), episodes=1, max_steps=3,
                                    video_episodes=0), policy, progress=False)
    assert results["episodes"][0]["horizon"] == 3 and results["policy"]["class"] == "Policy"


def write_user_module(folder: Path) -> str:
    """A user module registering a green-cube PickCube scene under its own env id."""
    folder.mkdir()
    (folder / "my_eval_scenes.py").write_text(textwrap.dedent("""
        from roboscape_r.data.scenes import SceneSpec, register_scene
        register_scene("PickCube", SceneSpec("user-green", "ood", "object_color", 3, object_rgba=(0, 1, 0, 1)),
                       env_id_override="MyLab-GreenPick-v1")
    """))
    return "my_eval_scenes"


@pytest.mark.maniskill
def test_user_env_module_is_evaluated(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path / "usermod"))
    config = short_config(tmp_path / "user", scenes=("MyLab-GreenPick-v1",), episodes=1, max_steps=2,
                          env_module=write_user_module(tmp_path / "usermod"))
    results = evaluate(config, FrameHashPolicy(), progress=False)
    (episode,) = results["episodes"]
    assert episode["env_id"] == "MyLab-GreenPick-v1" and episode["task"] == "PickCube"
    assert (episode["split"], episode["factor"], episode["severity"]) == ("ood", "object_color", 3)
    frames = iio.imread(tmp_path / "user" / results["videos"][0]["mp4"])
    green = (frames[0, ..., 1].astype(int) - frames[0, ..., 0].astype(int) > 80).sum()
    assert green > 50, "the user scene's green cube should be visible"


@pytest.mark.slow
@pytest.mark.maniskill
def test_worker_pool_gives_the_in_process_results(in_process, tmp_path, monkeypatch):
    """Two spawned workers (one with a user env id) give the episodes the in-process run gave."""
    monkeypatch.syspath_prepend(str(tmp_path / "usermod"))  # spawned workers inherit sys.path
    config = short_config(tmp_path / "pool", scenes=(*TWO_SCENES, "MyLab-GreenPick-v1"), workers=2,
                          env_module=write_user_module(tmp_path / "usermod"))
    results = evaluate(config, FrameHashPolicy(), progress=False)
    assert results["timing"]["workers"] == 2
    _, reference, _ = in_process
    assert results["episodes"][:4] == reference["episodes"], "same episodes whatever the number of workers"
    assert [e["env_id"] for e in results["episodes"][4:]] == ["MyLab-GreenPick-v1"] * 2


def test_cli_bad_scene_lists_valid_ones(tmp_path):
    (tmp_path / "p.pt").write_bytes(b"")  # scenes are checked before the policy is loaded
    result = subprocess.run(ROBOSCAPE + ["eval", "--policy", str(tmp_path / "p.pt"), "--scenes", "ood-nope",
                                         "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown scene 'ood-nope'; valid: in-domain, ood, id-default-wood" in result.stderr


def test_cli_missing_policy_file(tmp_path):
    result = subprocess.run(ROBOSCAPE + ["eval", "--policy", str(tmp_path / "nope.pt"), "--tasks", "PickCube",
                                         "--scenes", "id-default-wood", "--out", str(tmp_path / "o")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "nope.pt does not exist" in result.stderr


@pytest.mark.slow
@pytest.mark.maniskill
def test_cli_end_to_end_with_a_policy_checkpoint(tmp_path):
    import torch

    from roboscape_r.checkpoint import save_checkpoint
    from roboscape_r.policy.checkpoint import POLICY_KIND, policy_checkpoint_config
    from roboscape_r.policy.network import ActorCritic, PolicyConfig

    torch.manual_seed(0)
    model = ActorCritic(PolicyConfig(image_size=64, cnn_channels=(8, 16), cnn_kernels=(8, 4), cnn_strides=(4, 2),
                                     image_feature_dim=32, instruction_hidden_dim=16, hidden_dim=32))
    ckpt = save_checkpoint(tmp_path / "policy.pt", kind=POLICY_KIND, config=policy_checkpoint_config("bc", model, {}),
                           model_state=model.state_dict(), step=0)
    out = tmp_path / "eval"
    result = subprocess.run(ROBOSCAPE + ["eval", "--policy", str(ckpt), "--tasks", "PushCube", "--scenes", "ood",
                                         "--episodes-per-split", "6", "--max-steps", "5", "--workers", "2",
                                         "--video-episodes", "1", "--out", str(out)],
                            capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / RESULTS_NAME).read_text())
    assert len(results["episodes"]) == 6
    assert {r["factor"] for r in results["factor"]} == {"object_color", "table_texture", "lighting", "camera",
                                                        "distractors", "object_size"}
    assert "success_once" in result.stdout and len(results["videos"]) == 6
