import math

import pytest
import torch

from roboscape_r.worldmodel.world_model import WorldModel, WorldModelOutput, world_model_losses

from tests.worldmodel.conftest import tiny_config


def make(cond="act", **overrides):
    torch.manual_seed(0)
    return WorldModel(tiny_config(cond, **overrides)).eval()


def inputs(batch=2, frames=4, seed=1):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 16, (batch, frames, 4, 4), generator=generator)
    actions = torch.randn(batch, frames, 3, generator=generator)
    return tokens, actions


def test_output_shapes_act_and_txt():
    tokens, actions = inputs()
    out = make("act")(tokens, actions=actions)
    assert isinstance(out, WorldModelOutput)
    assert out.next_token_logits.shape == (2, 4, 16, 16)
    assert out.done_logits.shape == (2, 4)
    out = make("txt")(tokens, instruction_embeddings=torch.randn(2, 8))
    assert out.next_token_logits.shape == (2, 4, 16, 16)
    assert out.done_logits.shape == (2, 4)


@pytest.mark.parametrize("changed_frame", [1, 2, 3])
def test_later_frames_cannot_change_earlier_predictions(changed_frame):
    model = make("act")
    tokens, actions = inputs()
    base = model(tokens, actions=actions)
    tokens2, actions2 = tokens.clone(), actions.clone()
    tokens2[:, changed_frame] = (tokens2[:, changed_frame] + 1) % 16
    actions2[:, changed_frame] += 1.0
    changed = model(tokens2, actions=actions2)
    earlier = slice(0, changed_frame)
    torch.testing.assert_close(changed.next_token_logits[:, earlier], base.next_token_logits[:, earlier])
    torch.testing.assert_close(changed.done_logits[:, earlier], base.done_logits[:, earlier])
    assert not torch.allclose(changed.next_token_logits[:, changed_frame:], base.next_token_logits[:, changed_frame:])


def test_a_token_is_seen_by_its_whole_frame():
    model = make("act")
    tokens, actions = inputs()
    base = model(tokens, actions=actions).next_token_logits
    tokens2 = tokens.clone()
    tokens2[:, 1, 3, 3] = (tokens2[:, 1, 3, 3] + 1) % 16  # the last token of frame 1
    changed = model(tokens2, actions=actions).next_token_logits
    moved = (changed[:, 1] - base[:, 1]).abs().amax(dim=-1)  # (B, h*w)
    assert (moved > 0).all(), "attention within a frame must be bidirectional"


def test_action_of_frame_t_changes_prediction_of_frame_t():
    model = make("act")
    tokens, actions = inputs()
    base = model(tokens, actions=actions)
    actions2 = actions.clone()
    actions2[:, 2] += 1.0
    changed = model(tokens, actions=actions2)
    assert not torch.allclose(changed.next_token_logits[:, 2], base.next_token_logits[:, 2])


def test_wrong_conditioning_and_shapes_are_refused():
    tokens, actions = inputs()
    act, txt = make("act"), make("txt")
    with pytest.raises(ValueError, match=r"WM_act needs actions of shape \(2, 4, 3\), got None"):
        act(tokens)
    with pytest.raises(ValueError, match=r"got \(2, 4, 5\)"):
        act(tokens, actions=torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match="not instruction_embeddings"):
        act(tokens, actions=actions, instruction_embeddings=torch.zeros(2, 8))
    with pytest.raises(ValueError, match=r"WM_txt needs instruction_embeddings of shape \(2, 8\)"):
        txt(tokens)
    with pytest.raises(ValueError, match="not actions"):
        txt(tokens, actions=actions)
    with pytest.raises(ValueError, match=r"tokens must be \(B, T, 4, 4\), got \(2, 4, 16\)"):
        act(tokens.view(2, 4, 16), actions=actions)
    with pytest.raises(ValueError, match="exceed context_frames=4"):
        act(torch.zeros(1, 5, 4, 4, dtype=torch.long), actions=torch.zeros(1, 5, 3))


def test_losses_target_the_next_frame_and_the_done_label_of_each_step():
    B, T, V = 1, 3, 16
    tokens = torch.zeros(B, T, 4, 4, dtype=torch.long)
    tokens[:, 1:] = 5
    logits = torch.full((B, T, 16, V), -1e4)
    logits[..., 5] = 1e4  # predicts token 5 everywhere: right for frames 1 and 2
    done = torch.tensor([[False, False, True]])
    done_logits = torch.tensor([[-1e4, -1e4, 1e4]])
    losses = world_model_losses(WorldModelOutput(logits, done_logits), tokens, done)
    assert losses.token_ce.item() == pytest.approx(0.0, abs=1e-6)
    assert losses.token_accuracy.item() == 1.0
    assert losses.done_bce.item() == pytest.approx(0.0, abs=1e-6)
    uniform = WorldModelOutput(torch.zeros(B, T, 16, V), torch.zeros(B, T))
    losses = world_model_losses(uniform, tokens, done, done_weight=2.0)
    assert losses.token_ce.item() == pytest.approx(math.log(V), rel=1e-5)
    assert losses.done_bce.item() == pytest.approx(math.log(2), rel=1e-5)
    assert losses.total.item() == pytest.approx(math.log(V) + 2 * math.log(2), rel=1e-5)


def test_argmax_last_dim_matches_torch_including_ties():
    from roboscape_r.worldmodel.world_model import argmax_last_dim

    generator = torch.Generator().manual_seed(0)
    values = torch.randn(50, 256, generator=generator)
    assert torch.equal(argmax_last_dim(values), values.argmax(dim=-1))
    ties = torch.randint(0, 3, (50, 256), generator=generator).float()  # many equal maxima
    assert torch.equal(argmax_last_dim(ties), ties.argmax(dim=-1))
    odd = torch.randn(5, 100, generator=generator)  # not a multiple of 64: plain argmax
    assert torch.equal(argmax_last_dim(odd), odd.argmax(dim=-1))


def test_copy_prior_makes_repeating_the_frame_the_untrained_default():
    tokens, actions = inputs()
    B, T, H, W = tokens.shape
    current = tokens.reshape(B, T, H * W)
    with_copy = make(copy_prior=3.0)(tokens, actions=actions).next_token_logits.argmax(-1)
    assert (with_copy == current).float().mean() > 0.95
    without = make(copy_prior=0.0)(tokens, actions=actions).next_token_logits.argmax(-1)
    assert (without == current).float().mean() < 0.5
    assert make(copy_prior=0.0).copy_logit is None
