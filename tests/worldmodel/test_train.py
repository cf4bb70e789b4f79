import dataclasses
import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from roboscape_r.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from roboscape_r.worldmodel.train import (
    NonFiniteLossError,
    WMTrainConfig,
    load_world_model,
    remap_token_ids,
    train_world_model,
)
from roboscape_r.worldmodel.world_model import WorldModel

from tests.worldmodel.conftest import FakeTokenizer, tiny_config


def make_clips(num_clips=8, length=6, seed=0, tokenizer=None):
    """Clips whose grey level moves with the action, so the next frame is predictable."""
    tokenizer = tokenizer or FakeTokenizer()
    rng = np.random.default_rng(seed)
    clips = []
    for index in range(num_clips):
        tokens = np.zeros((length, 4, 4), dtype=np.int64)
        tokens[0] = rng.integers(0, 16, size=(4, 4))
        actions = rng.choice([-1.0, 1.0], size=(length, 3)).astype(np.float32)
        for t in range(1, length):
            tokens[t] = (tokens[t - 1] + int(actions[t - 1, 0])) % 16
        success = np.zeros(length, dtype=bool)
        success[-2:] = index % 2 == 0
        clips.append({
            "frames": tokenizer.decode(torch.from_numpy(tokens)).numpy(),
            "tokens": tokens,
            "actions": actions,
            "done": success.copy(),
            "success": success,
            "instruction": ["push the cube", "pick up the cube"][index % 2],
            "task_id": index % 2,
            "scene_id": "default",
        })
    return clips


class FakeTextEncoder:
    dim = 8

    def encode(self, instructions):
        return torch.stack([torch.full((8,), float(len(text))) / 10 for text in instructions])


class ScriptedDataset:
    """Clips, with a crash or NaN actions once more than `after_calls` clips were read."""

    def __init__(self, clips, after_calls=None, failure="crash"):
        self.clips, self.after_calls, self.failure, self.calls = clips, after_calls, failure, 0

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, index):
        self.calls += 1
        clip = dict(self.clips[index])
        if self.after_calls is not None and self.calls > self.after_calls:
            if self.failure == "crash":
                raise KeyboardInterrupt("simulated kill")
            clip["actions"] = np.full_like(clip["actions"], np.nan)
        return clip


def tiny_train_config(**overrides):
    values = dict(
        model=tiny_config(), steps=6, batch_size=4, clip_len=4, lr=3e-3, warmup_steps=1, log_every=1,
        ckpt_every=3, seed=0, device="cpu", progress=False,
    )
    values.update(overrides)
    return WMTrainConfig(**values)


def test_overfits_a_handful_of_clips(tmp_path):
    clips = make_clips(num_clips=4)
    config = tiny_train_config(steps=80, ckpt_every=80, lr=1e-2, warmup_steps=5, min_lr_ratio=1.0)
    result = train_world_model(config, clips, None, tmp_path)
    assert result.step == 80
    assert result.last_losses["token_ce"] < 0.3 * math.log(16)
    assert result.last_losses["done_bce"] < 0.3
    assert result.model_config.grid_h == 4 and result.model_config.codebook_size == 16
    assert (tmp_path / "config.json").is_file()
    assert any((tmp_path / "tb").iterdir())


@pytest.mark.parametrize("token_remap_prob", [0.0, 0.5])
def test_resume_after_a_kill_equals_a_straight_run(tmp_path, token_remap_prob):
    clips = make_clips()
    config = tiny_train_config(model=tiny_config(dropout=0.1), token_remap_prob=token_remap_prob)
    straight = train_world_model(config, clips, None, tmp_path / "straight")

    killed = ScriptedDataset(clips, after_calls=1 + 3 * 4)  # 1 peek + 3 steps of 4 clips
    with pytest.raises(KeyboardInterrupt):
        train_world_model(config, killed, None, tmp_path / "resumed")
    assert latest_checkpoint(tmp_path / "resumed" / "checkpoints").name == "ckpt_00000003.pt"
    resumed = train_world_model(config, clips, None, tmp_path / "resumed")
    assert resumed.step == 6

    a = load_checkpoint(straight.checkpoint, expected_kind="wm_act")
    b = load_checkpoint(resumed.checkpoint, expected_kind="wm_act")
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, atol=1e-6, rtol=1e-5, msg=name)
    assert b["extra"]["data_position"] == a["extra"]["data_position"]


