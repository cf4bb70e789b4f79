"""Tests of roboscape_r/tokenizer/model.py: shapes, round trips, boundary errors, load_tokenizer."""

import dataclasses

import pytest
import torch

from roboscape_r.checkpoint import CheckpointError, save_checkpoint
from roboscape_r.tokenizer.config import TokenizerConfig, TokenizerTrainConfig
from roboscape_r.tokenizer.model import Tokenizer, load_tokenizer
from roboscape_r.tokenizer.synthetic import SyntheticFrames


def tiny_config(**overrides) -> TokenizerConfig:
    values = dict(channels=16, max_channels=32, codebook_bits=10, num_res_blocks=1, refine_channels=4, norm_groups=8)
    values.update(overrides)
    return TokenizerConfig(**values)


def frames(count: int = 4, size: int = 64) -> torch.Tensor:
    dataset = SyntheticFrames(count, image_size=size)
    return torch.stack([dataset[i] for i in range(count)])


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    torch.manual_seed(0)
    return Tokenizer(tiny_config()).eval()


@pytest.mark.parametrize("grid", [4, 8, 16])
def test_forward_shapes(grid):
    model = Tokenizer(tiny_config(grid_size=grid, codebook_bits=12))
    output = model(frames(2))
    assert output.recon.shape == (2, 64, 64, 3) and output.recon.dtype == torch.float32
    assert output.indices.shape == (2, grid, grid) and output.indices.dtype == torch.long
    for loss in (output.per_sample_entropy, output.batch_entropy, output.commitment):
        assert loss.shape == () and torch.isfinite(loss)
    assert output.batch_entropy > 0  # train mode computes LFQ's losses


def test_size_properties(tokenizer):
    assert (tokenizer.image_size, tokenizer.grid_size, tokenizer.codebook_size) == (64, 8, 1024)


def test_other_image_size():
    model = Tokenizer(tiny_config(image_size=32, grid_size=4))
    assert model.encode(frames(2, size=32)).shape == (2, 4, 4)


def test_round_trip_shapes_and_range(tokenizer):
    batch = frames(3)
    indices = tokenizer.encode(batch)
    assert indices.shape == (3, 8, 8) and indices.dtype == torch.long
    assert 0 <= int(indices.min()) and int(indices.max()) < 2**10
    decoded = tokenizer.decode(indices)
    assert decoded.shape == batch.shape and decoded.dtype == torch.uint8
    decoded_float = tokenizer.decode_float(indices)
    assert decoded_float.shape == (3, 64, 64, 3)
    assert 0.0 <= float(decoded_float.detach().min()) <= float(decoded_float.detach().max()) <= 1.0
    assert torch.equal(decoded, (decoded_float * 255).round().to(torch.uint8))


def test_encode_matches_forward_and_is_per_frame(tokenizer):
    batch = frames(4)
    indices = tokenizer.encode(batch)
    assert torch.equal(indices, tokenizer(batch).indices)
    assert torch.equal(indices[1:2], tokenizer.encode(batch[1:2]))  # no mixing across the batch


def _jittered_sequence(length: int = 12) -> torch.Tensor:
    """A still frame repeated with +-2 levels of pixel noise: nothing moves."""
    generator = torch.Generator().manual_seed(1)
    still = frames(1)[0].to(torch.int16)
    noise = torch.randint(-2, 3, (length, *still.shape), generator=generator, dtype=torch.int16)
    return (still + noise).clamp(0, 255).to(torch.uint8)


def test_encode_sequence_without_hysteresis_is_encode(tokenizer):
    sequence = _jittered_sequence()
    plain = tokenizer.encode(sequence)
    assert torch.equal(tokenizer.encode_sequence(sequence), plain)
    assert torch.equal(tokenizer.encode_sequence(sequence, hysteresis=1e-12, batch_frames=5), plain)  # LFQ's bit order
    batched = tokenizer.encode_sequence(torch.stack([sequence, sequence.flip(0)]), hysteresis=0.3, batch_frames=7)
    assert batched.shape == (2, 12, *plain.shape[1:]) and batched.dtype == torch.long
    assert torch.equal(batched[0], tokenizer.encode_sequence(sequence, hysteresis=0.3))
    assert torch.equal(batched[1], tokenizer.encode_sequence(sequence.flip(0), hysteresis=0.3))


def test_encode_sequence_hysteresis_keeps_near_zero_bits_of_a_still_scene(tokenizer):
    sequence = _jittered_sequence()
    changes = lambda tokens: int((tokens[1:] != tokens[:-1]).sum())
    plain = tokenizer.encode_sequence(sequence)
    steady = tokenizer.encode_sequence(sequence, hysteresis=0.5)
    assert torch.equal(steady[0], plain[0])  # the first frame is encoded alone
    assert changes(plain) > 0, "the noise should flip some near-zero bits of an untrained tokenizer"
    assert changes(steady) < changes(plain)
    assert changes(tokenizer.encode_sequence(sequence, hysteresis=1e6)) == 0  # every bit kept from frame 0


