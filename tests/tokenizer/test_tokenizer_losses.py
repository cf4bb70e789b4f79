"""Tests of roboscape_r/tokenizer/losses.py: loss terms and the EMA encoder."""

import pytest
import torch

from roboscape_r.tokenizer.config import TokenizerConfig, TokenizerTrainConfig
from roboscape_r.tokenizer.losses import TokenizerLoss, image_gradient_loss
from roboscape_r.tokenizer.model import Tokenizer
from roboscape_r.tokenizer.synthetic import SyntheticFrames

TINY = TokenizerConfig(channels=8, max_channels=16, codebook_bits=10, num_res_blocks=1, refine_channels=4, norm_groups=8)


def frames(count: int = 4) -> torch.Tensor:
    dataset = SyntheticFrames(count)
    return torch.stack([dataset[i] for i in range(count)])


def test_gradient_loss_zero_for_identical_and_constant_shift():
    images = torch.rand(2, 16, 16, 3)
    assert image_gradient_loss(images, images) == 0
    assert torch.allclose(image_gradient_loss(images + 0.3, images), torch.zeros(()), atol=1e-6)
    assert image_gradient_loss(images.roll(1, dims=2), images) > 0.05


def test_gradient_loss_penalises_blur():
    images = torch.rand(2, 16, 16, 3)
    blurred = (images + images.roll(1, dims=1) + images.roll(1, dims=2)) / 3
    assert image_gradient_loss(blurred, images) > image_gradient_loss(images, images) + 0.05


@pytest.mark.parametrize("perceptual", ["gradient", "ema-encoder-lpips", "none"])
def test_terms_are_finite_and_weighted(perceptual):
    torch.manual_seed(0)
    model = Tokenizer(TINY)
    config = TokenizerTrainConfig(model=TINY, perceptual_loss=perceptual, perceptual_weight=0.5)
    loss_fn = TokenizerLoss(config, model)
    batch = frames()
    terms = loss_fn(model(batch), batch)
    assert all(torch.isfinite(term) and term.shape == () for term in terms)
    expected = terms.l1 + terms.l2 + 0.5 * terms.perceptual + 0.1 * terms.entropy + 0.25 * terms.commitment
    assert torch.allclose(terms.total, expected)
    assert (terms.perceptual == 0) == (perceptual == "none")
    terms.total.backward()
    assert model.encoder.stem.weight.grad is not None


def test_ema_encoder_is_frozen_and_follows_the_encoder():
    model = Tokenizer(TINY)
    loss_fn = TokenizerLoss(TokenizerTrainConfig(model=TINY, perceptual_loss="ema-encoder-lpips", ema_decay=0.5), model)
    assert all(not p.requires_grad for p in loss_fn.parameters())
    with torch.no_grad():
        model.encoder.stem.weight.add_(1.0)
    before = loss_fn.ema_encoder.stem.weight.clone()
    loss_fn.update_ema(model)
    assert torch.allclose(loss_fn.ema_encoder.stem.weight, before + 0.5)
    assert set(loss_fn.state_dict()) and all(key.startswith("ema_encoder.") for key in loss_fn.state_dict())


def test_no_ema_state_without_ema_loss():
    model = Tokenizer(TINY)
    loss_fn = TokenizerLoss(TokenizerTrainConfig(model=TINY, perceptual_loss="gradient"), model)
    loss_fn.update_ema(model)
    assert loss_fn.state_dict() == {}
