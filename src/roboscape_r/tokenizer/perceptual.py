"""Perceptual distances between frames: the LPIPS formula over multi-scale feature maps.

LPIPS (Zhang et al. 2018) compares two images through a feature network: at each layer it
unit-normalises every pixel's channel vector, takes the squared difference, weights the
channels by learned linear weights, averages over space and sums over layers. No pretrained
weights can be downloaded here, so by default the feature network is a frozen copy of our own
tokenizer encoder (`Encoder.features`) with unit channel weights. The real `lpips` package
(VGG) is used only when it is importable and its weights are already on disk.

Frames are channel-last (B, H, W, 3), uint8 in 0..255 or float in [0, 1]; distances are (B,).
"""

from __future__ import annotations

import copy
import importlib.util
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import nn

from roboscape_r.tokenizer.model import Tokenizer, to_model_space


def lpips_distance(features_a: Sequence[torch.Tensor], features_b: Sequence[torch.Tensor],
                   eps: float = 1e-10) -> torch.Tensor:
    """LPIPS formula with unit channel weights.

    Args:
        features_a, features_b: the same number of feature maps, map i of shape (B, C_i, H_i, W_i)
            in both lists.

    Returns:
        (B,) sum over maps of the spatial mean of the squared difference of channel-unit-normalised
        features (each map contributes at most 4). Symmetric, zero for identical features.
    """
    if len(features_a) != len(features_b) or not features_a:
        raise ValueError(f"need equally many (>0) feature maps, got {len(features_a)} and {len(features_b)}")
    total = None
    for map_a, map_b in zip(features_a, features_b):
        if map_a.shape != map_b.shape:
            raise ValueError(f"feature map shapes differ: {tuple(map_a.shape)} vs {tuple(map_b.shape)}")
        # |a/p - b/q|^2 = |a|^2/p^2 + |b|^2/q^2 - 2 a.b/(pq), with p = |a| + eps, q = |b| + eps:
        # the same value as normalising both maps and differencing them, with one full-size
        # temporary (a * b) instead of five; the reward computes it on every world-model step.
        norm_a = torch.linalg.vector_norm(map_a, dim=1)  # (B, H, W)
        norm_b = torch.linalg.vector_norm(map_b, dim=1)
        p, q = norm_a + eps, norm_b + eps
        dot = (map_a * map_b).sum(dim=1)
        squared = (norm_a / p).pow(2) + (norm_b / q).pow(2) - 2 * dot / (p * q)
        layer = squared.clamp(min=0).mean(dim=(1, 2))  # (B,); clamp: rounding near identical features
        total = layer if total is None else total + layer
    return total


class PerceptualDistance(nn.Module, ABC):
    """Base class: `forward(frames_a, frames_b) -> (B,)` distances; `name` says which network ran.

    Subclasses implement `distance` on images already in model space; `forward` checks the
    frames and converts them, once for every subclass.
    """

    name: str = "perceptual"

    def forward(self, frames_a: torch.Tensor, frames_b: torch.Tensor) -> torch.Tensor:
        """Distances between two batches of channel-last frames (uint8 0..255 or float 0..1).

        Returns:
            (B,) float distances; differentiable with respect to float inputs.

        Raises:
            ValueError: if the two batches differ in shape or are not (B, H, W, 3).
        """
        if frames_a.shape != frames_b.shape or frames_a.ndim != 4 or frames_a.shape[-1] != 3:
            raise ValueError(
                f"expected two (B, H, W, 3) frame batches of one shape, got {tuple(frames_a.shape)} "
                f"and {tuple(frames_b.shape)}"
            )
        return self.distance(to_model_space(frames_a), to_model_space(frames_b))

    @abstractmethod
    def distance(self, images_a: torch.Tensor, images_b: torch.Tensor) -> torch.Tensor:
        """(B,) distances between (B, 3, H, W) images in [-1, 1]."""


class TokenizerFeatureDistance(PerceptualDistance):
    """LPIPS formula over a frozen copy of a tokenizer encoder's multi-scale feature maps.

    Meaningful once the tokenizer is trained: its features are what the tokenizer needs to
    reconstruct a frame, so frames it would tokenize alike are close.
    """

    name = "tokenizer-features-lpips"

    def __init__(self, tokenizer: Tokenizer) -> None:
        super().__init__()
        # A copy so that this module never changes, nor gets gradients into, the tokenizer.
        self.encoder = copy.deepcopy(tokenizer.encoder).eval().requires_grad_(False)
        self.image_size = tokenizer.config.image_size

    def distance(self, images_a: torch.Tensor, images_b: torch.Tensor) -> torch.Tensor:
        return lpips_distance(self.features(images_a), self.features(images_b))

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's multi-scale feature maps of (B, 3, H, W) images in [-1, 1]."""
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"the tokenizer features need {self.image_size}x{self.image_size} frames, got "
                f"{tuple(images.shape[-2:])}"
            )
        return self.encoder.features(images)


class LpipsVggDistance(PerceptualDistance):
    """The `lpips` package's VGG LPIPS (learned channel weights); needs its weights on disk."""

    name = "lpips-vgg"

    def __init__(self) -> None:
        super().__init__()
        import lpips  # optional dependency, checked by lpips_vgg_available()

        self.model = lpips.LPIPS(net="vgg", verbose=False).eval().requires_grad_(False)

    def distance(self, images_a: torch.Tensor, images_b: torch.Tensor) -> torch.Tensor:
        return self.model(images_a, images_b).flatten()


def lpips_vgg_available() -> bool:
    """True if `lpips` is importable and both its linear weights and torchvision's VGG16
    weights are already on disk (nothing can be downloaded here)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None or importlib.util.find_spec("torchvision") is None:
        return False
    linear_weights = os.path.join(os.path.dirname(spec.origin), "weights", "v0.1", "vgg.pth")
    vgg_dir = os.path.join(torch.hub.get_dir(), "checkpoints")
    has_vgg = os.path.isdir(vgg_dir) and any(name.startswith("vgg16-") for name in os.listdir(vgg_dir))
    return os.path.isfile(linear_weights) and has_vgg


def make_perceptual_distance(tokenizer: Tokenizer | None = None, *, prefer_lpips: bool = True) -> PerceptualDistance:
    """The best available perceptual distance, in eval mode, frozen.

    Uses the real VGG LPIPS if `prefer_lpips` and its weights are on disk, else the LPIPS
    formula over `tokenizer`'s encoder features. Check `.name` to see which one ran.

    Raises:
        ValueError: if VGG LPIPS is unavailable (or not preferred) and no tokenizer is given.
    """
    if prefer_lpips and lpips_vgg_available():
        return LpipsVggDistance()
    if tokenizer is None:
        raise ValueError(
            "no perceptual network available: the lpips package or its VGG weights are missing, so pass "
            "a trained tokenizer (load_tokenizer(path)) whose encoder features are used instead"
        )
    return TokenizerFeatureDistance(tokenizer)
