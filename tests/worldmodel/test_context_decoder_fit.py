"""Fitting a context decoder to a tokenizer and WM_act: it beats copying the context frame on the
validation windows, writes a loadable checkpoint, and an interrupted fit resumes to the same weights."""

from __future__ import annotations

import pytest
import torch

from roboscape_r.worldmodel.context_decoder_fit import ContextDecoderFitConfig, run_fit_context_decoder


def fit_config(assets, out, **overrides):
    values = dict(tokenizer=assets["tokenizer_path"], wm_act=assets["wm_act_path"], data=assets["dataset"],
                  out=out, val_fraction=0.34, horizon=3, predicted_windows=16, val_windows_per_episode=2,
                  channels=8, num_res_blocks=1, steps=60, batch_size=8, lr=3e-3, eval_every=20, progress=False)
    values.update(overrides)
    return ContextDecoderFitConfig(**values)


def test_fitting_beats_copying_the_context_frame_and_writes_a_loadable_decoder(tmp_path):
    from roboscape_r.tokenizer import load_tokenizer
    from roboscape_r.tokenizer.context_decoder import load_context_decoder
    from tests.envs.wm_env_helpers import make_assets

    assets = make_assets(tmp_path / "assets")
    report = run_fit_context_decoder(fit_config(assets, tmp_path / "fit"))
    scores = report["val_psnr_db"]
    untrained = scores["untrained (copies the context frame)"]
    assert untrained == pytest.approx(scores["copy_last"])  # an untrained decoder is copy-the-context-frame
    assert report["chosen_step"] > 0  # some step improved on it ...
    assert sum(scores["chosen"].values()) > sum(untrained.values())  # ... on the validation windows
    assert report["episodes"]["train"] + report["episodes"]["val"] == 6
    decoder = load_context_decoder(tmp_path / "fit" / "context_decoder.pt")
    assert decoder.tokenizer_config == load_tokenizer(assets["tokenizer_path"]).config
    zones = report["dead_zone"]["val_mean_psnr_db"]  # the dead zone with the best validation PSNR is kept
    assert set(zones) == {f"{z:g}" for z in fit_config(assets, tmp_path).dead_zones}
    assert decoder.config.dead_zone == report["dead_zone"]["chosen"]
    assert zones[f"{decoder.config.dead_zone:g}"] == max(zones.values())
    chosen_mean = sum(scores["chosen"].values()) / len(scores["chosen"])
    assert zones[f"{decoder.config.dead_zone:g}"] == pytest.approx(chosen_mean)
    assert not (tmp_path / "fit" / "train_state.pt").exists()


