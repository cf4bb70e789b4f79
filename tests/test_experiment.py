"""The experiment runner: presets, their validation, and a tiny resumable run (real ManiSkill eval)."""

import json
import shutil
import time
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from roboscape_r.checkpoint import latest_checkpoint
from roboscape_r.policy.checkpoint import read_policy_checkpoint, weights_digest
from roboscape_r.experiment import PRESET_DIR, Experiment, _override, load_preset, progress_estimate


def test_unknown_preset_lists_known():
    with pytest.raises(ValueError, match="presets: .*demo.*small"):
        load_preset("nope")


def test_preset_validation(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "methods": ["general", "dreamer"]}))
    with pytest.raises(ValueError, match="unknown methods \\['dreamer'\\]"):
        load_preset(str(path))
    path.write_text(yaml.safe_dump({"name": "bad", "methods": ["general"]}))
    with pytest.raises(ValueError, match="lacks the key 'tasks'"):
        load_preset(str(path))


@pytest.mark.parametrize("name", sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
def test_shipped_presets_map_onto_real_configs(name):
    # Every section must name real fields of the config it overrides (typos fail here, not hours in).
    from roboscape_r.envs.world_model import WorldModelEnvConfig
    from roboscape_r.eval.evaluate import EvalConfig
    from roboscape_r.policy.config import BCConfig, PPOConfig
    from roboscape_r.policy.train_args import SimEnvArgs
    from roboscape_r.reward.check import RewardCheckConfig
    from roboscape_r.worldmodel.evaluate import EvalWMConfig

    preset = load_preset(name)
    sections = {"bc": BCConfig, "ppo": PPOConfig, "sim_ppo": PPOConfig, "wm_env": WorldModelEnvConfig, "sim_env": SimEnvArgs,
                "eval": EvalConfig, "reward_check": RewardCheckConfig}
    for key, cls in sections.items():
        if preset.get(key) is not None:
            _override(cls, preset[key])
    wm_eval = dict(preset.get("wm_eval") or {})
    if "copy_from" in wm_eval:
        assert Path(wm_eval["copy_from"]).is_file()
    elif wm_eval:
        assert set(wm_eval) <= {f.name for f in fields(EvalWMConfig)}
    for path in preset["checkpoints"].values():
        assert Path(path).is_file(), f"preset {name} names a missing checkpoint {path}"


def test_override_rejects_unknown_option():
    from roboscape_r.policy.config import PPOConfig

    with pytest.raises(ValueError, match="unknown PPOConfig option\\(s\\) \\['num_stepz'\\]"):
        _override(PPOConfig, {"num_stepz": 3})
    assert _override(PPOConfig, {"num_steps": 3}).num_steps == 3


def test_progress_estimate_uses_the_median_time_of_done_cells_per_method():
    done = lambda train, evaluate: {"status": "done", "train_wall_s": train, "eval_wall_s": evaluate}  # noqa: E731
    statuses = {("bc", 0): done(100, 900), ("bc", 1): done(300, 1500), ("bc", 2): {"status": "trained", "eval_wall_s": 0},
                ("general", 0): done(600, 2400), ("general", 1): {}, ("sim", 0): {}}
    line = progress_estimate(statuses)
    # bc seed 2 was trained: its evaluation is left, the median of bc's (900, 1500) = 1200 s; general
    # seed 1 takes general's 3000 s; sim has no done cell: the median of all done cells (1000, 1800, 3000), 1800 s
    # -> 1200 + 3000 + 1800 = 6000 s = 1.7 h.
    assert line.startswith("3 of 6 cells done") and "about 1.7 h" in line, line
    assert "no time estimate" in progress_estimate({("bc", 0): {}})


def tiny_preset(tmp_path):
    """BC and the general reward on two tasks, with tiny fake checkpoints and data, in seconds."""
    from tests.envs.wm_env_helpers import make_assets

    assets = make_assets(tmp_path / "assets")
    return {
        "name": "tiny", "tasks": ["PickCube", "PushCube"], "seeds": [0], "methods": ["bc", "general"],
        "bc_warm_start": True, "env_steps_per_policy": 16,
        "checkpoints": {"tokenizer": str(assets["tokenizer_path"]), "wm_act": str(assets["wm_act_path"]),
                        "wm_txt": str(assets["wm_txt_path"]), "proxy": "unused.pt"},
        "data": {"train": str(assets["dataset"]), "heldout": str(assets["dataset"])},
        "bc": {"steps": 4, "batch_size": 4, "eval_every": 2, "progress": False, "sources": ["expert", "perturbed", "random"],
               "success_only": False},
        "ppo": {"num_steps": 8, "ckpt_every": 1, "progress": False, "device": "cpu"},
        "wm_env": {"num_envs": 2, "max_steps_per_episode": 6, "golden_length": 4},
        "eval_scenes": ["id-default-wood", "ood-color-purple"],
        "eval": {"episodes": 1, "max_steps": 3, "workers": 1, "video_episodes": 1},
    }


@pytest.mark.maniskill
def test_tiny_experiment_runs_and_resumes(tmp_path):
    preset = tiny_preset(tmp_path)
    out = tmp_path / "run"
    Experiment(preset, out).run()
    for method in ("bc", "general"):
        cell = json.loads((out / "cells" / method / "seed0" / "cell.json").read_text())
        assert cell["status"] == "done", cell.get("traceback")
        results = json.loads((out / "cells" / method / "seed0" / "eval" / "results.json").read_text())
        assert results  # written by the common evaluation protocol
    assert json.loads((out / "cells" / "general" / "seed0" / "cell.json").read_text())["env_steps"] == 16
    experiment = json.loads((out / "experiment.json").read_text())
    assert experiment["preset"] == "tiny" and experiment["methods"] == ["bc", "general"]
    mtime = (out / "cells" / "general" / "seed0" / "cell.json").stat().st_mtime
    Experiment(preset, out).run()  # finished cells are skipped
    assert (out / "cells" / "general" / "seed0" / "cell.json").stat().st_mtime == mtime


def test_cells_run_seed_by_seed_with_bc_first(tmp_path, monkeypatch):
    preset = load_preset("small")
    calls = []
    monkeypatch.setattr(Experiment, "_train", lambda self, method, seed, out: calls.append((seed, method)) or 0)
    monkeypatch.setattr(Experiment, "_evaluate", lambda self, policy_dir, seed, out: None)
    experiment = Experiment({**preset, "reward_check": None, "wm_eval": None}, tmp_path / "run")
    experiment._write_status("proxy", 0, status="done")  # finished cells are skipped
    experiment.run()
    order = ["bc", "general", "embedding", "proxy", "sim", "sim_per_task"]
    expected = [(seed, method) for seed in (0, 1, 2) for method in order if (seed, method) != (0, "proxy")]
    assert calls == expected


@pytest.mark.maniskill
def test_per_task_simulator_baseline_trains_one_policy_per_task_and_evaluates_through_a_router(tmp_path):
    from roboscape_r.policy.router import ROUTER_FILE
    from tests.envs.wm_env_helpers import make_assets

    assets = make_assets(tmp_path / "assets")
    preset = {
        "name": "tiny", "tasks": ["PickCube", "PushCube"], "seeds": [0], "methods": ["sim_per_task"],
        "bc_warm_start": False, "env_steps_per_policy": 16,
        "checkpoints": {"tokenizer": str(assets["tokenizer_path"]), "wm_act": "unused.pt", "wm_txt": "unused.pt",
                        "proxy": "unused.pt"},
        "data": {"train": str(assets["dataset"]), "heldout": str(assets["dataset"])},
        "ppo": {"num_steps": 8, "ckpt_every": 1, "progress": False, "device": "cpu"},
        "sim_env": {"num_envs": 1, "num_workers": 0},
        "eval_scenes": ["id-default-wood"],
        "eval": {"episodes": 1, "max_steps": 2, "workers": 1, "video_episodes": 0},
    }
    out = tmp_path / "run"
    Experiment(preset, out).run()
    cell = out / "cells" / "sim_per_task" / "seed0"
    status = json.loads((cell / "cell.json").read_text())
    assert status["status"] == "done", status.get("traceback")
    assert status["env_steps"] == 16  # the method's budget, split evenly over its two tasks
    for task in ("PickCube", "PushCube"):
        env = json.loads((cell / "train" / task / "env.json").read_text())
        assert env["env"] == "sim" and env["args"]["sim"]["tasks"] == [task], env
    merged = json.loads((cell / "train" / "env.json").read_text())
    assert merged["per_task"] == ["PickCube", "PushCube"] and merged["env_steps_per_task"] == 8
    assert all(any(task in env_id for env_id in merged["env_ids"]) for task in ("PickCube", "PushCube"))
    router = json.loads((cell / "train" / ROUTER_FILE).read_text())
    assert router["policies"] == {"PickCube": "PickCube", "PushCube": "PushCube"}
    rows = [json.loads(line) for line in (cell / "train" / "metrics.jsonl").read_text().splitlines()]
    assert [r["task"] for r in rows] == ["PickCube"] * (len(rows) // 2) + ["PushCube"] * (len(rows) // 2)
    assert rows[-1]["global_step"] == 16
    results = json.loads((cell / "eval" / "results.json").read_text())
    assert sorted({e["task"] for e in results["episodes"]}) == ["PickCube", "PushCube"]


def test_cells_record_the_revision_of_the_code_that_ran_not_a_later_head(tmp_path, monkeypatch):
    import roboscape_r.experiment as experiment_module

    preset = {**load_preset("small"), "seeds": [0], "methods": ["bc"], "reward_check": None, "wm_eval": None}
    monkeypatch.setattr(experiment_module, "git_revision", lambda: "started-at")
    experiment = Experiment(preset, tmp_path / "run")
    monkeypatch.setattr(experiment_module, "git_revision", lambda: "moved-on")  # a commit lands mid-run
    monkeypatch.setattr(Experiment, "_train", lambda self, method, seed, out: 0)
    monkeypatch.setattr(Experiment, "_evaluate", lambda self, policy_dir, seed, out: None)
    experiment.run()
    cell = json.loads((tmp_path / "run" / "cells" / "bc" / "seed0" / "cell.json").read_text())
    assert cell["train_git_revision"] == cell["eval_git_revision"] == "started-at"
    assert json.loads((tmp_path / "run" / "experiment.json").read_text())["git_revision"] == "started-at"


def test_git_revision_marks_uncommitted_changes(tmp_path):
    import subprocess

    from roboscape_r.experiment import git_revision

    assert git_revision(tmp_path) == "unknown"  # not a checkout
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    (tmp_path / "a.txt").write_text("one")
    git("add", "a.txt")
    git("commit", "-q", "-m", "one")
    clean = git_revision(tmp_path)
    assert len(clean) == 40 and "+" not in clean
    (tmp_path / "untracked.txt").write_text("ignored by the mark")
    assert git_revision(tmp_path) == clean
    (tmp_path / "a.txt").write_text("two")
    assert git_revision(tmp_path) == clean + "+uncommitted"


def test_sim_ppo_overrides_ppo_for_the_simulator_cells_only(tmp_path, monkeypatch):
    import roboscape_r.policy.train_args as train_args
    import roboscape_r.policy.router as router

    seen = {}

    def fake_run(args):
        seen[(args.env, args.out.name)] = args.ppo
        return type("Result", (), {"finished": True, "global_step": args.ppo.total_timesteps})()

    monkeypatch.setattr(train_args, "run_train_policy", fake_run)
    monkeypatch.setattr(router, "write_router", lambda *a, **k: None)
    monkeypatch.setattr("roboscape_r.report.run_folder.read_metrics_jsonl", lambda path: ([], []))
    preset = {**load_preset("small"), "bc_warm_start": False, "ppo": {"num_steps": 40, "target_kl": 0.05},
              "sim_ppo": {"num_steps": 640}}
    experiment = Experiment(preset, tmp_path / "run")
    for method in ("general", "sim", "sim_per_task"):
        out = tmp_path / method
        if method == "sim_per_task":
            for task in experiment.tasks:
                (out / task).mkdir(parents=True)
                (out / task / "env.json").write_text(json.dumps({"reward": "dense", "env_ids": [task]}))
        experiment._train(method, 0, out)
    assert seen[("wm", "general")].num_steps == 40
    assert seen[("sim", "sim")].num_steps == 640 and seen[("sim", "sim")].target_kl == 0.05
    assert {seen[("sim", task)].num_steps for task in experiment.tasks} == {640}
    assert "sim_ppo" in experiment.cell_settings("sim") and "sim_ppo" not in experiment.cell_settings("general")


def test_a_cell_another_process_is_running_is_skipped_not_run_twice(tmp_path, monkeypatch):
    from roboscape_r.atomic import try_lock

    preset = {**load_preset("small"), "seeds": [0], "methods": ["bc", "general"], "reward_check": None,
              "wm_eval": None}
    calls = []
    monkeypatch.setattr(Experiment, "_train", lambda self, method, seed, out: calls.append(method) or 0)
    monkeypatch.setattr(Experiment, "_evaluate", lambda self, policy_dir, seed, out: None)
    experiment = Experiment(preset, tmp_path / "run")
    with try_lock(experiment.cell_dir("bc", 0) / ".lock") as held:  # as if another run were training BC
        assert held
        experiment.run()
    assert calls == ["general"]
    assert not experiment._status("bc", 0)  # untouched: its owner writes its status
    experiment.run()  # the lock is released: BC runs now, general is done
    assert calls == ["general", "bc"]


def test_runs_with_disjoint_only_keep_every_method_in_the_experiment_record(tmp_path, monkeypatch):
    preset = {**load_preset("small"), "seeds": [0], "reward_check": None, "wm_eval": None}
    monkeypatch.setattr(Experiment, "_train", lambda self, method, seed, out: 0)
    monkeypatch.setattr(Experiment, "_evaluate", lambda self, policy_dir, seed, out: None)
    out = tmp_path / "run"
    Experiment(preset, out, only=("proxy", "bc")).run()
    assert json.loads((out / "experiment.json").read_text())["methods"] == ["bc", "proxy"]
    Experiment(preset, out, only=("sim",)).run()
    assert json.loads((out / "experiment.json").read_text())["methods"] == ["bc", "proxy", "sim"]


def test_try_lock_is_exclusive_and_released(tmp_path):
    from roboscape_r.atomic import try_lock

    with try_lock(tmp_path / "x.lock") as first:
        with try_lock(tmp_path / "x.lock") as second:
            assert first and not second
    with try_lock(tmp_path / "x.lock") as again:
        assert again


def test_a_lock_held_by_a_killed_process_is_free_again(tmp_path):
    import subprocess
    import sys
    import time

    from roboscape_r.atomic import try_lock

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom roboscape_r.atomic import try_lock\n"
        f"with try_lock({str(tmp_path / 'x.lock')!r}) as held:\n"
        "    print(held, flush=True)\n    time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        with try_lock(tmp_path / "x.lock") as held:
            assert not held
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    with try_lock(tmp_path / "x.lock") as held:  # the lock file is still there; the lock is not
        assert held and (tmp_path / "x.lock").exists()


def test_a_cell_made_with_other_preset_values_is_refused_by_name(tmp_path, monkeypatch):
    preset = {**load_preset("small"), "seeds": [0], "methods": ["bc", "general"], "reward_check": None, "wm_eval": None}
    monkeypatch.setattr(Experiment, "_train", lambda self, method, seed, out: 0)
    monkeypatch.setattr(Experiment, "_evaluate", lambda self, policy_dir, seed, out: None)
    Experiment(preset, tmp_path / "run").run()
    cell = json.loads((tmp_path / "run" / "cells" / "general" / "seed0" / "cell.json").read_text())
    assert cell["settings"]["ppo"] == preset["ppo"] and cell["status"] == "done"
    Experiment(preset, tmp_path / "run").run()  # same values: skipped
    changed = {**preset, "ppo": {**preset["ppo"], "target_kl": 0.5}}
    with pytest.raises(ValueError, match=r"cell general/seed0 .* other preset values for \['ppo'\].*move .*seed0 away"):
        Experiment(changed, tmp_path / "run").run()
    # BC does not depend on PPO's values: only the method whose settings changed is refused
    Experiment({**changed, "methods": ["bc"]}, tmp_path / "run").run()


def test_a_checkpoint_retrained_in_place_is_caught_too(tmp_path, monkeypatch):
    checkpoint = tmp_path / "wm_act.pt"
    checkpoint.write_bytes(b"first weights")
    preset = {**load_preset("small"), "seeds": [0], "methods": ["general"], "reward_check": None, "wm_eval": None,
              "bc_warm_start": False}
    preset["checkpoints"] = {**preset["checkpoints"], "wm_act": str(checkpoint)}
    monkeypatch.setattr(Experiment, "_train", lambda self, method, seed, out: 0)
    monkeypatch.setattr(Experiment, "_evaluate", lambda self, policy_dir, seed, out: None)
    Experiment(preset, tmp_path / "run").run()
    checkpoint.write_bytes(b"retrained weights")  # same path, new contents
    with pytest.raises(ValueError, match=r"other preset values for \['checkpoint_digests'\]"):
        Experiment(preset, tmp_path / "run").run()
    # a cell recorded before digests were kept is compared on what it recorded
    cell = tmp_path / "run" / "cells" / "general" / "seed0" / "cell.json"
    status = json.loads(cell.read_text())
    del status["settings"]["checkpoint_digests"]
    cell.write_text(json.dumps(status))
    Experiment(preset, tmp_path / "run").run()


def test_final_stages_rerun_when_their_models_change(tmp_path, monkeypatch):
    """The reward check and the world-model table are redone, the old output kept aside, when a
    checkpoint they read is retrained; with the same models they are skipped."""
    import roboscape_r.reward.check as check

    ckpts = {name: tmp_path / f"{name}.pt" for name in ("tokenizer", "wm_act", "wm_txt", "proxy")}
    for path in ckpts.values():
        path.write_bytes(b"v1")
    shipped = tmp_path / "eval_wm_metrics.json"
    shipped.write_text('{"splits": {}}')
    calls = []

    def fake_check(config):
        calls.append(config.out)
        time.sleep(0.01)
        config.out.mkdir(parents=True, exist_ok=True)
        (config.out / "reward_check.json").write_text(json.dumps({"run": len(calls)}))

    monkeypatch.setattr(check, "run_reward_check", fake_check)
    preset = {**load_preset("small"), "seeds": [], "checkpoints": {k: str(v) for k, v in ckpts.items()},
              "wm_eval": {"copy_from": str(shipped)}}
    out = tmp_path / "run"
    Experiment(preset, out).run()
    took = json.loads((out / "experiment.json").read_text())["stage_wall_s"]
    Experiment(preset, out).run()
    assert len(calls) == 1, "same models: skipped"
    assert json.loads((out / "experiment.json").read_text())["stage_wall_s"] == took, "a skip keeps the stage's time"
    assert took["reward_check"] >= 0.01
    assert json.loads((out / "wm_eval" / "metrics.json").read_text()) == {"splits": {}}

    ckpts["wm_txt"].write_bytes(b"retrained")
    shipped.write_text('{"splits": {"in-domain": {}}}')
    Experiment(preset, out).run()
    assert len(calls) == 2
    assert json.loads((out / "reward_check.replaced-1" / "reward_check.json").read_text()) == {"run": 1}
    assert json.loads((out / "reward_check" / "reward_check.json").read_text()) == {"run": 2}
    assert json.loads((out / "wm_eval" / "metrics.json").read_text()) == {"splits": {"in-domain": {}}}
    assert (out / "wm_eval.replaced-1" / "metrics.json").is_file()


def test_a_final_stage_another_process_is_running_is_skipped(tmp_path, monkeypatch):
    """A second run (e.g. `--only bc` once BC is done) may run the final stages beside the cells."""
    import roboscape_r.reward.check as check
    from roboscape_r.atomic import try_lock

    calls = []

    def fake_check(config):
        calls.append(config.out)
        config.out.mkdir(parents=True, exist_ok=True)
        (config.out / "reward_check.json").write_text("{}")

    monkeypatch.setattr(check, "run_reward_check", fake_check)
    ckpts = {name: tmp_path / f"{name}.pt" for name in ("tokenizer", "wm_act", "wm_txt", "proxy")}
    for path in ckpts.values():
        path.write_bytes(b"v1")
    preset = {**load_preset("small"), "seeds": [], "checkpoints": {k: str(v) for k, v in ckpts.items()},
              "wm_eval": None}
    out = tmp_path / "run"
    out.mkdir()
    with try_lock(out / ".reward_check.lock") as held:  # as if another run were checking the rewards
        assert held
        Experiment(preset, out).run()
    assert calls == []
    assert "reward_check" not in json.loads((out / "experiment.json").read_text())["stage_wall_s"]
    Experiment(preset, out).run()  # released: it runs now
    assert len(calls) == 1


def test_a_bc_checkpoint_lost_with_its_machine_is_retrained_and_must_reproduce_the_evaluated_run(tmp_path):
    # A run folder restored from scripts/snapshot_run.py keeps BC's metrics and results, not its
    # checkpoint; PPO needs the checkpoint, and it must be the policy that was evaluated.
    preset = tiny_preset(tmp_path)
    experiment = Experiment(preset, tmp_path / "run")
    bc_dir = experiment.cell_dir("bc", 0) / "train"
    experiment._train("bc", 0, bc_dir)
    experiment._write_status("bc", 0, status="done", trained=True)
    recorded = (bc_dir / "metrics.jsonl").read_text()
    original = read_policy_checkpoint(bc_dir)["model"]
    experiment._write_slims(bc_dir)
    shutil.rmtree(bc_dir / "checkpoints")
    experiment._restore_bc_checkpoint(0)  # rebuilt from the slim copy, not retrained
    assert not (bc_dir.parent / "train.restore").exists()
    assert weights_digest(read_policy_checkpoint(bc_dir)["model"]) == weights_digest(original)

    (bc_dir / "policy.slim.pt").unlink()  # no slim copy: retrained, and it must reproduce the run
    shutil.rmtree(bc_dir / "checkpoints")
    experiment._restore_bc_checkpoint(0)
    assert latest_checkpoint(bc_dir / "checkpoints") is not None
    assert (bc_dir / "metrics.jsonl").read_text() == recorded  # the evaluated run's record is kept
    assert not (bc_dir.parent / "train.restore").exists()
    experiment._restore_bc_checkpoint(0)  # a checkpoint there: nothing to do

    rows = [json.loads(line) for line in recorded.splitlines()]
    rows[-1]["losses/bc_loss"] *= 1.01  # as if another dataset had been collected
    (bc_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    shutil.rmtree(bc_dir / "checkpoints")
    with pytest.raises(RuntimeError, match="does not reproduce the evaluated run .*losses/bc_loss at step"):
        experiment._restore_bc_checkpoint(0)
    assert latest_checkpoint(bc_dir / "checkpoints") is None  # PPO would not start from the wrong policy


def test_a_training_interrupted_on_another_machine_resumes_from_its_snapshot_as_from_its_checkpoint(tmp_path):
    # scripts/snapshot_run.py writes a slim copy with training state of a cell still training;
    # on a new machine the experiment rebuilds the checkpoint from it before training goes on.
    import importlib.util

    spec = importlib.util.spec_from_file_location("snapshot_run", Path(__file__).resolve().parents[1] / "scripts" / "snapshot_run.py")
    snapshot_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(snapshot_run)
    preset = {**tiny_preset(tmp_path), "env_steps_per_policy": 48}
    first = Experiment({**preset, "ppo": {**preset["ppo"], "run_updates": 1}}, tmp_path / "run")
    first._write_experiment({})
    first._train("bc", 0, first.cell_dir("bc", 0) / "train")
    first._write_status("bc", 0, status="done", trained=True)
    with pytest.raises(RuntimeError, match="stopped at 16 env steps"):  # after one of three updates
        first._train("general", 0, first.cell_dir("general", 0) / "train")
    first._write_status("general", 0, status="started")
    assert latest_checkpoint(first.cell_dir("general", 0) / "train" / "checkpoints").name == "ckpt_00000001.pt"

    moved = tmp_path / "new_machine"
    shutil.copytree(tmp_path / "run", moved, ignore=shutil.ignore_patterns("checkpoints"))
    written = snapshot_run._training_slims(tmp_path / "run", moved)
    assert [p.relative_to(moved).as_posix() for p in written] == ["cells/general/seed0/train/resume.slim.pt"]
    second = Experiment(preset, moved)
    second._restore_policies(second.cell_dir("general", 0) / "train", resume_training=True)
    second._train("general", 0, second.cell_dir("general", 0) / "train")
    Experiment(preset, tmp_path / "run")._train("general", 0, first.cell_dir("general", 0) / "train")
    resumed = read_policy_checkpoint(second.cell_dir("general", 0) / "train")
    original = read_policy_checkpoint(first.cell_dir("general", 0) / "train")
    assert resumed["step"] == original["step"] == 3
    assert weights_digest(resumed["model"]) == weights_digest(original["model"])


def test_the_datasets_of_a_preset_can_be_given_on_the_command_line(tmp_path, monkeypatch):
    # scripts/demo.sh collects into $DEMO_OUT and must run the experiment on that data.
    from roboscape_r.experiment import ExperimentArgs, run_experiment

    seen = {}
    monkeypatch.setattr(Experiment, "run", lambda self: seen.update(self.preset["data"]))
    run_experiment(ExperimentArgs(preset="demo", out=tmp_path / "run", train_data=tmp_path / "d",
                                  heldout_data=tmp_path / "h", report=False))
    assert seen == {"train": str(tmp_path / "d"), "heldout": str(tmp_path / "h")}
    run_experiment(ExperimentArgs(preset="demo", out=tmp_path / "run", report=False))
    assert seen == load_preset("demo")["data"]
