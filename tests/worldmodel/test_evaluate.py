import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from roboscape_r.atomic import atomic_write_json
from roboscape_r.checkpoint import CheckpointError, save_checkpoint
from roboscape_r.data.format import DatasetError, new_manifest, write_shard
from roboscape_r.tokenizer import Tokenizer, TokenizerConfig
from roboscape_r.worldmodel import frame_metrics as M
from roboscape_r.worldmodel.evaluate import (
    EvalWMConfig,
    open_loop_tokens,
    run_evaluation,
    shuffled_action_sources,
    split_of_scene,
    teacher_forced_done_probs,
)
from roboscape_r.worldmodel.evaluate_report import format_metrics
from roboscape_r.worldmodel.rollout import WorldModelRollout
from roboscape_r.worldmodel.world_model import WorldModel

from tests.conftest import make_episode
from tests.worldmodel.conftest import tiny_config

SCENES = ["id-default-wood", "id-cyan-slate", "ood-color-purple", "ood-light-dim", "my-lab-scene"]


class FakeTextEncoder:
    dim = 8

    def encode(self, instructions):
        return torch.stack([torch.full((8,), float(len(text))) / 10 for text in instructions])


def moving_episode(index, length, scene, size=16, success_at=None):
    """make_episode's metadata with frames of a bright square that moves one pixel per step."""
    episode = make_episode(index, length, size, scene=scene)
    rng = np.random.default_rng(index)
    background = rng.integers(40, 90, size=(size, size, 3), dtype=np.uint8)
    frames = np.repeat(background[None], length + 1, axis=0)
    for t in range(length + 1):
        x = (t + index) % (size - 4)
        frames[t, 5:9, x : x + 4] = (230, 200, 40)
    episode["frames"] = frames
    episode["actions"] = rng.uniform(-1, 1, size=(length, 7)).astype(np.float32)
    success = np.zeros(length, bool)
    if success_at is not None:
        success[success_at:] = True
    episode.update(success=success, terminated=success.copy(), truncated=np.zeros(length, bool))
    return episode


def write_dataset(root, lengths_per_scene, size=16):
    """Two episodes per scene (the first successful at its last steps), one shard per scene."""
    root.mkdir(parents=True, exist_ok=True)
    manifest = new_manifest({"image_size": size, "seed": 1})
    index = 0
    for k, scene in enumerate(SCENES):
        episodes = []
        for j, length in enumerate(lengths_per_scene):
            episodes.append(moving_episode(index, length, scene, size, success_at=length - 2 if j == 0 else None))
            index += 1
        manifest["shards"][f"shard_{k:05d}.h5"] = write_shard(root / f"shard_{k:05d}.h5", episodes)
    atomic_write_json(root / "manifest.json", manifest)
    return root


def tiny_tokenizer(image_size=16):
    torch.manual_seed(0)
    config = TokenizerConfig(image_size=image_size, grid_size=4, stem_factor=image_size // 8, channels=8,
                             max_channels=8, codebook_bits=4, num_res_blocks=1, refine_channels=0, norm_groups=4)
    return Tokenizer(config).eval()


