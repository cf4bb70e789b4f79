"""The spatial autoregressive head: causality, neutral start, decoding = teacher forcing, loading checks."""

from __future__ import annotations

import pytest
import torch

from roboscape_r.checkpoint import CheckpointError, save_checkpoint
from roboscape_r.worldmodel.config import WorldModelConfig
from roboscape_r.worldmodel.spatial_head import (
    SPATIAL_HEAD_KIND, SpatialARHead, SpatialHeadConfig, load_spatial_head, weights_digest,
)
from roboscape_r.worldmodel.world_model import WorldModel

V, N, D = 32, 6, 16


def make_head(seed: int = 0, trained: bool = True) -> SpatialARHead:
    torch.manual_seed(seed)
    head = SpatialARHead(SpatialHeadConfig(num_tokens=N, codebook_size=V, d_model=D, width=16, n_layers=2, n_heads=2))
    if trained:  # a nonzero output layer, as after training
        torch.nn.init.normal_(head.out.weight, std=0.5)
    return head.eval()


def test_position_i_sees_only_earlier_tokens():
    head = make_head()
    hidden = torch.randn(3, N, D)
    tokens = torch.randint(0, V, (3, N))
    base = head.delta_logits(hidden, tokens)
    for j in range(N):
        changed = tokens.clone()
        changed[:, j] = (changed[:, j] + 1) % V
        delta = head.delta_logits(hidden, changed)
        assert torch.allclose(delta[:, : j + 1], base[:, : j + 1], atol=1e-5)  # token j feeds positions > j only
        if j + 1 < N:
            assert not torch.allclose(delta[:, j + 1], base[:, j + 1], atol=1e-5)


def test_untrained_head_adds_nothing():
    head = make_head(trained=False)
    hidden = torch.randn(2, N, D)
    assert torch.count_nonzero(head.delta_logits(hidden, torch.randint(0, V, (2, N)))) == 0


def test_greedy_decoding_agrees_with_teacher_forcing():
    head = make_head()
    hidden = torch.randn(4, N, D)
    base = torch.randn(4, N, V)
    tokens = head.decode(hidden, lambda i: base[:, i], lambda logits: logits.argmax(dim=-1))
    with torch.no_grad():
        forced = (base + head.delta_logits(hidden, tokens)).argmax(dim=-1)
    assert torch.equal(tokens, forced)
    # the head changes the decision somewhere, so the test would catch a decoder that ignored it
    assert not torch.equal(tokens, base.argmax(dim=-1))


def test_bad_hidden_shape_is_named():
    with pytest.raises(ValueError, match=r"hidden states must be \(R, 6, 16\)"):
        make_head().delta_logits(torch.randn(2, N, D + 1), torch.zeros(2, N, dtype=torch.long))


def tiny_world_model(seed: int) -> WorldModel:
    torch.manual_seed(seed)
    return WorldModel(WorldModelConfig(grid_h=2, grid_w=3, codebook_size=V, d_model=D, n_layers=1, n_heads=2,
                                       context_frames=4, cond="txt", text_dim=8))


def test_loading_checks_kind_grid_and_backbone_weights(tmp_path):
    model = tiny_world_model(0)
    head = SpatialARHead(SpatialHeadConfig.for_world_model(model.config, width=16, n_layers=1, n_heads=2))
    path = save_checkpoint(tmp_path / "head.pt", kind=SPATIAL_HEAD_KIND, step=1, model_state=head.state_dict(),
                           config={"head": head.config.to_dict(), "world_model_digest": weights_digest(model),
                                   "world_model_path": "wm_txt.pt"})
    loaded = load_spatial_head(path, model)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), head.state_dict().values()))
    with pytest.raises(ValueError, match="fitted to other world-model weights"):
        load_spatial_head(path, tiny_world_model(1))
    other_grid = WorldModel(WorldModelConfig(grid_h=3, grid_w=3, codebook_size=V, d_model=D, n_layers=1, n_heads=2,
                                             context_frames=4, cond="txt", text_dim=8))
    with pytest.raises(ValueError, match="built for 6 tokens"):
        load_spatial_head(path, other_grid)
    wrong_kind = save_checkpoint(tmp_path / "wm.pt", kind="wm_txt", step=1, model_state=model.state_dict(),
                                 config={"model": model.config.to_dict()})
    with pytest.raises(CheckpointError):
        load_spatial_head(wrong_kind, model)


def test_training_lowers_the_cross_entropy_and_writes_a_loadable_head(tmp_path):
    from roboscape_r.worldmodel.spatial_head_train import SpatialHeadTrainConfig, run_train_spatial_head
    from roboscape_r.worldmodel.train import load_world_model
    from tests.envs.wm_env_helpers import make_assets

    assets = make_assets(tmp_path / "assets")
    config = SpatialHeadTrainConfig(wm=assets["wm_txt_path"], tokenizer=assets["tokenizer_path"],
                                    data=assets["dataset"], val_data=None, val_fraction=0.34, out=tmp_path / "head",
                                    successful_only=False, width=16, n_layers=1, n_heads=2, steps=60,
                                    batch_size=8, lr=3e-3, eval_every=20, progress=False)
    report = run_train_spatial_head(config)
    before, after = report["before"], report["after"]
    assert before["train"]["head_ce"] == pytest.approx(before["train"]["base_ce"])  # untrained: no change
    assert after["train"]["head_ce"] < before["train"]["base_ce"] - 0.05  # it fits its training frames
    assert after["val"]["head_ce"] <= before["val"]["base_ce"] + 1e-6  # the best head (step 0 included) is kept
    assert report["episodes"]["train"] + report["episodes"]["val"] == 6
    wm_txt = load_world_model(assets["wm_txt_path"])
    head = load_spatial_head(tmp_path / "head" / "spatial_head.pt", wm_txt)
    assert head.config.num_tokens == 16
    with pytest.raises(ValueError, match="fitted to other world-model weights"):
        load_spatial_head(tmp_path / "head" / "spatial_head.pt", load_world_model(assets["wm_act_path"]))
