import torch

from roboscape_r.worldmodel.transformer import KVCache, SpatialTemporalTransformer, block_causal_mask

from tests.worldmodel.conftest import tiny_config


def test_block_causal_mask_sees_own_frame_and_the_past():
    mask = block_causal_mask(num_new_frames=2, num_past_frames=1, tokens_per_frame=2, device=torch.device("cpu"))
    expected = torch.tensor(
        [
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)
    assert block_causal_mask(1, 3, 4, torch.device("cpu")) is None


def test_cache_in_chunks_equals_one_pass():
    config = tiny_config()
    torch.manual_seed(0)
    backbone = SpatialTemporalTransformer(config).eval()
    x = torch.randn(2, 4, config.tokens_per_frame, config.d_model)
    full = backbone(x)
    cache = KVCache(config, batch_size=2)
    first = backbone(x[:, :1], cache)
    rest = backbone(x[:, 1:3], cache)  # two frames at once on top of a cache: masked path
    last = backbone(x[:, 3:], cache)
    assert cache.num_frames == 4
    torch.testing.assert_close(torch.cat([first, rest, last], dim=1), full, atol=1e-5, rtol=1e-5)


def test_context_overflow_is_refused():
    config = tiny_config()
    backbone = SpatialTemporalTransformer(config)
    cache = KVCache(config, batch_size=1)
    backbone(torch.zeros(1, 3, config.tokens_per_frame, config.d_model), cache)
    try:
        backbone(torch.zeros(1, 2, config.tokens_per_frame, config.d_model), cache)
    except ValueError as error:
        assert "3 cached + 2 new frames exceed context_frames=4" in str(error)
    else:
        raise AssertionError("expected ValueError")