def test_an_interrupted_fit_resumes_to_the_same_decoder(tmp_path, monkeypatch):
    import roboscape_r.checkpoint as checkpoint_module
    from roboscape_r.worldmodel.context_decoder_fit import STATE_KIND
    from tests.envs.wm_env_helpers import make_assets

    assets = make_assets(tmp_path / "assets")
    cache = tmp_path / "cache"
    straight = run_fit_context_decoder(fit_config(assets, tmp_path / "straight", cache_dir=cache))
    real_save = checkpoint_module.save_checkpoint

    def save_then_crash(path, **kwargs):
        real_save(path, **kwargs)
        if kwargs["kind"] == STATE_KIND and kwargs["step"] == 40:
            raise KeyboardInterrupt("simulated crash after step 40")

    monkeypatch.setattr(checkpoint_module, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run_fit_context_decoder(fit_config(assets, tmp_path / "resumed", cache_dir=cache))
    monkeypatch.setattr(checkpoint_module, "save_checkpoint", real_save)
    with pytest.raises(checkpoint_module.CheckpointError, match="lr"):  # other options: not this run's state
        run_fit_context_decoder(fit_config(assets, tmp_path / "resumed", cache_dir=cache, lr=1e-3))
    resumed = run_fit_context_decoder(fit_config(assets, tmp_path / "resumed", cache_dir=cache))
    assert resumed["curve"] == pytest.approx(straight["curve"]) and resumed["chosen_step"] == straight["chosen_step"]
    a = torch.load(tmp_path / "straight" / "context_decoder.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "context_decoder.pt", weights_only=True)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)


@pytest.mark.parametrize("overrides, message", [
    (dict(horizon=0), "--horizon must be >= 1"),
    (dict(predicted_fraction=1.5), "--predicted-fraction must be in"),
    (dict(val_fraction=0.0), "--val-fraction must be in"),
    (dict(recoloured_fraction=-0.1), "--recoloured-fraction must be in"),
    (dict(dead_zones=()), "--dead-zones must be"),
    (dict(loss="l2"), "--loss must be"),
])
def test_bad_options_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        ContextDecoderFitConfig(**overrides)


def test_a_horizon_longer_than_every_episode_is_refused(tmp_path):
    from tests.envs.wm_env_helpers import make_assets

    assets = make_assets(tmp_path / "assets")
    with pytest.raises(ValueError, match="lower --horizon"):
        run_fit_context_decoder(fit_config(assets, tmp_path / "fit", horizon=50))


def test_cli_fits_and_reports_bad_input_in_one_line(tmp_path, capsys):
    from roboscape_r.cli import main
    from tests.envs.wm_env_helpers import make_assets

    assets = make_assets(tmp_path / "assets")
    common = ["--tokenizer", str(assets["tokenizer_path"]), "--wm-act", str(assets["wm_act_path"]),
              "--data", str(assets["dataset"]), "--val-fraction", "0.34", "--horizon", "3", "--predicted-windows", "8",
              "--channels", "8", "--num-res-blocks", "1", "--batch-size", "4", "--eval-every", "5", "--no-progress"]
    with pytest.raises(SystemExit) as done:
        main(["train-context-decoder", *common, "--steps", "10", "--out", str(tmp_path / "fit")])
    assert done.value.code == 0
    printed = capsys.readouterr().out
    assert "copy_last" in printed and (tmp_path / "fit" / "context_decoder.pt").is_file()
    with pytest.raises(SystemExit) as refused:
        main(["train-context-decoder", *common, "--wm-act", str(assets["wm_txt_path"]), "--out", str(tmp_path / "x")])
    assert refused.value.code != 0


def test_fitting_on_wm_act_predictions_draws_its_windows_and_keeps_the_validation_windows(tmp_path):
    from tests.envs.wm_env_helpers import make_assets

    assets = make_assets(tmp_path / "assets")
    real = run_fit_context_decoder(fit_config(assets, tmp_path / "real", steps=10, eval_every=10,
                                              predicted_fraction=0.0))
    predicted = run_fit_context_decoder(fit_config(assets, tmp_path / "predicted", steps=10, eval_every=10,
                                                   predicted_fraction=1.0))
    assert real["windows"]["train"] == 0 and predicted["windows"]["train"] == 16
    assert real["windows"]["val"] == predicted["windows"]["val"]
    assert real["val_psnr_db"]["copy_last"] == predicted["val_psnr_db"]["copy_last"]  # the same windows
    assert real["curve"][-1]["train_loss"] != predicted["curve"][-1]["train_loss"]  # other targets' tokens


def test_the_psnr_loss_ranks_predictions_as_mean_psnr_does_where_the_pixel_loss_does_not():
    """One still pair and one moving pair: X draws the still pair almost exactly and misses the moving
    one by more; Y spreads a smaller total error over both. Mean PSNR prefers X, a pixel mean Y."""
    from roboscape_r.tokenizer.model import to_uint8_frames
    from roboscape_r.worldmodel import frame_metrics as M
    from roboscape_r.worldmodel.context_decoder_fit import fit_loss

    targets = torch.zeros(2, 3, 16, 16)
    x = targets + torch.tensor([0.01, 0.3])[:, None, None, None]
    y = targets + torch.tensor([0.1, 0.2])[:, None, None, None]
    mean_psnr = lambda p: M.psnr(to_uint8_frames(p), to_uint8_frames(targets)).mean().item()
    assert mean_psnr(x) > mean_psnr(y)
    assert fit_loss(x, targets, "psnr") < fit_loss(y, targets, "psnr")
    assert fit_loss(x, targets, "l1_mse") > fit_loss(y, targets, "l1_mse")


def test_recoloured_windows_are_recoloured_as_a_whole_and_tokenised_again(tmp_path, monkeypatch):
    import numpy as np

    import roboscape_r.worldmodel.context_decoder_fit as fit
    from roboscape_r.tokenizer import load_tokenizer
    from roboscape_r.worldmodel.context_decoder_fit import episode_set
    from roboscape_r.worldmodel.data import fit_and_val_episodes
    from roboscape_r.worldmodel.rollout import WorldModelRollout
    from roboscape_r.worldmodel.train import load_world_model
    from tests.envs.wm_env_helpers import make_assets

    assets = make_assets(tmp_path / "assets")
    config = fit_config(assets, tmp_path / "fit", recoloured_fraction=0.5)
    tokenizer = load_tokenizer(assets["tokenizer_path"])
    rollout = WorldModelRollout(load_world_model(assets["wm_act_path"], "wm_act"), tokenizer, temperature=0.0)
    tokenized = fit_and_val_episodes(assets["dataset"], None, tokenizer, assets["tokenizer_path"], tmp_path / "cache",
                                     val_fraction=config.val_fraction, split_seed=0)["train"]
    load = fit._load_episodes  # the fake frames are nearly black; brighten them so a recolouring shows
    monkeypatch.setattr(fit, "_load_episodes",
                        lambda *args: [dict(ep, frames=ep["frames"] * 20 + 60) for ep in load(*args)])
    windows = [(0, 0), (0, 1), (1, 0), (1, 1)]
    recolour = [True, False, True, False]
    torch.manual_seed(0)
    s = episode_set(assets["dataset"], tokenized, "train", rollout, config, windows, False, recolour)
    span = config.horizon + 1
    assert s.window_frames.shape[:2] == (4, span) and s.window_tokens.shape[:2] == (4, span)
    for w, ((e, start), painted) in enumerate(zip(windows, recolour)):
        real = s.frames[e][start:start + span]
        assert torch.equal(s.window_frames[w], real) != painted
        if painted:  # the whole window took one recolouring: each frame's channel means moved alike
            ratio = s.window_frames[w].float().mean(dim=(1, 2)) / real.float().mean(dim=(1, 2)).clamp(min=1)
            assert np.allclose(ratio.numpy(), ratio[0].numpy(), rtol=0.2), ratio
            torch.testing.assert_close(s.window_tokens[w], tokenizer.encode(s.window_frames[w]).long())
        else:  # the episode's own tokens, as without recolouring
            torch.testing.assert_close(s.window_tokens[w], s.tokens[e][start:start + span])
