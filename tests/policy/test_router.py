"""The per-task router behind load_policy: rows go to their task's policy, bad files are named."""

import json

import numpy as np
import pytest
import torch

from roboscape_r.checkpoint import CheckpointError, save_checkpoint
from roboscape_r.policy.api import load_policy
from roboscape_r.policy.checkpoint import POLICY_KIND, policy_checkpoint_config
from roboscape_r.policy.network import ActorCritic
from roboscape_r.policy.router import ROUTER_FILE, TaskRouter, write_router
from tests.policy.conftest import tiny_policy_config

INSTRUCTIONS = {"TaskA": ["do a", "please do a"], "TaskB": ["do b"]}


def save_policy(path, seed, **config):
    torch.manual_seed(seed)
    model = ActorCritic(tiny_policy_config(**config))
    with torch.no_grad():
        model.actor_mean[-1].weight.mul_(100.0)
    return save_checkpoint(path, kind=POLICY_KIND, config=policy_checkpoint_config("ppo", model, {}),
                           model_state=model.state_dict(), step=5)


@pytest.fixture
def router_dir(tmp_path):
    folder = tmp_path / "cell"
    a, b = save_policy(folder / "a.pt", 0), save_policy(folder / "b.pt", 1)
    write_router(folder / ROUTER_FILE, {"TaskA": a, "TaskB": b}, INSTRUCTIONS)
    return folder


def test_rows_go_to_the_policy_of_their_task(router_dir, hash_encoder):
    router = load_policy(router_dir, text_encoder=hash_encoder)
    assert isinstance(router, TaskRouter) and router.image_size == 16 and router.action_dim == 7
    a = load_policy(router_dir / "a.pt", text_encoder=hash_encoder)
    b = load_policy(router_dir / "b.pt", text_encoder=hash_encoder)
    frames = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    texts = ["do b", "do a", "please do a", "do b"]
    actions = router.act(frames, texts)
    assert actions.dtype == np.float32 and actions.shape == (4, 7)
    np.testing.assert_array_equal(actions[[1, 2]], a.act(frames[[1, 2]], texts[1:3]))
    np.testing.assert_array_equal(actions[[0, 3]], b.act(frames[[0, 3]], ["do b", "do b"]))
    assert not np.allclose(actions[0], a.act(frames[:1], ["do b"])[0])  # B's policy, not A's


def test_the_router_folder_can_move(router_dir, tmp_path, hash_encoder):
    moved = router_dir.rename(tmp_path / "elsewhere")
    assert json.loads((moved / ROUTER_FILE).read_text())["policies"] == {"TaskA": "a.pt", "TaskB": "b.pt"}
    load_policy(moved / ROUTER_FILE, text_encoder=hash_encoder).act(np.zeros((1, 16, 16, 3), np.uint8), ["do a"])


def test_project_tasks_take_their_instructions_from_the_scene_registry(tmp_path, hash_encoder):
    from roboscape_r.data.scenes import instructions

    write_router(tmp_path / ROUTER_FILE, {"PickCube": save_policy(tmp_path / "p.pt", 0)})
    router = load_policy(tmp_path, text_encoder=hash_encoder)
    text = instructions()["PickCube"][0]
    assert router.act(np.zeros((1, 16, 16, 3), np.uint8), [text]).shape == (1, 7)


def test_bad_routers_are_refused_with_the_reason(router_dir, tmp_path, hash_encoder):
    router = load_policy(router_dir, text_encoder=hash_encoder)
    with pytest.raises(ValueError, match=r"\['do c'\] belong to none of the routed tasks \['TaskA', 'TaskB'\]"):
        router.act(np.zeros((2, 16, 16, 3), np.uint8), ["do a", "do c"])
    file = router_dir / ROUTER_FILE
    document = json.loads(file.read_text())
    file.write_text(json.dumps({**document, "policies": {"TaskA": "missing.pt"}}))
    with pytest.raises(CheckpointError, match="task TaskA"):
        load_policy(router_dir, text_encoder=hash_encoder)
    file.write_text(json.dumps({**document, "version": 99}))
    with pytest.raises(CheckpointError, match="version 99"):
        load_policy(router_dir, text_encoder=hash_encoder)
    file.write_text("{not json")
    with pytest.raises(CheckpointError, match="not JSON"):
        load_policy(file, text_encoder=hash_encoder)
    file.write_text(json.dumps({**document, "instructions": {"TaskA": ["same"], "TaskB": ["same"]}}))
    with pytest.raises(ValueError, match="'same' belongs to both TaskA and TaskB"):
        load_policy(router_dir, text_encoder=hash_encoder)
    file.write_text(json.dumps({**document, "instructions": {"TaskA": ["x"]}}))
    with pytest.raises(ValueError, match=r"no instructions are known for task\(s\) \['TaskB'\]"):
        load_policy(router_dir, text_encoder=hash_encoder)
    big = save_policy(tmp_path / "big.pt", 2, image_size=32)
    write_router(file, {"TaskA": router_dir / "a.pt", "TaskB": big}, INSTRUCTIONS)
    with pytest.raises(ValueError, match="disagree on"):
        load_policy(router_dir, text_encoder=hash_encoder)