@pytest.mark.parametrize("kwargs, message", [
    (dict(hysteresis=-0.1), "hysteresis"), (dict(hysteresis=float("nan")), "hysteresis"),
    (dict(batch_frames=0), "batch_frames"),
])
def test_encode_sequence_bad_options(tokenizer, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tokenizer.encode_sequence(_jittered_sequence(3), **kwargs)


def test_encode_sequence_bad_frames(tokenizer):
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        tokenizer.encode_sequence(_jittered_sequence(3)[0])
    with pytest.raises(ValueError, match="dtype"):
        tokenizer.encode_sequence(_jittered_sequence(3).float())


def test_codes_are_signs_of_index_bits(tokenizer):
    indices = torch.tensor([[[0, 1], [2**10 - 1, 5]]]).expand(1, 2, 2)
    model = Tokenizer(tiny_config(grid_size=2, image_size=16, stem_factor=2, channels=8, max_channels=8))
    codes = model.indices_to_codes(indices)
    assert codes.shape == (1, 10, 2, 2)
    assert set(codes.unique().tolist()) == {-1.0, 1.0}
    assert torch.all(codes[0, :, 0, 0] == -1) and torch.all(codes[0, :, 1, 0] == 1)
    assert codes[0, -1, 0, 1] == 1 and torch.all(codes[0, :-1, 0, 1] == -1)  # id 1: last bit set


def test_inference_mode_flag(tokenizer):
    batch = frames(2)
    assert tokenizer.encode(batch, inference_mode=True).is_inference()
    indices = tokenizer.encode(batch)
    assert not indices.is_inference() and not indices.requires_grad
    assert tokenizer.decode(indices, inference_mode=True).is_inference()


def test_decode_float_is_differentiable(tokenizer):
    tokenizer.decode_float(tokenizer.encode(frames(1))).mean().backward()
    assert tokenizer.decoder.stem.weight.grad is not None
    tokenizer.zero_grad()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.zeros(2, 64, 64, 3), "got dtype torch.float32"),
        (torch.zeros(2, 3, 64, 64, dtype=torch.uint8), "channel-first"),
        (torch.zeros(2, 32, 32, 3, dtype=torch.uint8), r"expected uint8 frames of shape \(B, 64, 64, 3\).*got shape \(2, 32, 32, 3\)"),
        (torch.zeros(64, 64, 3, dtype=torch.uint8), "add a batch dimension"),
        (torch.zeros(2, 64, 64, 4, dtype=torch.uint8), r"got shape \(2, 64, 64, 4\)"),
    ],
)
def test_bad_frames(tokenizer, bad, message):
    with pytest.raises(ValueError, match=message):
        tokenizer.encode(bad)
    with pytest.raises(ValueError, match=message):
        tokenizer(bad)


def test_non_tensor_frames(tokenizer):
    with pytest.raises(TypeError, match="torch.Tensor"):
        tokenizer.encode(frames(1).numpy())


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.zeros(1, 8, 8), "got dtype torch.float32"),
        (torch.zeros(1, 4, 4, dtype=torch.long), r"got shape \(1, 4, 4\)"),
        (torch.full((1, 8, 8), 2**10, dtype=torch.long), r"got values in \[1024, 1024\]"),
        (torch.full((1, 8, 8), -1, dtype=torch.long), "got values in"),
    ],
)
def test_bad_indices(tokenizer, bad, message):
    with pytest.raises(ValueError, match=message):
        tokenizer.decode(bad)


def test_load_tokenizer_rebuilds_from_checkpoint(tmp_path, tokenizer):
    config = TokenizerTrainConfig(model=tokenizer.config)
    path = save_checkpoint(tmp_path / "tok.pt", kind="tokenizer", config=dataclasses.asdict(config),
                           model_state=tokenizer.state_dict(), step=0)
    loaded = load_tokenizer(path)
    assert loaded.config == tokenizer.config and not loaded.training
    batch = frames(2)
    assert torch.equal(loaded.encode(batch), tokenizer.encode(batch))


def test_load_tokenizer_refuses_other_kinds(tmp_path, tokenizer):
    path = save_checkpoint(tmp_path / "wm.pt", kind="wm_act", config={}, model_state={}, step=0)
    with pytest.raises(CheckpointError, match="holds a 'wm_act' model but a 'tokenizer' was expected"):
        load_tokenizer(path)


def test_encode_latents_signs_are_the_tokens(tokenizer):
    batch = frames(3)
    latents = tokenizer.encode_latents(batch)
    assert latents.shape == (3, tokenizer.config.codebook_bits, tokenizer.grid_size, tokenizer.grid_size)
    assert torch.equal(tokenizer.codes_to_indices(latents), tokenizer.encode(batch))
    indices = tokenizer.encode(batch)
    assert torch.equal(tokenizer.codes_to_indices(tokenizer.indices_to_codes(indices)), indices)  # round trip
    with pytest.raises(ValueError, match="codes must be"):
        tokenizer.codes_to_indices(latents[:, :-1])
