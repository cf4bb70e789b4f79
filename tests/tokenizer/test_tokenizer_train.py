"""Tests of roboscape_r/tokenizer/train.py: learning, exact resume, NaN stop, inputs, logs."""

import dataclasses

import pytest
import torch

from roboscape_r.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from roboscape_r.tokenizer import losses
from roboscape_r.tokenizer.config import TokenizerConfig, TokenizerTrainConfig
from roboscape_r.tokenizer.model import load_tokenizer
from roboscape_r.tokenizer.synthetic import SyntheticFrames
from roboscape_r.tokenizer.train import NonFiniteLossError, StepBatchSampler, WarmupCosine, train_tokenizer

TINY = TokenizerConfig(image_size=32, grid_size=4, channels=16, max_channels=32, codebook_bits=10,
                       num_res_blocks=1, refine_channels=4, norm_groups=8)


def tiny_train_config(**overrides) -> TokenizerTrainConfig:
    values = dict(model=TINY, steps=6, batch_size=4, warmup_steps=2, log_every=2, ckpt_every=3, device="cpu",
                  progress=False)
    values.update(overrides)
    return TokenizerTrainConfig(**values)


def dataset(count: int = 16) -> SyntheticFrames:
    return SyntheticFrames(count, image_size=32)


def test_overfits_a_handful_of_frames(tmp_path):
    config = tiny_train_config(steps=120, batch_size=4, lr=3e-3, warmup_steps=5, log_every=5, ckpt_every=120)
    frames = torch.stack([dataset(4)[i] for i in range(4)])
    first = train_tokenizer(dataclasses.replace(config, run_steps=5), frames, tmp_path)
    last = train_tokenizer(config, frames, tmp_path)
    assert last.finished and last.step == 120
    assert last.metrics["losses/l2"] < 0.3 * first.metrics["losses/l2"]
    assert last.metrics["charts/psnr_db"] > first.metrics["charts/psnr_db"] + 5


@pytest.mark.parametrize("perceptual", ["gradient", "ema-encoder-lpips"])
def test_resume_is_exact(tmp_path, perceptual):
    # entropy_sample_fraction < 1 makes LFQ draw random numbers, so the RNG state must come back too.
    config = tiny_train_config(perceptual_loss=perceptual, entropy_sample_fraction=0.5, ckpt_every=100)
    straight = train_tokenizer(config, dataset(), tmp_path / "straight")
    train_tokenizer(dataclasses.replace(config, run_steps=3), dataset(), tmp_path / "split")
    resumed = train_tokenizer(config, dataset(), tmp_path / "split")
    assert straight.step == resumed.step == 6 and resumed.finished
    a = load_checkpoint(straight.checkpoint_path, expected_kind="tokenizer")
    b = load_checkpoint(resumed.checkpoint_path, expected_kind="tokenizer")
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=1e-6, msg=key)
    for key, value in a["extra"]["loss_state"].items():
        torch.testing.assert_close(b["extra"]["loss_state"][key], value, rtol=0, atol=1e-6, msg=key)
    torch.testing.assert_close(b["optimizer"]["state"], a["optimizer"]["state"], rtol=0, atol=1e-6)
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 6


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real_forward = losses.TokenizerLoss.forward
    calls = []

    def poisoned(self, output, frames_uint8):
        terms = real_forward(self, output, frames_uint8)
        calls.append(1)
        return terms._replace(total=terms.total * float("nan")) if len(calls) >= 5 else terms

    monkeypatch.setattr(losses.TokenizerLoss, "forward", poisoned)
    config = tiny_train_config(steps=10, log_every=3, ckpt_every=2)
    with pytest.raises(NonFiniteLossError, match=r"NaN/inf at step 5;.*ckpt_00000004\.pt"):
        train_tokenizer(config, dataset(), tmp_path)
    assert latest_checkpoint(tmp_path).name == "ckpt_00000004.pt"
    good = load_tokenizer(tmp_path)
    assert all(torch.isfinite(p).all() for p in good.parameters())


def test_refuses_to_overwrite_without_resume(tmp_path):
    train_tokenizer(tiny_train_config(steps=2), dataset(), tmp_path)
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        train_tokenizer(tiny_train_config(steps=2, resume=False), dataset(), tmp_path)


def test_resume_with_other_config_names_keys(tmp_path):
    train_tokenizer(tiny_train_config(steps=4, run_steps=2), dataset(), tmp_path)
    with pytest.raises(CheckpointError, match=r"'lr': checkpoint 0\.001, expected 0\.002"):
        train_tokenizer(tiny_train_config(steps=4, lr=2e-3), dataset(), tmp_path)
    # runtime options may change between calls
    result = train_tokenizer(tiny_train_config(steps=4, log_every=1, ckpt_every=1, keep_last=1), dataset(), tmp_path)
    assert result.finished and sorted(p.name for p in tmp_path.glob("ckpt_*.pt")) == ["ckpt_00000004.pt"]


def test_time_limit_stops_with_a_checkpoint(tmp_path):
    result = train_tokenizer(tiny_train_config(steps=1000, time_limit_s=0.0), dataset(), tmp_path)
    assert result.step == 1 and not result.finished
    assert result.checkpoint_path.name == "ckpt_00000001.pt"


def test_accepts_clips_and_writes_logs(tmp_path):
    clips = torch.stack([dataset()[i] for i in range(8)]).view(4, 2, 32, 32, 3)  # items (2, H, W, 3)
    result = train_tokenizer(tiny_train_config(steps=2, log_every=1), clips, tmp_path)
    assert result.metrics["time/frames_per_s"] == pytest.approx(result.metrics["time/steps_per_s"] * 8)
    assert (tmp_path / "config.json").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"losses/total", "losses/perceptual", "losses/entropy", "charts/lr", "time/steps_per_s"} <= tags


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        (torch.zeros(4, 32, 32, 3), ValueError, "got dtype torch.float32"),
        (torch.zeros(4, 64, 64, 3, dtype=torch.uint8), ValueError, r"got shape \(64, 64, 3\)"),
        (torch.zeros(4, 3, 32, 32, dtype=torch.uint8), ValueError, "channel-first"),
        (iter([torch.zeros(32, 32, 3, dtype=torch.uint8)]), TypeError, "map-style dataset"),
        (torch.zeros(0, 32, 32, 3, dtype=torch.uint8), ValueError, "empty"),
    ],
)
def test_bad_frames_source(tmp_path, source, error, message):
    with pytest.raises(error, match=message):
        train_tokenizer(tiny_train_config(), source, tmp_path)


def test_sampler_is_a_pure_function_of_step():
    sampler = StepBatchSampler(num_items=10, batch_size=4, seed=1, start_step=0, end_step=5)
    batches = list(sampler)
    fresh = StepBatchSampler(num_items=10, batch_size=4, seed=1, start_step=3, end_step=5)
    assert list(fresh) == batches[3:]
    stream = [index for batch in batches for index in batch]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert stream[:10] != stream[10:20]  # a new permutation each epoch


def test_warmup_cosine():
    schedule = WarmupCosine(warmup_steps=4, total_steps=14, min_ratio=0.1)
    assert [schedule(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert schedule(9) == pytest.approx(0.55)
    assert schedule(14) == pytest.approx(0.1) and schedule(100) == pytest.approx(0.1)
