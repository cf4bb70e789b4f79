"""`roboscape train-wm --extra-data`: the training splits of several dataset folders are joined."""

import dataclasses

from roboscape_r.checkpoint import save_checkpoint
from roboscape_r.cli import main
from roboscape_r.worldmodel.data import tokenized_episodes
from tests.worldmodel.test_evaluate import tiny_tokenizer, write_dataset


def test_extra_datasets_join_the_training_episodes(tmp_path, monkeypatch):
    import pytest

    import roboscape_r.worldmodel.train as train_module

    tokenizer = tiny_tokenizer()
    tok = save_checkpoint(tmp_path / "tok.pt", kind="tokenizer", config=dataclasses.asdict(tokenizer.config),
                          model_state=tokenizer.state_dict(), step=0)
    first, second = write_dataset(tmp_path / "a", [6, 7]), write_dataset(tmp_path / "b", [8, 9, 6])
    seen = {}

    class Result:
        step, checkpoint, last_losses = 0, tmp_path / "none.pt", None

    def fake_train(config, episodes, tokenizer, out):
        seen["episodes"] = episodes
        return Result()

    monkeypatch.setattr(train_module, "train_world_model", fake_train)
    with pytest.raises(SystemExit) as exit_info:
        main(["train-wm", "--data", str(first), "--extra-data", str(second), "--tokenizer", str(tok),
              "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 0
    expected = [tokenized_episodes(root, tokenizer, tok, tmp_path / "cache", split="train") for root in (first, second)]
    assert len(seen["episodes"]) == len(expected[0]) + len(expected[1]) > len(expected[0])
    assert [e["instruction"] for e in seen["episodes"]] == [e["instruction"] for part in expected for e in part]


def test_token_hysteresis_tokenises_whole_episodes_and_keys_the_cache(tmp_path):
    import torch

    from roboscape_r.data.format import iter_episode_meta, read_episode, read_manifest
    from roboscape_r.worldmodel.data import encode_episode

    tokenizer = tiny_tokenizer()
    tok = save_checkpoint(tmp_path / "tok.pt", kind="tokenizer", config=dataclasses.asdict(tokenizer.config),
                          model_state=tokenizer.state_dict(), step=0)
    root = write_dataset(tmp_path / "data", [7, 9])
    plain = tokenized_episodes(root, tokenizer, tok, tmp_path / "cache", split="all")
    steady = tokenized_episodes(root, tokenizer, tok, tmp_path / "cache", split="all", hysteresis=0.4)
    assert len(list((tmp_path / "cache").glob("tokens-*.pt"))) == 2  # one cache file each
    shard, meta = next(iter_episode_meta(read_manifest(root)))
    frames = torch.from_numpy(read_episode(root / shard, meta["episode_index"])["frames"])
    expected = tokenizer.encode_sequence(frames, hysteresis=0.4)
    assert torch.equal(steady[0]["tokens"].long(), expected[:-1]) and torch.equal(steady[0]["next_tokens"].long(), expected[1:])
    assert torch.equal(plain[0]["tokens"].long(), tokenizer.encode(frames)[:-1])
    assert torch.equal(encode_episode(tokenizer, frames, 0.0, batch_frames=3), tokenizer.encode(frames))
    assert torch.equal(tokenized_episodes(root, tokenizer, tok, tmp_path / "cache", split="all",
                                          hysteresis=0.4)[0]["tokens"], steady[0]["tokens"])  # from the cache
