import pytest
import torch

from roboscape_r.tokenizer.augment import photometric_augment


def frames(batch=16, seed=0):
    return torch.randint(0, 256, (batch, 8, 8, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_zero_probability_is_identity():
    x = frames()
    assert photometric_augment(x, 0.0) is x


def test_shapes_dtype_and_that_frames_change():
    torch.manual_seed(0)
    x = frames()
    y = photometric_augment(x, 1.0)
    assert y.shape == x.shape and y.dtype == torch.uint8
    changed = (y.float() - x.float()).abs().mean(dim=(1, 2, 3)) > 1.0
    assert changed.float().mean() > 0.8


def test_same_seed_same_augmentation():
    x = frames()
    torch.manual_seed(3)
    a = photometric_augment(x, 0.5)
    torch.manual_seed(3)
    b = photometric_augment(x, 0.5)
    assert torch.equal(a, b)


def test_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        photometric_augment(frames().float(), 0.5)


def test_config_refuses_a_probability_outside_0_1():
    from roboscape_r.tokenizer.config import TokenizerTrainConfig

    with pytest.raises(ValueError, match="augment_prob"):
        TokenizerTrainConfig(augment_prob=1.5)
