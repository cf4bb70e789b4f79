import dataclasses

import pytest

from roboscape_r.worldmodel.config import WorldModelConfig


def test_default_is_the_small_cpu_preset():
    config = WorldModelConfig()
    assert (config.d_model, config.n_layers, config.tokens_per_frame) == (128, 4, 64)
    assert config.kind == "wm_act"


def test_dict_round_trip():
    config = WorldModelConfig(cond="txt", d_model=64, n_heads=2)
    assert WorldModelConfig.from_dict(config.to_dict()) == config


def test_configs_saved_before_token_hysteresis_load_as_plain_tokens():
    values = WorldModelConfig().to_dict()
    del values["token_hysteresis"]
    assert WorldModelConfig.from_dict(values).token_hysteresis == 0.0


def test_unknown_key_is_refused():
    with pytest.raises(ValueError, match="d_modle"):
        WorldModelConfig.from_dict({**WorldModelConfig().to_dict(), "d_modle": 3})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"d_model": 100, "n_heads": 3}, "divisible"),
        ({"cond": "video"}, "cond"),
        ({"context_frames": 1}, "context_frames"),
        ({"grid_h": 0}, "grid_h"),
        ({"dropout": 1.0}, "dropout"),
        ({"token_hysteresis": -0.1}, "token_hysteresis"),
        ({"token_hysteresis": float("inf")}, "token_hysteresis"),
    ],
)
def test_bad_values_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        WorldModelConfig(**overrides)


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        WorldModelConfig().d_model = 3
