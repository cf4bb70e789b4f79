"""Actor-critic (roboscape_r/policy/network.py) and its tokenizer frame preprocessing (preprocess.py)."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch.distributions import Normal

from roboscape_r.checkpoint import CheckpointError, save_checkpoint
from roboscape_r.policy.checkpoint import build_actor_critic
from roboscape_r.policy.network import ActorCritic, PolicyConfig
from roboscape_r.tokenizer.config import TokenizerConfig
from roboscape_r.tokenizer.model import Tokenizer
from tests.policy.conftest import tiny_policy_config


def random_inputs(batch, size=16, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (batch, size, size, 3), generator=g, dtype=torch.uint8)
    return frames, torch.randn(batch, dim, generator=g)


def test_default_config_is_nature_cnn_at_64px():
    torch.manual_seed(0)
    model = ActorCritic(PolicyConfig())
    assert PolicyConfig().cnn_output_size == 4  # 64 -> 15 -> 6 -> 4
    frames, instructions = random_inputs(3, size=64, dim=384)
    out = model.act_and_value(frames, instructions)
    assert out.action.shape == (3, 7) and out.log_prob.shape == (3,) and out.value.shape == (3,)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000  # 0.62M: small enough for a 2-core CPU


def test_log_prob_and_entropy_are_those_of_the_gaussian():
    torch.manual_seed(0)
    model = ActorCritic(tiny_policy_config(init_log_std=-1.0))
    frames, instructions = random_inputs(5)
    out = model.act_and_value(frames, instructions)
    mean = model.action_mean(frames, instructions)
    dist = Normal(mean, torch.full_like(mean, np.exp(-1.0)))
    torch.testing.assert_close(out.log_prob, dist.log_prob(out.action).sum(-1))
    torch.testing.assert_close(out.entropy, dist.entropy().sum(-1))
    again = model.act_and_value(frames, instructions, out.action)  # scoring a given action reuses it
    torch.testing.assert_close(again.action, out.action)
    torch.testing.assert_close(again.log_prob, out.log_prob)


def test_deterministic_action_is_the_clipped_mean():
    torch.manual_seed(0)
    model = ActorCritic(tiny_policy_config())
    with torch.no_grad():
        model.actor_mean[-1].bias.copy_(torch.tensor([3.0, -3.0, 0.2, 0.0, 0.0, 0.0, 0.0]))
    frames, instructions = random_inputs(4)
    action = model.deterministic_action(frames, instructions)
    mean = model.action_mean(frames, instructions)
    torch.testing.assert_close(action, mean.clamp(-1, 1))
    assert action[:, 0].eq(1.0).all() and action[:, 1].eq(-1.0).all()


def test_value_depends_on_image_and_instruction():
    torch.manual_seed(0)
    model = ActorCritic(tiny_policy_config())
    frames, instructions = random_inputs(2)
    base = model.value(frames, instructions)
    assert not torch.allclose(base, model.value(frames.flip(1), instructions))
    assert not torch.allclose(base, model.value(frames, instructions + 1.0))


def test_config_round_trips_through_json_and_validates():
    config = tiny_policy_config()
    assert PolicyConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="reduce 16x16 frames to nothing"):
        PolicyConfig(image_size=16)  # NatureCNN kernels are too big for 16 px
    with pytest.raises(ValueError, match="equal length"):
        PolicyConfig(cnn_channels=(8, 8), cnn_kernels=(3,), cnn_strides=(1,))
    with pytest.raises(ValueError, match="needs tokenizer_path"):
        PolicyConfig(frame_preprocess="tokenizer")
    with pytest.raises(ValueError, match="frame_preprocess must be"):
        PolicyConfig(frame_preprocess="jpeg")
    with pytest.raises(ValueError, match="action_dim must be a positive int"):
        PolicyConfig(action_dim=0)


def test_check_inputs_names_the_problem():
    model = ActorCritic(tiny_policy_config())
    frames, instructions = random_inputs(2)
    with pytest.raises(ValueError, match=r"uint8 \(B, 16, 16, 3\)"):
        model.check_inputs(frames.float(), instructions)
    with pytest.raises(ValueError, match="instruction_dim=8"):
        model.check_inputs(frames, instructions[:, :4])
    with pytest.raises(ValueError, match="2 frames but 1 instruction"):
        model.check_inputs(frames, instructions[:1])


# --------------------------------------------------------------------- tokenizer preprocessing
def tiny_tokenizer_config(**overrides) -> TokenizerConfig:
    values = dict(image_size=16, grid_size=4, codebook_bits=6, stem_factor=4, channels=8, max_channels=8,
                  num_res_blocks=1, refine_channels=0, norm_groups=4)
    values.update(overrides)
    return TokenizerConfig(**values)


@pytest.fixture
def tokenizer_file(tmp_path):
    torch.manual_seed(0)
    tokenizer = Tokenizer(tiny_tokenizer_config()).eval()
    path = save_checkpoint(tmp_path / "tok.pt", kind="tokenizer", config=dataclasses.asdict(tokenizer.config),
                           model_state=tokenizer.state_dict(), step=0)
    return path, tokenizer


def test_tokenizer_preprocessing_round_trips_frames(tokenizer_file):
    path, tokenizer = tokenizer_file
    model = build_actor_critic(tiny_policy_config(frame_preprocess="tokenizer", tokenizer_path=str(path)))
    frames, _ = random_inputs(3)
    prepared = model.prepare_frames(frames)
    assert prepared.dtype == torch.uint8 and prepared.shape == frames.shape
    torch.testing.assert_close(prepared, tokenizer.decode(tokenizer.encode(frames)))
    assert not torch.equal(prepared, frames)
    # The tokenizer is frozen, stays in eval mode, and is not handed to the optimizer.
    model.train()
    assert not model.preprocessor.tokenizer.training
    trainable = {id(p) for p in model.trainable_parameters()}
    assert all(id(p) not in trainable for p in model.preprocessor.tokenizer.parameters())
    assert any(name.startswith("preprocessor.tokenizer.") for name in model.state_dict())


def test_identity_preprocessing_returns_frames_unchanged():
    model = ActorCritic(tiny_policy_config())
    frames, _ = random_inputs(2)
    assert model.prepare_frames(frames) is frames


def test_tokenizer_of_another_size_or_kind_is_refused(tmp_path, tokenizer_file):
    path, _ = tokenizer_file
    with pytest.raises(ValueError, match="takes 16x16 frames but PolicyConfig.image_size is 32"):
        build_actor_critic(tiny_policy_config(image_size=32, frame_preprocess="tokenizer", tokenizer_path=str(path)))
    other = save_checkpoint(tmp_path / "wm.pt", kind="wm_act", config={}, model_state={}, step=0)
    with pytest.raises(CheckpointError, match="'wm_act' model but a 'tokenizer'"):
        build_actor_critic(tiny_policy_config(frame_preprocess="tokenizer", tokenizer_path=str(other)))
