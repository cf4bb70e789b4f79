"""LFQ image tokenizer: uint8 frames (B, H, W, 3) <-> token grids (B, h, w)."""

from roboscape_r.tokenizer.config import TokenizerConfig, TokenizerTrainConfig
from roboscape_r.tokenizer.losses import LossTerms, TokenizerLoss, image_gradient_loss
from roboscape_r.tokenizer.model import Tokenizer, TokenizerOutput, load_tokenizer
from roboscape_r.tokenizer.perceptual import (
    PerceptualDistance,
    TokenizerFeatureDistance,
    lpips_distance,
    make_perceptual_distance,
)
from roboscape_r.tokenizer.synthetic import SyntheticFrames
from roboscape_r.tokenizer.train import NonFiniteLossError, TrainResult, train_tokenizer

__all__ = [
    "LossTerms",
    "NonFiniteLossError",
    "PerceptualDistance",
    "SyntheticFrames",
    "Tokenizer",
    "TokenizerConfig",
    "TokenizerFeatureDistance",
    "TokenizerLoss",
    "TokenizerOutput",
    "TokenizerTrainConfig",
    "TrainResult",
    "image_gradient_loss",
    "load_tokenizer",
    "lpips_distance",
    "make_perceptual_distance",
    "train_tokenizer",
]