def test_run_steps_splits_a_run(tmp_path):
    clips = make_clips()
    config = tiny_train_config(steps=4, ckpt_every=100)
    first = train_world_model(dict_replace(config, run_steps=2), clips, None, tmp_path)
    assert first.step == 2 and first.checkpoint.name == "ckpt_00000002.pt"
    second = train_world_model(config, clips, None, tmp_path)
    assert second.step == 4


def dict_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    clips = make_clips()
    poisoned = ScriptedDataset(clips, after_calls=1 + 2 * 4, failure="nan")  # step 3 gets NaN actions
    config = tiny_train_config(ckpt_every=1)
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 3") as error:
        train_world_model(config, poisoned, None, tmp_path)
    assert "ckpt_00000002.pt" in str(error.value)
    newest = latest_checkpoint(tmp_path / "checkpoints")
    assert newest.name == "ckpt_00000002.pt"
    ckpt = load_checkpoint(newest, expected_kind="wm_act")
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())


def test_frames_tokenised_on_the_fly_equal_pretokenised_clips(tmp_path):
    tokenizer = FakeTokenizer()
    clips = make_clips(tokenizer=tokenizer)
    frames_only = [{k: v for k, v in clip.items() if k != "tokens"} for clip in clips]
    config = tiny_train_config(steps=2)
    from_frames = train_world_model(config, frames_only, tokenizer, tmp_path / "frames")
    from_tokens = train_world_model(config, clips, None, tmp_path / "tokens")
    a = load_checkpoint(from_frames.checkpoint, expected_kind="wm_act")["model"]
    b = load_checkpoint(from_tokens.checkpoint, expected_kind="wm_act")["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)


def test_token_hysteresis_refuses_frames_cropped_mid_episode(tmp_path):
    tokenizer = FakeTokenizer()
    frames_only = [{k: v for k, v in clip.items() if k != "tokens"} for clip in make_clips(tokenizer=tokenizer)]
    config = tiny_train_config(steps=2, model=dataclasses.replace(tiny_config(), token_hysteresis=0.2))
    with pytest.raises(ValueError, match="token_hysteresis 0.2 needs whole episodes"):
        train_world_model(config, frames_only, tokenizer, tmp_path)


def test_load_world_model_rebuilds_from_the_checkpoint_alone(tmp_path):
    clips = make_clips()
    result = train_world_model(tiny_train_config(steps=2), clips, None, tmp_path)
    model = load_world_model(tmp_path, "act")
    assert isinstance(model, WorldModel) and not model.training
    assert model.config == result.model_config
    tokens = torch.from_numpy(clips[0]["tokens"][None, :4])
    actions = torch.from_numpy(clips[0]["actions"][None, :4])
    again = load_world_model(result.checkpoint)  # kind read from the file
    torch.testing.assert_close(model(tokens, actions=actions), again(tokens, actions=actions))
    with pytest.raises(CheckpointError, match="'wm_txt' was expected"):
        load_world_model(tmp_path, "txt")


def test_wm_txt_trains_on_instructions(tmp_path):
    clips = make_clips()
    config = tiny_train_config(kind="txt", model=tiny_config("txt"), steps=2)
    result = train_world_model(config, clips, None, tmp_path, text_encoder=FakeTextEncoder())
    assert result.model_config.cond == "txt" and result.model_config.text_dim == 8
    assert load_world_model(tmp_path, "txt").config.cond == "txt"


def test_refusals(tmp_path):
    clips = make_clips()
    with pytest.raises(ValueError, match="clip_len"):
        tiny_train_config(clip_len=9)
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_world_model(tiny_train_config(batch_size=16), clips, None, tmp_path / "small")
    with pytest.raises(ValueError, match="no tokenizer"):
        train_world_model(tiny_train_config(), [{k: v for k, v in c.items() if k != "tokens"} for c in clips], None, tmp_path / "tok")
    train_world_model(tiny_train_config(steps=1), clips, None, tmp_path / "run")
    with pytest.raises(CheckpointError, match="resume=False"):
        train_world_model(tiny_train_config(steps=1, resume=False), clips, None, tmp_path / "run")
    with pytest.raises(CheckpointError, match="different config"):
        train_world_model(tiny_train_config(steps=1, lr=1e-4), clips, None, tmp_path / "run")


def test_remap_token_ids_permutes_identities_and_keeps_dynamics():
    torch.manual_seed(0)
    tokens = torch.randint(0, 64, (16, 5, 3, 3))
    tokens[:, 2:] = tokens[:, 1:2]  # cells still from frame 1 on
    remapped = remap_token_ids(tokens, 64, prob=0.5, max_fraction=1.0)
    changed = (remapped != tokens).flatten(1).any(1)
    assert 0 < int(changed.sum()) < 16  # some clips scrambled, some left
    for clip, new in zip(tokens, remapped):
        table = {}
        for old_id, new_id in zip(clip.flatten().tolist(), new.flatten().tolist()):
            assert table.setdefault(old_id, new_id) == new_id  # one mapping for the whole clip
        assert len(set(table.values())) == len(table)  # a bijection: nothing merged
        # still stays still and change stays change
        assert torch.equal(new[1:] == new[:-1], clip[1:] == clip[:-1])
    assert torch.equal(remap_token_ids(tokens, 64, prob=0.0, max_fraction=1.0), tokens)
    torch.manual_seed(1)
    first = remap_token_ids(tokens, 64, prob=0.5, max_fraction=0.5)
    torch.manual_seed(1)
    assert torch.equal(first, remap_token_ids(tokens, 64, prob=0.5, max_fraction=0.5))


def test_token_remap_training_is_seeded_and_changes_what_is_learnt(tmp_path):
    clips = make_clips()
    runs = {name: train_world_model(tiny_train_config(**overrides), clips, None, tmp_path / name)
            for name, overrides in [("a", dict(token_remap_prob=1.0)), ("b", dict(token_remap_prob=1.0)), ("plain", {})]}
    weights = {name: load_world_model(run.checkpoint).state_dict() for name, run in runs.items()}
    assert all(torch.equal(weights["a"][k], weights["b"][k]) for k in weights["a"])
    assert not all(torch.equal(weights["a"][k], weights["plain"][k]) for k in weights["a"])
    with pytest.raises(ValueError, match="token_remap_prob"):
        tiny_train_config(token_remap_prob=1.5)
    with pytest.raises(ValueError, match="token_remap_fraction"):
        tiny_train_config(token_remap_fraction=0.0)


DDP_SCRIPT = textwrap.dedent(
    """
    import os, sys, json, torch
    sys.path.insert(0, {repo_root!r})
    from tests.worldmodel.test_train import make_clips, tiny_train_config
    from roboscape_r.worldmodel.train import train_world_model
    torch.set_num_threads(1)
    result = train_world_model(tiny_train_config(steps=3, ckpt_every=2), make_clips(), None, sys.argv[1])
    # One file per rank: two ranks printing to one stdout can interleave within a line.
    rank = int(os.environ["RANK"])
    with open(f"{{sys.argv[1]}}_report_{{rank}}.json", "w") as f:
        json.dump({{"step": result.step, "losses": result.last_losses}}, f)
    """
)


def test_ddp_smoke_with_torchrun_and_gloo(tmp_path):
    import pathlib

    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT.format(repo_root=str(pathlib.Path(__file__).resolve().parents[2])))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(script), str(tmp_path / "run"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    reports = [json.loads(pathlib.Path(f"{tmp_path / 'run'}_report_{rank}.json").read_text()) for rank in (0, 1)]
    assert len(reports) == 2 and all(r["step"] == 3 for r in reports)
    assert reports[0]["losses"] == reports[1]["losses"]  # all-reduced metrics
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints", expected_kind="wm_act")
    assert ckpt["step"] == 3 and ckpt["extra"]["world_size"] == 2
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["world_size"] == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("bf16", [False, True])
def test_trains_and_resumes_on_cuda(tmp_path, bf16):
    frames_only = [{k: v for k, v in clip.items() if k != "tokens"} for clip in make_clips()]
    config = tiny_train_config(steps=4, device="cuda", bf16=bf16)
    first = train_world_model(dict_replace(config, run_steps=2), frames_only, FakeTokenizer(), tmp_path)
    assert first.step == 2
    result = train_world_model(config, frames_only, FakeTokenizer(), tmp_path)
    assert result.step == 4 and math.isfinite(result.last_losses["total"])
    model = load_world_model(tmp_path, "act", map_location="cpu")
    assert next(model.parameters()).device.type == "cpu"


def test_tokens_outside_the_codebook_are_refused(tmp_path):
    clips = make_clips()
    clips[0]["tokens"] = clips[0]["tokens"] + 100
    dataset = [clips[0]] * 4
    with pytest.raises(ValueError, match=r"outside the codebook \[0, 16\)"):
        train_world_model(tiny_train_config(steps=1), dataset, FakeTokenizer(), tmp_path)


def test_wm_txt_trains_on_successful_episodes_only_by_default():
    import numpy as np

    from roboscape_r.worldmodel.config import WMTrainConfig
    from roboscape_r.worldmodel.train import select_successful

    failed = {"success": np.zeros(5, bool)}
    succeeded = {"success": np.array([0, 0, 1, 1, 0], bool)}
    assert select_successful([failed, succeeded, failed]) == [succeeded]
    with pytest.raises(ValueError, match="none of the 2 episodes succeeds"):
        select_successful([failed, failed])
    assert WMTrainConfig(kind="txt").uses_success_only and not WMTrainConfig(kind="act").uses_success_only
    assert not WMTrainConfig(kind="txt", success_only=False).uses_success_only


def test_init_weights_starts_from_a_trained_model(tmp_path):
    from roboscape_r.checkpoint import CheckpointError
    from roboscape_r.worldmodel.train import load_world_model

    clips = make_clips()
    first = train_world_model(tiny_train_config(steps=2), clips, None, tmp_path / "first")
    config = dict_replace(tiny_train_config(steps=2), init_weights=str(first.checkpoint), lr=1e-12, warmup_steps=0)
    tuned = train_world_model(config, clips, None, tmp_path / "tuned")
    a, b = load_world_model(first.checkpoint), load_world_model(tuned.checkpoint)
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(a.parameters(), b.parameters()))
    wider = dict_replace(config, model=dict_replace(config.model, d_model=config.model.d_model * 2))
    with pytest.raises(CheckpointError, match="same architecture"):
        train_world_model(wider, clips, None, tmp_path / "wider")
    # Token hysteresis is a tokenisation setting: a fine-tune may change it, and records the new value.
    smoother = dict_replace(config, model=dict_replace(config.model, token_hysteresis=0.2))
    retokenised = load_world_model(train_world_model(smoother, clips, None, tmp_path / "smoother").checkpoint)
    assert retokenised.config.token_hysteresis == 0.2
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(a.parameters(), retokenised.parameters()))


def test_init_weights_may_add_a_spatial_head(tmp_path):
    from roboscape_r.worldmodel.train import load_world_model

    clips = make_clips()
    first = train_world_model(tiny_train_config(steps=2), clips, None, tmp_path / "first")
    base = tiny_train_config(steps=2)
    config = dict_replace(base, init_weights=str(first.checkpoint), lr=1e-12, warmup_steps=0,
                          model=dict_replace(base.model, spatial_head_layers=1, spatial_head_width=16))
    tuned = load_world_model(train_world_model(config, clips, None, tmp_path / "tuned").checkpoint)
    source = load_world_model(first.checkpoint)
    assert tuned.spatial_head is not None and source.spatial_head is None
    for name, value in source.state_dict().items():  # the backbone starts from the source weights
        assert torch.allclose(tuned.state_dict()[name], value, atol=1e-6), name
