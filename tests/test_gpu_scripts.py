"""The scripts of a lent-GPU session, run on the CPU at toy sizes: a token pack of a dataset, and
training both world models from it with the shipped tokenizer (checkpoint selection, export,
the golden-trajectory check)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from roboscape_r.data.format import iter_episode_meta, read_manifest
from tests.worldmodel.test_evaluate import write_dataset

REPO = Path(__file__).resolve().parents[1]
TOKENIZER = REPO / "checkpoints" / "small" / "tokenizer.pt"


def run(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def token_pack(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_scripts")
    data = write_dataset(root / "data", [12, 12], size=64)  # 10 episodes, the first of each scene successful
    instructions = sorted({meta["instruction"] for _, meta in iter_episode_meta(read_manifest(data))})
    rng = np.random.default_rng(0)
    (root / "embeddings.json").write_text(json.dumps({t: rng.normal(size=384).tolist() for t in instructions}))
    done = run("scripts/pack_frames.py", data, root / "pack.npz", "--tokenizer", TOKENIZER, "--keep-frames", 2)
    assert done.returncode == 0, done.stderr
    return root


def test_a_token_pack_keeps_tokens_for_all_and_frames_for_the_held_out_episodes(token_pack):
    pack = np.load(token_pack / "pack.npz")
    assert pack["tokens"].shape == (10 * 13, 8, 8) and pack["tokens"].dtype == np.int16
    assert pack["frames"].shape == (2 * 13, 64, 64, 3) and int(pack["frames_from_episode"]) == 8


def test_both_world_models_train_from_a_token_pack_and_export(token_pack):
    from roboscape_r.worldmodel.train import load_world_model

    out = token_pack / "out"
    done = run("scripts/train_models_frames.py", token_pack / "pack.npz", out, "--embeddings",
               token_pack / "embeddings.json", "--tokenizer-init", TOKENIZER, "--wm-steps", 2, "--select-every", 1,
               "--batch-size", 2, "--heldout-episodes", 2, "--golden-frames", 3, "--device", "cpu")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["train_episodes"] == 8 and report["heldout_frames"] == 26
    for kind in ("act", "txt"):
        assert set(report[f"wm_{kind}"]["heldout_curve"]) == {"ckpt_00000001.pt", "ckpt_00000002.pt"}
        assert np.isfinite(report[f"wm_{kind}"]["heldout"]["token_cross_entropy"])
        assert load_world_model(out / "export" / f"wm_{kind}.pt", kind=f"wm_{kind}").config.cond == kind
    golden = report["golden"]
    assert golden["episodes"] >= 1 and golden["greedy"]["psnr_db"] > 0 and golden["sampled_t1"]["motion"] >= 0


def test_a_token_pack_needs_its_own_tokenizer(token_pack, tmp_path):
    args = ("scripts/train_models_frames.py", token_pack / "pack.npz", tmp_path / "out", "--embeddings",
            token_pack / "embeddings.json", "--kinds", "txt", "--heldout-episodes", 2, "--device", "cpu")
    done = run(*args)
    assert done.returncode != 0 and "pass the tokenizer that made them with --tokenizer-init" in done.stderr
    from roboscape_r.checkpoint import load_checkpoint, save_checkpoint

    other = load_checkpoint(TOKENIZER, expected_kind="tokenizer")
    state = {k: v + 1 if v.is_floating_point() else v for k, v in other["model"].items()}
    save_checkpoint(tmp_path / "other.pt", kind="tokenizer", config=other["config"], model_state=state, step=0)
    done = run(*args, "--tokenizer-init", tmp_path / "other.pt")
    assert done.returncode != 0 and "was tokenised by another tokenizer" in done.stderr


def test_a_hysteresis_pack_trains_world_models_that_record_it(token_pack, tmp_path):
    import torch

    from roboscape_r.data.format import read_episode
    from roboscape_r.tokenizer import load_tokenizer
    from roboscape_r.worldmodel.train import load_world_model

    data = token_pack / "data"
    done = run("scripts/pack_frames.py", data, tmp_path / "pack.npz", "--tokenizer", TOKENIZER, "--keep-frames", 2,
               "--token-hysteresis", 0.3)
    assert done.returncode == 0, done.stderr
    pack = np.load(tmp_path / "pack.npz")
    assert float(pack["token_hysteresis"]) == 0.3
    shard, meta = next(iter_episode_meta(read_manifest(data)))
    frames = torch.from_numpy(read_episode(data / shard, meta["episode_index"])["frames"])
    expected = load_tokenizer(TOKENIZER).encode_sequence(frames, hysteresis=0.3)
    assert np.array_equal(pack["tokens"][: len(frames)], expected.numpy())
    assert not np.array_equal(pack["tokens"], np.load(token_pack / "pack.npz")["tokens"])

    args = ("scripts/train_models_frames.py", tmp_path / "pack.npz", tmp_path / "out", "--embeddings",
            token_pack / "embeddings.json", "--tokenizer-init", TOKENIZER, "--kinds", "act", "--wm-steps", 1,
            "--select-every", 1, "--batch-size", 2, "--heldout-episodes", 2, "--device", "cpu")
    done = run(*args)
    assert done.returncode != 0 and "made with hysteresis 0.3, not --token-hysteresis 0" in done.stderr
    done = run(*args, "--token-hysteresis", 0.3)
    assert done.returncode == 0, done.stderr[-3000:]
    assert load_world_model(tmp_path / "out" / "export" / "wm_act.pt", kind="wm_act").config.token_hysteresis == 0.3
