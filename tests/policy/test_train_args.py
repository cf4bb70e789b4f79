"""`roboscape train-policy` and `roboscape train-bc` end to end on tiny assets (subprocess smoke runs)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from roboscape_r.policy import load_policy
from tests.envs.wm_env_helpers import make_assets


def run_cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "roboscape_r.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_train_policy_in_world_model_then_load(tmp_path):
    assets = make_assets(tmp_path / "assets")
    out = tmp_path / "run"
    proc = run_cli("train-policy", "--out", out, "--env", "wm", "--wm.tokenizer-path", assets["tokenizer_path"],
                   "--wm.wm-act-path", assets["wm_act_path"], "--wm.wm-txt-path", assets["wm_txt_path"],
                   "--wm.dataset", assets["dataset"], "--wm.tasks", "PickCube", "PushCube", "--wm.num-envs", "2",
                   "--wm.max-steps-per-episode", "6", "--wm.golden-length", "4", "--ppo.total-timesteps", "24",
                   "--ppo.num-steps", "12", "--ppo.device", "cpu", "--ppo.no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "24 env steps (finished)" in proc.stdout
    env = json.loads((out / "env.json").read_text())
    assert env["env"] == "wm" and env["reward"]["name"] == "general"
    policy = load_policy(out)
    actions = policy.act(np.zeros((1, 64, 64, 3), np.uint8), ["pick up the cube"])
    assert actions.shape == (1, 7) and np.isfinite(actions).all()


def test_train_policy_unknown_reward_lists_valid(tmp_path):
    assets = make_assets(tmp_path / "assets")
    proc = run_cli("train-policy", "--out", tmp_path / "run", "--wm.reward", "nope",
                   "--wm.tokenizer-path", assets["tokenizer_path"], "--wm.dataset", assets["dataset"])
    assert proc.returncode == 2
    assert "valid rewards" in proc.stderr and "general" in proc.stderr


@pytest.mark.parametrize("missing", ["wm-act-path"])
def test_train_policy_missing_checkpoint_named(tmp_path, missing):
    assets = make_assets(tmp_path / "assets")
    proc = run_cli("train-policy", "--out", tmp_path / "run", f"--wm.{missing}", tmp_path / "nope.pt",
                   "--wm.tokenizer-path", assets["tokenizer_path"], "--wm.dataset", assets["dataset"],
                   "--wm.wm-txt-path", assets["wm_txt_path"])
    assert proc.returncode != 0
    assert "nope.pt" in proc.stderr
