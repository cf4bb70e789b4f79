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


def test_an_interrupted_fit_resumes_to_the_same_head(tmp_path, monkeypatch):
    import roboscape_r.checkpoint as checkpoint_module
    from roboscape_r.worldmodel.spatial_head_train import STATE_KIND, SpatialHeadTrainConfig, run_train_spatial_head
    from tests.envs.wm_env_helpers import make_assets

    assets = make_assets(tmp_path / "assets")

    def config(out, lr=3e-3):
        return SpatialHeadTrainConfig(wm=assets["wm_txt_path"], tokenizer=assets["tokenizer_path"],
                                      data=assets["dataset"], val_data=None, val_fraction=0.34, out=out,
                                      successful_only=False, width=16, n_layers=1, n_heads=2, steps=60, batch_size=8,
                                      lr=lr, eval_every=20, progress=False, cache_dir=tmp_path / "cache")

    straight = run_train_spatial_head(config(tmp_path / "straight"))
    real_save = checkpoint_module.save_checkpoint

    def save_then_crash(path, **kwargs):
        real_save(path, **kwargs)
        if kwargs["kind"] == STATE_KIND and kwargs["step"] == 40:
            raise KeyboardInterrupt("simulated crash after step 40")

    monkeypatch.setattr(checkpoint_module, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run_train_spatial_head(config(tmp_path / "resumed"))
    monkeypatch.setattr(checkpoint_module, "save_checkpoint", real_save)
    assert (tmp_path / "resumed" / "train_state.pt").is_file()
    with pytest.raises(checkpoint_module.CheckpointError, match="lr"):  # other options: not this run's state
        run_train_spatial_head(config(tmp_path / "resumed", lr=1e-3))
    resumed = run_train_spatial_head(config(tmp_path / "resumed"))
    assert not (tmp_path / "resumed" / "train_state.pt").exists()
    assert resumed["curve"] == pytest.approx(straight["curve"]) and resumed["chosen_step"] == straight["chosen_step"]
    a = torch.load(tmp_path / "straight" / "spatial_head.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "spatial_head.pt", weights_only=True)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)


def joint_model(seed: int = 0, layers: int = 1) -> WorldModel:
    torch.manual_seed(seed)
    return WorldModel(WorldModelConfig(grid_h=2, grid_w=3, codebook_size=V, d_model=D, n_layers=1, n_heads=2,
                                       context_frames=4, cond="txt", text_dim=8, spatial_head_layers=layers,
                                       spatial_head_width=16)).eval()


def test_a_joint_head_is_neutral_at_init_and_teacher_forced_within_the_next_frame():
    with_head, without = joint_model(layers=1), joint_model(layers=0)
    assert all(torch.equal(p, without.state_dict()[k]) for k, p in with_head.state_dict().items()
               if not k.startswith("spatial_head."))  # the backbone is initialised the same
    tokens, text = torch.randint(0, V, (2, 3, 2, 3)), torch.randn(2, 8)
    assert torch.allclose(with_head(tokens, instruction_embeddings=text).next_token_logits,
                          without(tokens, instruction_embeddings=text).next_token_logits)
    torch.nn.init.normal_(with_head.spatial_head.out.weight, std=0.5)
    logits = with_head(tokens, instruction_embeddings=text).next_token_logits  # (2, 3, 6, V)
    changed = tokens.clone()
    changed[:, 2, 0, 1] = (changed[:, 2, 0, 1] + 1) % V  # frame 2, token 1
    after = with_head(changed, instruction_embeddings=text).next_token_logits
    assert torch.allclose(after[:, 0], logits[:, 0], atol=1e-5)  # frame 0 predicts frame 1: untouched
    assert torch.allclose(after[:, 1, :2], logits[:, 1, :2], atol=1e-5)  # frame 2's tokens 0, 1: untouched
    assert not torch.allclose(after[:, 1, 2:], logits[:, 1, 2:], atol=1e-5)  # later tokens see token 1


def test_a_joint_head_trains_and_drives_the_rollout():
    from roboscape_r.worldmodel.rollout import WorldModelRollout
    from roboscape_r.worldmodel.world_model import world_model_losses

    model = joint_model(layers=1).train()
    tokens, text = torch.randint(0, V, (4, 4, 2, 3)), torch.randn(4, 8)
    done = torch.zeros(4, 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss = world_model_losses(model(tokens, instruction_embeddings=text), tokens, done).token_ce
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first - 0.5 and model.spatial_head.out.weight.abs().sum() > 0
    model.eval()
    rollout = WorldModelRollout(model, None)
    assert rollout.spatial_head is model.spatial_head  # the model's own head by default
    rollout.reset_tokens(tokens[:, 0], text)
    predicted = rollout.step_tokens().tokens  # greedy, one token at a time
    with torch.no_grad():  # teacher forcing on the predicted frame picks the same tokens
        forced = model(torch.stack([tokens[:, 0], predicted], dim=1), instruction_embeddings=text)
    assert torch.equal(forced.next_token_logits[:, 0].argmax(-1), predicted.reshape(4, -1))
