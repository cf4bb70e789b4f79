"""Tests of roboscape_r/tokenizer/config.py: validation, derived sizes, tyro round trip."""

import dataclasses

import pytest
import tyro

from roboscape_r.runconfig import resume_relevant
from roboscape_r.tokenizer.config import TokenizerConfig, TokenizerTrainConfig


def test_defaults():
    config = TokenizerConfig()
    assert (config.image_size, config.grid_size, config.codebook_size) == (64, 8, 4096)
    assert config.num_downsamples == 1 and config.level_channels == (128, 128)
    assert config.tokens_per_frame == 64 and (config.grid_h, config.grid_w) == (8, 8)


@pytest.mark.parametrize(("grid", "downsamples"), [(16, 0), (8, 1), (4, 2)])
def test_grids(grid, downsamples):
    assert TokenizerConfig(grid_size=grid).num_downsamples == downsamples


def test_channels_double_up_to_max():
    assert TokenizerConfig(grid_size=4, channels=64, max_channels=256).level_channels == (64, 128, 256)
    assert TokenizerConfig(grid_size=4, channels=64, max_channels=96).level_channels == (64, 96, 96)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grid_size": 32}, "lower stem_factor"),
        ({"grid_size": 6}, "times a power of 2"),
        ({"image_size": 66}, "divisible by stem_factor"),
        ({"codebook_bits": 0}, "codebook_bits"),
        ({"channels": -1}, "channels"),
        ({"refine_channels": -1}, "refine_channels"),
    ],
)
def test_invalid_model_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TokenizerConfig(**kwargs)


def test_finer_grid_with_smaller_stem():
    assert TokenizerConfig(grid_size=32, stem_factor=2).num_downsamples == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"steps": 0}, {"lr": 0.0}, {"perceptual_loss": "vgg"}, {"entropy_sample_fraction": 0.0}, {"run_steps": 0}],
)
def test_invalid_train_config(kwargs):
    with pytest.raises(ValueError):
        TokenizerTrainConfig(**kwargs)


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TokenizerTrainConfig().steps = 3


def test_dict_round_trip():
    config = TokenizerTrainConfig(model=TokenizerConfig(grid_size=4), steps=7)
    assert TokenizerTrainConfig.from_dict(dataclasses.asdict(config)) == config


def test_resume_relevant_drops_runtime_fields():
    values = resume_relevant(TokenizerTrainConfig())
    assert "device" not in values and "run_steps" not in values
    assert values["lr"] == 1e-3 and values["model"]["grid_size"] == 8


def test_tyro_cli():
    config = tyro.cli(TokenizerTrainConfig, args=["--steps", "5", "--model.grid-size", "4", "--device", "cpu"])
    assert config.steps == 5 and config.model.grid_size == 4 and config.device == "cpu"
