"""The context decoder: an untrained one copies the context frame exactly; tokens change the result;
bad input and mismatched checkpoints are refused."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from roboscape_r.checkpoint import CheckpointError, save_checkpoint
from roboscape_r.tokenizer.config import TokenizerConfig
from roboscape_r.tokenizer.context_decoder import (
    CHECKPOINT_KIND, ContextDecoder, ContextDecoderConfig, load_context_decoder,
)
from roboscape_r.tokenizer.model import Tokenizer


def tiny_tokenizer(**overrides) -> Tokenizer:
    torch.manual_seed(0)
    values = dict(image_size=16, grid_size=4, stem_factor=2, channels=8, max_channels=8, codebook_bits=4,
                  num_res_blocks=1, refine_channels=0, norm_groups=4)
    values.update(overrides)
    return Tokenizer(TokenizerConfig(**values)).eval()


def frames(batch: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 16, 16, 3), generator=generator, dtype=torch.uint8)


def decoder_for(tokenizer: Tokenizer, seed: int = 0) -> ContextDecoder:
    torch.manual_seed(seed)
    return ContextDecoder(tokenizer.config, ContextDecoderConfig(channels=8, num_res_blocks=1, norm_groups=4)).eval()


def test_an_untrained_decoder_copies_the_context_frame_exactly():
    tokenizer = tiny_tokenizer()
    context = frames(3)
    indices = torch.randint(0, tokenizer.codebook_size, (3, 4, 4))
    drawn = decoder_for(tokenizer).decode(tokenizer, indices, tokenizer.encode(context), context)
    assert drawn.dtype == torch.uint8 and drawn.shape == (3, 16, 16, 3)
    assert torch.equal(drawn, context)


def test_after_training_steps_the_tokens_change_the_frame():
    tokenizer = tiny_tokenizer()
    decoder = decoder_for(tokenizer)
    torch.nn.init.normal_(decoder.head[-1].weight, std=0.3)  # as if trained: the change is no longer zero
    context = frames(2)
    context_tokens = tokenizer.encode(context)
    same = decoder.decode(tokenizer, context_tokens, context_tokens, context)
    other = decoder.decode(tokenizer, (context_tokens + 1) % tokenizer.codebook_size, context_tokens, context)
    assert not torch.equal(same, other)


def test_a_dead_zone_keeps_the_context_pixel_where_the_change_is_smaller_and_draws_the_rest():
    tokenizer = tiny_tokenizer()
    decoder = decoder_for(tokenizer)
    torch.nn.init.normal_(decoder.head[-1].weight, std=0.05)  # small changes, a few levels each
    context = torch.full((2, 16, 16, 3), 128, dtype=torch.uint8)
    context_tokens = tokenizer.encode(context)
    indices = (context_tokens + 1) % tokenizer.codebook_size
    drawn = decoder.decode(tokenizer, indices, context_tokens, context)
    change = (drawn.int() - context.int()).abs()
    zone = float(change[change > 0].float().median())
    decoder.config = dataclasses.replace(decoder.config, dead_zone=zone)
    gated = decoder.decode(tokenizer, indices, context_tokens, context)
    kept = change < zone - 1  # below the zone even before rounding
    assert kept.any() and (change > zone + 1).any()
    assert torch.equal(gated[kept], context[kept])
    assert torch.equal(gated[change > zone + 1], drawn[change > zone + 1])
    with pytest.raises(ValueError, match="dead_zone"):
        ContextDecoderConfig(dead_zone=-1.0)


def test_bad_input_is_named():
    tokenizer = tiny_tokenizer()
    decoder = decoder_for(tokenizer)
    context = frames(2)
    tokens = tokenizer.encode(context)
    with pytest.raises(ValueError, match="batch sizes differ"):
        decoder.decode(tokenizer, tokens[:1], tokens, context)
    with pytest.raises(ValueError, match="channel-first"):
        decoder.decode(tokenizer, tokens, tokens, context.permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match="another config"):
        decoder.decode(tiny_tokenizer(codebook_bits=5), tokens, tokens, context)
    with pytest.raises(ValueError, match="channels must be a positive int"):
        ContextDecoderConfig(channels=0)


def test_checkpoint_round_trip_and_wrong_kind(tmp_path):
    tokenizer = tiny_tokenizer()
    decoder = decoder_for(tokenizer)
    torch.nn.init.normal_(decoder.head[-1].weight, std=0.3)
    path = save_checkpoint(tmp_path / "cd.pt", kind=CHECKPOINT_KIND, config=decoder.checkpoint_config(),
                           model_state=decoder.state_dict(), step=1)
    loaded = load_context_decoder(path)
    assert loaded.tokenizer_config == tokenizer.config and loaded.config == decoder.config
    for name, value in decoder.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    wrong = save_checkpoint(tmp_path / "tok.pt", kind="tokenizer", config=dataclasses.asdict(tokenizer.config),
                            model_state=tokenizer.state_dict(), step=0)
    with pytest.raises(CheckpointError, match="context_decoder"):
        load_context_decoder(wrong)
