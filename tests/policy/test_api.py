"""The policy protocol (roboscape_r/policy/api.py): load_policy errors, act() validation and determinism."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import roboscape_r
from roboscape_r.checkpoint import CheckpointError, save_checkpoint
from roboscape_r.policy.api import Policy, load_policy
from roboscape_r.policy.checkpoint import POLICY_KIND, policy_checkpoint_config
from roboscape_r.policy.network import ActorCritic
from tests.policy.conftest import HashTextEncoder, tiny_policy_config


@pytest.fixture
def policy_file(tmp_path):
    torch.manual_seed(0)
    model = ActorCritic(tiny_policy_config())
    with torch.no_grad():  # make actions clearly non-zero and input-dependent
        model.actor_mean[-1].weight.mul_(100.0)
    return save_checkpoint(tmp_path / "policy.pt", kind=POLICY_KIND,
                           config=policy_checkpoint_config("bc", model, {}), model_state=model.state_dict(), step=7)


def frames(batch=3, size=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)


def test_act_returns_deterministic_float32_actions(policy_file, hash_encoder):
    policy = load_policy(policy_file, text_encoder=hash_encoder)
    assert policy.action_dim == 7 and policy.image_size == 16 and policy.step == 7 and policy.trainer == "bc"
    batch = frames()
    instructions = ["pick the cube", "push the cube", "pick the cube"]
    actions = policy.act(batch, instructions)
    assert actions.dtype == np.float32 and actions.shape == (3, 7)
    assert np.all(np.abs(actions) <= 1.0) and np.abs(actions).max() > 0.01
    np.testing.assert_array_equal(actions, policy.act(batch, instructions))  # deterministic
    np.testing.assert_array_equal(actions, policy.act(torch.from_numpy(batch), instructions))  # torch input
    assert not np.allclose(actions[0], actions[2])  # same instruction, different frame
    embedded = policy.act_embedded(batch, hash_encoder.encode(instructions))
    np.testing.assert_array_equal(actions, embedded)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 16, 16, 3), np.float32), "got dtype"),
    (np.zeros((16, 16, 3), np.uint8), "add a batch dimension"),
    (np.zeros((2, 3, 16, 16), np.uint8), "channel-first"),
    (np.zeros((2, 32, 32, 3), np.uint8), "trained on 16x16 frames"),
    (np.zeros((0, 16, 16, 3), np.uint8), "empty batch"),
])
def test_act_rejects_bad_frames(policy_file, hash_encoder, bad, match):
    policy = load_policy(policy_file, text_encoder=hash_encoder)
    with pytest.raises(ValueError, match=match):
        policy.act(bad, ["x"] * max(1, len(bad)))


def test_act_rejects_bad_instructions(policy_file, hash_encoder):
    policy = load_policy(policy_file, text_encoder=hash_encoder)
    with pytest.raises(TypeError, match="wrap a single instruction in a list"):
        policy.act(frames(1), "pick the cube")
    with pytest.raises(ValueError, match="3 frames but 2 instructions"):
        policy.act(frames(3), ["a", "b"])
    with pytest.raises(TypeError, match="numpy array or torch tensor"):
        policy.act([[0]], ["a"])
    with pytest.raises(ValueError, match=r"instruction embeddings must be float \(3, 8\)"):
        policy.act_embedded(frames(3), np.zeros((3, 5), np.float32))


def test_text_encoder_of_wrong_size_is_refused(policy_file):
    with pytest.raises(ValueError, match="gives 4-d embeddings but the policy takes 8-d"):
        load_policy(policy_file, text_encoder=HashTextEncoder(dim=4))


def test_default_text_encoder_is_built_lazily_by_name(policy_file, monkeypatch):
    import roboscape_r.worldmodel.text_encoder as text_encoder_module

    built = []

    def fake_make_text_encoder(name="minilm", **kwargs):
        built.append(name)
        return HashTextEncoder()

    monkeypatch.setattr(text_encoder_module, "make_text_encoder", fake_make_text_encoder)
    policy = load_policy(policy_file)
    assert built == []  # nothing loaded until instructions need embedding
    policy.act(frames(1), ["pick"])
    policy.act(frames(1), ["pick"])
    assert built == ["minilm"]


def test_load_policy_errors_name_the_problem(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_policy(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="holds no ckpt_NNNNNNNN.pt"):
        load_policy(tmp_path)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_policy(corrupt)
    tokenizer = save_checkpoint(tmp_path / "tok.pt", kind="tokenizer", config={}, model_state={}, step=0)
    with pytest.raises(CheckpointError, match="holds a 'tokenizer' model but a 'policy' was expected"):
        load_policy(tokenizer)
    no_config = save_checkpoint(tmp_path / "p1.pt", kind=POLICY_KIND, config={"trainer": "bc"}, model_state={}, step=0)
    with pytest.raises(CheckpointError, match="has no 'policy' config"):
        load_policy(no_config)
    bad_config = save_checkpoint(tmp_path / "p2.pt", kind=POLICY_KIND, config={"policy": {"image_size": 16}},
                                 model_state={}, step=0)
    with pytest.raises(CheckpointError, match="cannot rebuild"):
        load_policy(bad_config)
    wrong_weights = save_checkpoint(tmp_path / "p3.pt", kind=POLICY_KIND,
                                    config={"policy": tiny_policy_config().to_dict()}, model_state={}, step=0)
    with pytest.raises(CheckpointError, match="do not fit its PolicyConfig"):
        load_policy(wrong_weights)


def test_truncated_policy_file_is_reported(policy_file):
    data = policy_file.read_bytes()
    policy_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_policy(policy_file)


def test_tokenizer_policy_loads_from_its_file_alone(tmp_path, hash_encoder):
    import dataclasses

    from roboscape_r.policy.checkpoint import build_actor_critic
    from roboscape_r.tokenizer.model import Tokenizer
    from tests.policy.test_network import tiny_tokenizer_config

    torch.manual_seed(0)
    tokenizer = Tokenizer(tiny_tokenizer_config())
    tok_path = save_checkpoint(tmp_path / "tok.pt", kind="tokenizer", config=dataclasses.asdict(tokenizer.config),
                               model_state=tokenizer.state_dict(), step=0)
    model = build_actor_critic(tiny_policy_config(frame_preprocess="tokenizer", tokenizer_path=str(tok_path)))
    path = save_checkpoint(tmp_path / "policy.pt", kind=POLICY_KIND, config=policy_checkpoint_config("ppo", model, {}),
                           model_state=model.state_dict(), step=1)
    before = Policy(model, text_encoder=hash_encoder).act(frames(2), ["a", "b"])
    tok_path.unlink()  # the tokenizer's weights travel inside the policy checkpoint
    after = load_policy(path, text_encoder=hash_encoder).act(frames(2), ["a", "b"])
    np.testing.assert_array_equal(before, after)


def test_load_policy_is_reexported_lazily():
    from roboscape_r import load_policy as imported

    assert roboscape_r.load_policy is load_policy and imported is load_policy
    code = "import sys, roboscape_r; assert 'torch' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        roboscape_r.nothing_here  # noqa: B018


@pytest.mark.slow
def test_act_with_the_real_minilm_encoder(policy_file, tmp_path):
    # The default path: a 384-d policy embeds its instructions with the offline MiniLM encoder.
    torch.manual_seed(0)
    model = ActorCritic(tiny_policy_config(instruction_dim=384))
    path = save_checkpoint(tmp_path / "minilm_policy.pt", kind=POLICY_KIND,
                           config=policy_checkpoint_config("bc", model, {}), model_state=model.state_dict(), step=0)
    policy = load_policy(path)
    actions = policy.act(frames(2), ["pick up the red cube", "push the cube to the goal"])
    assert actions.shape == (2, 7) and actions.dtype == np.float32
    assert type(policy.text_encoder).__name__ == "MiniLMTextEncoder"
