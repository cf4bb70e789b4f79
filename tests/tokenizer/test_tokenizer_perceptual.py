"""Tests of roboscape_r/tokenizer/perceptual.py: LPIPS-formula distance properties and fallbacks."""

import pytest
import torch

from roboscape_r.tokenizer import perceptual
from roboscape_r.tokenizer.config import TokenizerConfig
from roboscape_r.tokenizer.model import Tokenizer
from roboscape_r.tokenizer.perceptual import TokenizerFeatureDistance, lpips_distance, make_perceptual_distance
from roboscape_r.tokenizer.synthetic import SyntheticFrames


@pytest.fixture(scope="module")
def distance() -> TokenizerFeatureDistance:
    torch.manual_seed(0)
    config = TokenizerConfig(channels=16, max_channels=32, codebook_bits=10, num_res_blocks=1, norm_groups=8)
    return TokenizerFeatureDistance(Tokenizer(config))


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    dataset = SyntheticFrames(6)
    return torch.stack([dataset[i] for i in range(6)])


def add_noise(frames: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    noise = torch.randn(frames.shape, generator=torch.Generator().manual_seed(seed)) * std
    return (frames.float() + noise).round().clamp(0, 255).to(torch.uint8)


def test_formula_on_hand_made_features():
    ones = torch.ones(1, 2, 1, 1)
    flipped = torch.tensor([1.0, -1.0]).view(1, 2, 1, 1)
    # unit vectors (1,1)/sqrt2 and (1,-1)/sqrt2: squared distance 2; two layers sum to 4
    assert torch.allclose(lpips_distance([ones, ones], [flipped, flipped]), torch.tensor([4.0]))
    assert torch.allclose(lpips_distance([ones * 5], [ones]), torch.tensor([0.0]))  # scale-invariant per pixel


def naive_lpips(features_a, features_b, eps=1e-10):
    """The LPIPS formula as written: normalise each pixel's channels, difference, square, sum, average."""
    total = 0
    for a, b in zip(features_a, features_b):
        unit_a = a / (a.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)
        unit_b = b / (b.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)
        total = total + (unit_a - unit_b).pow(2).sum(dim=1).mean(dim=(1, 2))
    return total


def test_formula_matches_normalise_then_difference_in_value_and_gradient():
    generator = torch.Generator().manual_seed(0)
    shapes = [(3, 8, 5, 5), (3, 16, 2, 3)]
    maps_a = [torch.randn(s, generator=generator, dtype=torch.float64, requires_grad=True) for s in shapes]
    maps_b = [torch.randn(s, generator=generator, dtype=torch.float64) for s in shapes]
    maps_b[0] = maps_b[0].clone()
    maps_b[0][1] = maps_a[0][1].detach() * 3  # one sample at distance 0 (same directions)
    ours, reference = lpips_distance(maps_a, maps_b), naive_lpips(maps_a, maps_b)
    assert torch.allclose(ours, reference, atol=1e-9)
    grads = torch.autograd.grad(ours.sum(), maps_a)
    reference_grads = torch.autograd.grad(naive_lpips(maps_a, maps_b).sum(), maps_a)
    for grad, reference_grad in zip(grads, reference_grads):
        assert torch.allclose(grad, reference_grad, atol=1e-8)


def test_zero_for_identical(distance, frames):
    assert torch.allclose(distance(frames, frames), torch.zeros(len(frames)), atol=1e-6)


def test_symmetric(distance, frames):
    other = frames.roll(1, dims=0)
    assert torch.allclose(distance(frames, other), distance(other, frames), atol=1e-6)


def test_grows_with_difference(distance, frames):
    small = distance(frames, add_noise(frames, 8.0))
    large = distance(frames, add_noise(frames, 48.0))
    assert torch.all(small > 0) and torch.all(large > small)


def test_float_and_uint8_frames_agree(distance, frames):
    other = add_noise(frames, 20.0)
    as_float = distance(frames.float() / 255, other.float() / 255)
    assert torch.allclose(as_float, distance(frames, other), atol=1e-5)


def test_differentiable_in_float_frames(distance, frames):
    recon = (frames.float() / 255).requires_grad_(True)
    distance(recon, add_noise(frames, 20.0).float() / 255).sum().backward()
    assert recon.grad is not None and torch.isfinite(recon.grad).all()


def test_copy_leaves_tokenizer_alone():
    tokenizer = Tokenizer(TokenizerConfig(channels=8, max_channels=8, codebook_bits=10, num_res_blocks=1, norm_groups=8))
    distance = TokenizerFeatureDistance(tokenizer)
    assert all(not p.requires_grad for p in distance.parameters())
    assert all(p.requires_grad for p in tokenizer.parameters())
    assert distance.name == "tokenizer-features-lpips"


def test_shape_errors(distance, frames):
    with pytest.raises(ValueError, match="one shape"):
        distance(frames, frames[:2])
    with pytest.raises(ValueError, match="need 64x64 frames"):
        distance(frames[:, :32, :32], frames[:, :32, :32])


def test_factory_falls_back_without_lpips(monkeypatch):
    monkeypatch.setattr(perceptual, "lpips_vgg_available", lambda: False)
    tokenizer = Tokenizer(TokenizerConfig(channels=8, max_channels=8, codebook_bits=10, num_res_blocks=1, norm_groups=8))
    assert make_perceptual_distance(tokenizer).name == "tokenizer-features-lpips"
    with pytest.raises(ValueError, match="pass a trained tokenizer"):
        make_perceptual_distance(None)