def save_model(path, model, kind):
    return save_checkpoint(path, kind=kind, config={"model": model.config.to_dict()},
                           model_state=model.state_dict(), step=0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    tokenizer = tiny_tokenizer()
    torch.manual_seed(1)
    wm_act = WorldModel(tiny_config("act", action_dim=7)).eval()
    wm_txt = WorldModel(tiny_config("txt", action_dim=7)).eval()
    paths = {
        "data": write_dataset(root / "data", [6, 9]),
        "tokenizer": save_checkpoint(root / "tok.pt", kind="tokenizer", config=dataclasses.asdict(tokenizer.config),
                                     model_state=tokenizer.state_dict(), step=0),
        "wm_act": save_model(root / "act.pt", wm_act, "wm_act"),
        "wm_txt": save_model(root / "txt.pt", wm_txt, "wm_txt"),
    }
    return root, paths, tokenizer, wm_act


def eval_config(paths, out, **overrides):
    values = dict(data=paths["data"], tokenizer=paths["tokenizer"], wm_act=paths["wm_act"], out=out, horizons=(1, 2, 4),
                  context=2, control_horizon=2, episodes_per_split=4, bootstrap_samples=200, batch_size=4,
                  device="cpu", progress=False)
    values.update(overrides)
    return EvalWMConfig(**values)


# ------------------------------------------------------------------------------ frame metrics


def test_psnr_of_identical_frames_is_capped_and_matches_a_hand_computation():
    frames = torch.randint(0, 256, (3, 8, 8, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(M.psnr(frames, frames), torch.full((3,), M.PSNR_CAP_DB))
    shifted = frames.clone()
    shifted[0, 0, 0, 0] ^= 1  # one channel of one pixel off by one level
    mse = (1 / 255) ** 2 / (8 * 8 * 3)
    assert M.psnr(shifted, frames)[0].item() == pytest.approx(-10 * math.log10(mse), rel=1e-5)
    mask = torch.zeros(3, 8, 8, dtype=torch.bool)
    mask[0, 0, 0] = True
    masked = M.psnr(shifted, frames, mask)
    assert masked[0].item() == pytest.approx(-10 * math.log10((1 / 255) ** 2 / 3), rel=1e-5)
    assert masked[1:].isnan().all()  # empty masks


def test_ssim_of_identical_frames_is_one_and_drops_with_noise():
    frames = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(M.ssim(frames, frames), torch.ones(2))
    torch.testing.assert_close(M.ssim_map(frames, frames), torch.ones(2, 16, 16))
    noisy = (frames.int() + torch.randint(-40, 40, frames.shape)).clamp(0, 255).to(torch.uint8)
    assert (M.ssim(noisy, frames) < 0.99).all()
    # Flat frames: the structure term is C2 / C2, so SSIM is the luminance term alone.
    grey, light = torch.full((1, 16, 16, 3), 51, dtype=torch.uint8), torch.full((1, 16, 16, 3), 204, dtype=torch.uint8)
    expected = (2 * 0.2 * 0.8 + M.SSIM_C1) / (0.2**2 + 0.8**2 + M.SSIM_C1)
    assert M.ssim(grey, light).item() == pytest.approx(expected, rel=1e-5)
    full = torch.ones(2, 16, 16, dtype=torch.bool)
    torch.testing.assert_close(M.ssim(noisy, frames, full), M.ssim(noisy, frames))
    assert torch.allclose(M.ssim(frames[:, :5, :5], frames[:, :5, :5]), torch.ones(2))  # window shrinks to fit


def test_moving_mask_uses_the_threshold_per_channel():
    reference = torch.full((1, 2, 2, 3), 100, dtype=torch.uint8)
    target = reference.clone()
    target[0, 0, 0, 2] = 109  # 9 > 8: moving
    target[0, 1, 1, 0] = 108  # 8: not moving
    assert M.moving_mask(target, reference, 8).tolist() == [[[True, False], [False, False]]]


def test_auroc_and_f1_on_hand_made_scores():
    assert M.auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert M.auroc([0.2, 0.9], [0, 1]) == 1.0 and M.auroc([0.9, 0.2], [0, 1]) == 0.0
    assert M.auroc([0.5, 0.5, 0.5], [0, 1, 1]) == pytest.approx(0.5)  # ties count half
    assert M.auroc([0.1, 0.2], [1, 1]) is None
    scores = M.binary_scores([0.9, 0.6, 0.2, 0.7], [1, 0, 1, 1])  # tp 2, fp 1, fn 1
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 / 3)
    assert M.binary_scores([0.1], [0])["f1"] is None


def test_done_auroc_interval_resamples_whole_episodes():
    from roboscape_r.worldmodel.evaluate_report import summarize_done

    rng = np.random.default_rng(0)
    labels = [np.arange(20) >= 12 for _ in range(30)]  # success from step 12 on
    noisy = [np.where(label, 0.6, 0.4) + 0.3 * rng.standard_normal(20) for label in labels]
    perfect = [label.astype(float) for label in labels]
    few = summarize_done(noisy[:4], labels[:4], bootstrap_samples=300, seed=1)
    many = summarize_done(noisy, labels, bootstrap_samples=300, seed=1)
    assert few["episodes"] == 4 and many["episodes"] == 30
    for result in (few, many):
        assert result["auroc_ci95"][0] <= result["auroc"] <= result["auroc_ci95"][1]
    width = lambda r: r["auroc_ci95"][1] - r["auroc_ci95"][0]  # noqa: E731
    assert width(few) > width(many), "fewer episodes, wider interval"
    assert summarize_done(noisy, labels, bootstrap_samples=300, seed=1) == many, "seeded"
    assert summarize_done(perfect, labels, bootstrap_samples=50)["auroc_ci95"] == [1.0, 1.0]
    assert "auroc_ci95" not in summarize_done(noisy, labels), "no resampling asked"
    assert summarize_done([np.zeros(3)], [np.zeros(3, bool)], bootstrap_samples=10)["auroc"] is None


def test_bootstrap_interval_brackets_the_mean_and_is_seeded():
    values = np.random.default_rng(0).normal(2.0, 1.0, size=200)
    mean, low, high = M.bootstrap_mean_ci(values, samples=500, seed=3)
    assert low < mean < high and mean == pytest.approx(values.mean())
    assert M.bootstrap_mean_ci(values, samples=500, seed=3) == (mean, low, high)
    assert M.bootstrap_mean_ci([np.nan]) is None


# ------------------------------------------------------------------------------ rollouts


def test_open_loop_after_teacher_forced_context_equals_direct_forwards():
    torch.manual_seed(0)
    model = WorldModel(tiny_config("act", action_dim=7)).eval()
    tokens = torch.randint(0, 16, (2, 3, 4, 4))
    actions = torch.randn(2, 4, 7)
    predicted = open_loop_tokens(WorldModelRollout(model, None), tokens, actions, horizon=2)
    with torch.no_grad():
        first = model(tokens, actions=actions[:, :3]).next_token_logits[:, -1].argmax(-1).view(2, 4, 4)
        history = torch.cat([tokens, first[:, None]], dim=1)
        second = model(history, actions=actions).next_token_logits[:, -1].argmax(-1).view(2, 4, 4)
    assert torch.equal(predicted[:, 0], first) and torch.equal(predicted[:, 1], second)


def test_teacher_forced_done_scores_each_step_once_with_half_a_context_of_past():
    torch.manual_seed(0)
    model = WorldModel(tiny_config("act", action_dim=7)).eval()  # context 4, windows every 2 frames
    lengths = [3, 10]
    tokens = [torch.randint(0, 16, (n + 1, 4, 4)) for n in lengths]
    actions = [torch.randn(n, 7) for n in lengths]
    probs = teacher_forced_done_probs(model, tokens, actions, batch_size=3)
    with torch.no_grad():
        short = torch.sigmoid(model(tokens[0][None, :3], actions=actions[0][None]).done_logits[0]).numpy()
        np.testing.assert_allclose(probs[0], short, atol=1e-6)
        # step t of the long episode is scored by the window [t - 2 - t % 2, +4) (t >= 4) or [0, 4)
        for t in range(10):
            start = 0 if t < 4 else t - 2 - t % 2
            window = model(tokens[1][None, start : start + 4], actions=actions[1][None, start : start + 4])
            assert probs[1][t] == pytest.approx(torch.sigmoid(window.done_logits[0, t - start]).item(), abs=1e-6)


def test_shuffled_actions_come_from_another_window_of_the_same_split():
    splits = ["a", "a", "a", "b", "c", "c"]
    sources, kinds = shuffled_action_sources(splits, np.random.default_rng(0))
    for window, source in enumerate(sources):
        assert splits[source] == splits[window]
        assert (source != window) == (splits[window] != "b")
    assert kinds == {"a": "across-windows", "b": "time-reversed", "c": "across-windows"}
    assert sorted(sources[:3]) == [0, 1, 2]  # a permutation within the split


def test_split_of_scene():
    assert split_of_scene("id-cyan-slate") == "in-domain"
    assert split_of_scene("ood-light-dim") == "ood/lighting"
    assert split_of_scene("my-lab-scene") == "my-lab-scene"


# ------------------------------------------------------------------------------ the whole run


def test_metrics_exist_for_every_split_and_horizon(setup):
    root, paths, _, _ = setup
    out = root / "run"
    metrics = run_evaluation(eval_config(paths, out, wm_txt=paths["wm_txt"]), text_encoder=FakeTextEncoder())
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert (out / "open_loop_grid.png").stat().st_size > 0 and (out / "open_loop.gif").stat().st_size > 0
    assert metrics["perceptual_distance"] == "tokenizer-features-lpips"
    assert list(metrics["splits"]) == ["in-domain", "ood/object_color", "ood/lighting", "my-lab-scene", "all"]
    for split, entry in metrics["splits"].items():
        assert entry["windows"] == (10 if split == "all" else 4 if split == "in-domain" else 2)
        for h in ("1", "2", "4"):
            cell = entry["open_loop"][h]
            for reference in ("model", "model_anchored", "copy_last", "tokenizer_recon"):
                for metric in ("psnr", "ssim", "perceptual"):
                    assert isinstance(cell[reference][metric], float), (split, h, reference, metric)
                    assert isinstance(cell["moving"][reference][metric], float), (split, h, reference, metric)
            assert cell["moving"]["windows_with_motion"] == entry["windows"]
        control = entry["controllability"]
        assert control["horizon"] == 2 and control["psnr_gap_ci95"][0] <= control["psnr_gap"] <= control["psnr_gap_ci95"][1]
        low, high = entry["done"]["auroc_ci95"]
        assert 0.0 <= low <= entry["done"]["auroc"] <= high <= 1.0
        assert entry["done"]["positive_steps"] == (2 * 5 if split == "all" else 2 * 2 if split == "in-domain" else 2)
        golden = entry["golden"]
        assert golden["episodes"] == entry["episodes"] // 2 and golden["done_step_mae"] >= 0
    assert "in-domain" in format_metrics(metrics)


def test_copy_last_and_tokenizer_references_equal_hand_computations(setup, tmp_path):
    _, paths, tokenizer, _ = setup
    # Episodes of exactly context - 1 + max horizon = 1 + 4 steps: one window each, at step 0.
    data = write_dataset(tmp_path / "exact", [5, 5])
    metrics = run_evaluation(eval_config(paths, tmp_path / "out", data=data))
    from roboscape_r.data.format import iter_episode_meta, read_episode, read_manifest

    manifest = read_manifest(data)
    frames = {}
    for shard, meta in iter_episode_meta(manifest):
        frames.setdefault(meta["scene"], []).append(read_episode(data / shard, meta["episode_index"])["frames"])

    def psnr(a, b):
        mse = np.mean((a.astype(np.float64) / 255 - b.astype(np.float64) / 255) ** 2)
        return min(-10 * math.log10(mse), M.PSNR_CAP_DB) if mse > 0 else M.PSNR_CAP_DB

    for h in (1, 2, 4):
        episodes = frames["ood-color-purple"]
        copy_last = np.mean([psnr(f[1], f[1 + h]) for f in episodes])
        with torch.no_grad():
            recon = [tokenizer.decode(tokenizer.encode(torch.from_numpy(f[1 + h][None])))[0].numpy() for f in episodes]
        tokenizer_recon = np.mean([psnr(r, f[1 + h]) for r, f in zip(recon, episodes)])
        cell = metrics["splits"]["ood/object_color"]["open_loop"][str(h)]
        assert cell["copy_last"]["psnr"] == pytest.approx(copy_last, rel=1e-4)
        assert cell["tokenizer_recon"]["psnr"] == pytest.approx(tokenizer_recon, rel=1e-4)
        assert cell["copy_last"]["ssim"] < 1.0


# ------------------------------------------------------------------------------ bad input


def test_a_wm_txt_checkpoint_passed_as_wm_act_is_refused(setup, tmp_path):
    _, paths, _, _ = setup
    with pytest.raises(CheckpointError, match=r"--wm-act: .*'wm_txt' model but a 'wm_act' was expected"):
        run_evaluation(eval_config(paths, tmp_path, wm_act=paths["wm_txt"]))
    with pytest.raises(CheckpointError, match=r"--wm-txt: .*'wm_act' model but a 'wm_txt' was expected"):
        run_evaluation(eval_config(paths, tmp_path, wm_txt=paths["wm_act"]), text_encoder=FakeTextEncoder())
    with pytest.raises(CheckpointError, match=r"--tokenizer: .*'wm_act' model but a 'tokenizer' was expected"):
        run_evaluation(eval_config(paths, tmp_path, tokenizer=paths["wm_act"]))


def test_mismatched_sizes_are_refused(setup, tmp_path):
    _, paths, _, _ = setup
    big = write_dataset(tmp_path / "big", [6], size=32)
    with pytest.raises(ValueError, match="32x32 frames but the tokenizer takes 16x16"):
        run_evaluation(eval_config(paths, tmp_path / "o1", data=big))
    coarse = WorldModel(tiny_config("act", action_dim=7, grid_h=2, grid_w=2))
    path = save_model(tmp_path / "coarse.pt", coarse, "wm_act")
    with pytest.raises(ValueError, match="reads 2x2 token grids of 16 codes but the tokenizer makes 4x4"):
        run_evaluation(eval_config(paths, tmp_path / "o2", wm_act=path))
    three_d = save_model(tmp_path / "a3.pt", WorldModel(tiny_config("act", action_dim=3)), "wm_act")
    with pytest.raises(ValueError, match="7-D actions but WM_act takes 3-D"):
        run_evaluation(eval_config(paths, tmp_path / "o3", wm_act=three_d))
    with pytest.raises(ValueError, match="takes 8-D instruction embeddings"):
        wrong_dim = type("Enc", (), {"dim": 384})()
        run_evaluation(eval_config(paths, tmp_path / "o4", wm_txt=paths["wm_txt"]), text_encoder=wrong_dim)


def test_empty_missing_or_too_short_datasets_are_refused(setup, tmp_path):
    _, paths, _, _ = setup
    empty = tmp_path / "empty"
    empty.mkdir()
    atomic_write_json(empty / "manifest.json", new_manifest({"image_size": 16}))
    with pytest.raises(ValueError, match="holds no episodes"):
        run_evaluation(eval_config(paths, tmp_path / "o", data=empty))
    with pytest.raises(DatasetError, match="not a roboscape dataset"):
        run_evaluation(eval_config(paths, tmp_path / "o", data=tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="no held-out episode has the 20 steps"):
        run_evaluation(eval_config(paths, tmp_path / "o", horizons=(1, 19)))


@pytest.mark.parametrize("overrides, message", [
    (dict(horizons=()), "horizons"),
    (dict(horizons=(0, 4)), "horizons"),
    (dict(horizons=(4, 4)), "duplicates"),
    (dict(context=0), "--context"),
    (dict(control_horizon=8), "exceeds the largest horizon 4"),
])
def test_bad_options_are_refused(overrides, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        EvalWMConfig(**{"horizons": (1, 4), "control_horizon": 4, **overrides})


def test_cli_runs_and_reports_bad_input_in_one_line(setup, tmp_path, capsys):
    from roboscape_r.cli import main

    _, paths, _, _ = setup
    common = ["--data", str(paths["data"]), "--tokenizer", str(paths["tokenizer"]), "--horizons", "1", "2",
              "--control-horizon", "2", "--episodes-per-split", "2", "--batch-size", "8", "--device", "cpu",
              "--no-progress"]
    with pytest.raises(SystemExit) as exit_info:
        main(["eval-wm", *common, "--wm-act", str(paths["wm_act"]), "--out", str(tmp_path / "cli")])
    assert exit_info.value.code == 0
    assert (tmp_path / "cli" / "metrics.json").is_file()
    assert "ood/lighting" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["eval-wm", *common, "--wm-act", str(paths["wm_txt"]), "--out", str(tmp_path / "bad")])
    assert exit_info.value.code == 2
    assert "roboscape eval-wm: error: --wm-act:" in capsys.readouterr().err


def test_spatial_head_needs_its_wm_txt_and_must_fit_it(setup, tmp_path):
    from roboscape_r.checkpoint import save_checkpoint
    from roboscape_r.worldmodel.spatial_head import SPATIAL_HEAD_KIND, SpatialARHead, SpatialHeadConfig

    _, paths, _, _ = setup
    head = SpatialARHead(SpatialHeadConfig(num_tokens=1, codebook_size=2, d_model=4, width=4, n_layers=1, n_heads=1))
    path = save_checkpoint(tmp_path / "head.pt", kind=SPATIAL_HEAD_KIND, step=0, model_state=head.state_dict(),
                           config={"head": head.config.to_dict()})
    with pytest.raises(ValueError, match="--wm-txt-spatial-head needs --wm-txt"):
        run_evaluation(eval_config(paths, tmp_path / "o1", wm_txt_spatial_head=path))
    with pytest.raises(ValueError, match="was built for 1 tokens"):
        run_evaluation(eval_config(paths, tmp_path / "o2", wm_txt=paths["wm_txt"], wm_txt_spatial_head=path),
                       text_encoder=FakeTextEncoder())
    with pytest.raises(CheckpointError, match="--wm-txt-spatial-head"):
        run_evaluation(eval_config(paths, tmp_path / "o3", wm_txt=paths["wm_txt"], wm_txt_spatial_head=paths["wm_act"]),
                       text_encoder=FakeTextEncoder())


def test_an_untrained_context_decoder_scores_exactly_as_copy_last(setup, tmp_path):
    from roboscape_r.tokenizer.context_decoder import CHECKPOINT_KIND, ContextDecoder, ContextDecoderConfig

    _, paths, tokenizer, _ = setup
    decoder = ContextDecoder(tokenizer.config, ContextDecoderConfig(channels=8, num_res_blocks=1, norm_groups=4))
    path = save_checkpoint(tmp_path / "cd.pt", kind=CHECKPOINT_KIND, config=decoder.checkpoint_config(),
                           model_state=decoder.state_dict(), step=0)
    metrics = run_evaluation(eval_config(paths, tmp_path / "out", context_decoder=path))
    for entry in metrics["splits"].values():
        for cell in entry["open_loop"].values():
            assert cell["model_context"]["psnr"] == pytest.approx(cell["copy_last"]["psnr"])
            assert cell["moving"]["model_context"]["psnr"] == pytest.approx(cell["moving"]["copy_last"]["psnr"],
                                                                            nan_ok=True)
    assert "m/a/c/r/x" in format_metrics(metrics)
    assert "m/a/c/r/x" not in format_metrics(run_evaluation(eval_config(paths, tmp_path / "plain")))


def test_a_context_decoder_of_another_tokenizer_is_refused(setup, tmp_path):
    from roboscape_r.tokenizer.context_decoder import CHECKPOINT_KIND, ContextDecoder

    _, paths, tokenizer, _ = setup
    other = dataclasses.replace(tokenizer.config, codebook_bits=5)
    decoder = ContextDecoder(other)
    path = save_checkpoint(tmp_path / "cd.pt", kind=CHECKPOINT_KIND, config=decoder.checkpoint_config(),
                           model_state=decoder.state_dict(), step=0)
    with pytest.raises(ValueError, match="--context-decoder was fitted to a tokenizer with another config"):
        run_evaluation(eval_config(paths, tmp_path / "out", context_decoder=path))
    with pytest.raises(CheckpointError, match="--context-decoder"):
        run_evaluation(eval_config(paths, tmp_path / "out", context_decoder=paths["wm_act"]))


def test_held_out_episodes_are_tokenised_as_sequences_with_the_models_hysteresis(tmp_path):
    from roboscape_r.worldmodel.evaluate import load_heldout_episodes

    tokenizer = tiny_tokenizer()
    root = write_dataset(tmp_path / "heldout", [7, 9])
    common = dict(episodes_per_split=1, seed=0, action_dim=7, batch_size=4)
    plain = load_heldout_episodes(root, tokenizer, **common)
    steady = load_heldout_episodes(root, tokenizer, hysteresis=0.4, **common)
    assert [e.split for e in plain] == [e.split for e in steady]
    for a, b in zip(plain, steady):
        assert torch.equal(a.tokens, tokenizer.encode(a.frames))
        assert torch.equal(b.tokens, tokenizer.encode_sequence(b.frames, hysteresis=0.4))
    assert any(not torch.equal(a.tokens, b.tokens) for a, b in zip(plain, steady))  # the hysteresis took effect


def test_full_frames_are_also_summarised_over_the_windows_in_which_something_moved():
    import numpy as np

    from roboscape_r.worldmodel.evaluate_report import FRAME_METRICS, REFERENCES, summarize_open_loop

    nan = float("nan")
    full = {"psnr": torch.tensor([[100.0], [20.0], [30.0]]), "ssim": torch.ones(3, 1), "perceptual": torch.zeros(3, 1)}
    moving = {"psnr": torch.tensor([[nan], [12.0], [14.0]]), "ssim": torch.ones(3, 1), "perceptual": torch.zeros(3, 1)}
    scores = {ref: {m: full[m].clone() for m in FRAME_METRICS} for ref in REFERENCES}
    scores.update({f"moving/{ref}": {m: moving[m].clone() for m in FRAME_METRICS} for ref in REFERENCES})
    scores["moving/pixel_fraction"] = {"value": torch.tensor([[0.0], [0.1], [0.2]])}
    open_loop = {"scores": scores, "steps": [8], "control_true": torch.zeros(3), "control_shuffled": torch.zeros(3)}
    summary = summarize_open_loop(open_loop, np.array([0, 1, 2]), (8,), 8, "other", 10, 0)["open_loop"]["8"]
    assert summary["model"]["psnr"] == pytest.approx(50.0)  # the still window's cap counts in the plain mean ...
    assert summary["moved_windows"]["model"]["psnr"] == pytest.approx(25.0)  # ... not over the moved windows
    assert summary["moved_windows"]["windows"] == 2
    only_still = summarize_open_loop(open_loop, np.array([0]), (8,), 8, "other", 10, 0)["open_loop"]["8"]
    assert only_still["moved_windows"]["windows"] == 0 and only_still["moved_windows"]["model"]["psnr"] is None


def test_the_difference_from_copy_last_is_paired_by_window_with_an_interval():
    import numpy as np

    from roboscape_r.worldmodel.evaluate_report import FRAME_METRICS, REFERENCES, summarize_open_loop

    nan = float("nan")
    scores = {ref: {m: torch.zeros(4, 1) for m in FRAME_METRICS} for ref in REFERENCES}
    scores.update({f"moving/{ref}": {m: torch.zeros(4, 1) for m in FRAME_METRICS} for ref in REFERENCES})
    scores["moving/pixel_fraction"] = {"value": torch.zeros(4, 1)}
    scores["copy_last"]["psnr"] = torch.tensor([[100.0], [20.0], [22.0], [24.0]])  # window 0 is still
    scores["model"]["psnr"] = torch.tensor([[40.0], [22.0], [24.0], [26.0]])
    scores["moving/copy_last"]["psnr"] = torch.tensor([[nan], [10.0], [11.0], [12.0]])
    scores["moving/model"]["psnr"] = torch.tensor([[nan], [13.0], [14.0], [15.0]])
    open_loop = {"scores": scores, "steps": [8], "control_true": torch.zeros(4), "control_shuffled": torch.zeros(4)}
    difference = summarize_open_loop(open_loop, np.arange(4), (8,), 8, "other", 500, 0)["open_loop"]["8"]["vs_copy_last"]
    assert difference["model"] == "model"
    full = difference["full"]
    assert full["psnr_diff"] == pytest.approx((-60 + 2 + 2 + 2) / 4)  # one still window outweighs three wins
    low, high = full["psnr_diff_ci95"]
    assert -60 < low < full["psnr_diff"] < high == pytest.approx(2)  # the interval spans a loss and the wins
    moving = difference["moving"]  # windows without motion do not count
    assert moving["psnr_diff"] == pytest.approx(3.0) and moving["psnr_diff_ci95"] == pytest.approx([3.0, 3.0])
    scores["model_context"] = {m: v.clone() for m, v in scores["copy_last"].items()}
    scores["moving/model_context"] = {m: v.clone() for m, v in scores["moving/copy_last"].items()}
    drawn = summarize_open_loop(open_loop, np.arange(4), (8,), 8, "other", 50, 0)["open_loop"]["8"]["vs_copy_last"]
    assert drawn["model"] == "model_context" and drawn["full"]["psnr_diff"] == 0.0  # the context decoder's frames count


def test_token_change_rates_count_kept_still_cells_and_changed_moving_cells():
    from roboscape_r.worldmodel.evaluate import token_change_rates

    context = torch.zeros(2, 2, 2, dtype=torch.long)  # (B, h, w)
    targets = torch.tensor([[[[0, 0], [0, 5]]], [[[0, 0], [0, 0]]]])  # (B, S=1, h, w): window 0 changes one cell
    predicted = torch.tensor([[[[0, 7], [0, 6]]], [[[3, 3], [3, 3]]]])
    rates = token_change_rates(predicted, targets, context)
    assert rates["still_kept"].shape == (2, 1)
    assert rates["still_kept"][:, 0].tolist() == pytest.approx([2 / 3, 0.0])  # window 1 redrew every still cell
    assert rates["changed_changed"][0, 0].item() == 1.0  # the changed cell was changed (to another token: still a change)
    assert math.isnan(rates["changed_changed"][1, 0].item())  # nothing changed in window 1
    copy = token_change_rates(context[:, None].clone(), targets, context)
    assert copy["still_kept"][:, 0].tolist() == [1.0, 1.0] and copy["changed_changed"][0, 0].item() == 0.0


def test_token_rates_are_summarised_per_horizon_when_present():
    import numpy as np

    from roboscape_r.worldmodel.evaluate_report import FRAME_METRICS, REFERENCES, summarize_open_loop

    nan = float("nan")
    one = {m: torch.zeros(2, 1) for m in FRAME_METRICS}
    scores = {ref: dict(one) for ref in REFERENCES} | {f"moving/{ref}": dict(one) for ref in REFERENCES}
    scores["moving/pixel_fraction"] = {"value": torch.zeros(2, 1)}
    open_loop = {"scores": scores, "steps": [8], "control_true": torch.zeros(2), "control_shuffled": torch.zeros(2),
                 "tokens": {"still_kept": torch.tensor([[0.5], [1.0]]), "changed_changed": torch.tensor([[nan], [0.25]])}}
    summary = summarize_open_loop(open_loop, np.array([0, 1]), (8,), 8, "other", 10, 0)["open_loop"]["8"]
    assert summary["tokens"]["still_kept"] == pytest.approx(0.75)
    assert summary["tokens"]["changed_changed"] == pytest.approx(0.25)  # windows without a changed cell do not count
    del open_loop["tokens"]
    assert "tokens" not in summarize_open_loop(open_loop, np.array([0, 1]), (8,), 8, "other", 10, 0)["open_loop"]["8"]
