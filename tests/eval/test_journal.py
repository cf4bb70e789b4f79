"""The evaluation journal: which finished episodes a rerun keeps, and which it runs again."""

import json
from pathlib import Path

from roboscape_r.eval.journal import JOURNAL_NAME, EvalJournal, journal_key, policy_fingerprint

KEY = {"policy_sha256": "abc", "seed": 0}


def record(env_id: str, index: int) -> dict:
    return {"env_id": env_id, "episode_index": index, "success_once": index % 2 == 0}


def video(out: Path, env_id: str, index: int, write: bool = True) -> dict:
    entry = {"env_id": env_id, "episode_index": index}
    for kind in ("mp4", "gif", "strip"):
        entry[kind] = f"videos/{env_id}_{index}.{kind}"
        if write:
            (out / entry[kind]).parent.mkdir(parents=True, exist_ok=True)
            (out / entry[kind]).write_bytes(b"x")
    return entry


def write_journal(out: Path, key: dict = KEY) -> None:
    journal = EvalJournal(out, key)
    journal.append([record("A", 0), record("A", 1)], [video(out, "A", 0)], elapsed_s=5.0)
    journal.append([record("B", 0)], [], elapsed_s=9.0)
    journal.close()


def test_a_rerun_keeps_the_finished_episodes(tmp_path):
    write_journal(tmp_path)
    journal = EvalJournal(tmp_path, dict(KEY))
    journal.load([("A", 0), ("A", 1), ("B", 0), ("B", 1)])
    assert journal.done_ids() == {("A", 0), ("A", 1), ("B", 0)}
    assert [v["episode_index"] for v in journal.videos] == [0] and journal.elapsed_s == 9.0
    assert "3 finished episode(s)" in journal.note
    journal.append([record("B", 1)], [], elapsed_s=12.0)  # appending after a resume extends the same file
    journal.close()
    again = EvalJournal(tmp_path, dict(KEY))
    again.load([("A", 0), ("A", 1), ("B", 0), ("B", 1)])
    assert len(again.records) == 4 and again.elapsed_s == 12.0


def test_only_planned_episodes_are_kept(tmp_path):
    write_journal(tmp_path)
    journal = EvalJournal(tmp_path, KEY)
    journal.load([("A", 1), ("C", 0)])
    assert journal.done_ids() == {("A", 1)} and journal.videos == []


def test_a_line_cut_short_by_a_crash_runs_again(tmp_path):
    write_journal(tmp_path)
    path = tmp_path / JOURNAL_NAME
    path.write_text(path.read_text() + '{"records": [{"env_id": "B", "episode_')  # torn write
    journal = EvalJournal(tmp_path, KEY)
    journal.load([("A", 0), ("A", 1), ("B", 0), ("B", 1)])
    assert journal.done_ids() == {("A", 0), ("A", 1), ("B", 0)}
    journal.append([record("B", 1)], [], elapsed_s=11.0)
    journal.close()
    lines = path.read_text().splitlines()
    assert all(json.loads(line) for line in lines), "the torn line is gone and the new batch is on its own line"


def test_an_episode_whose_video_is_gone_runs_again(tmp_path):
    write_journal(tmp_path)
    (tmp_path / "videos" / "A_0.gif").unlink()
    journal = EvalJournal(tmp_path, KEY)
    journal.load([("A", 0), ("A", 1), ("B", 0)])
    assert journal.done_ids() == {("A", 1), ("B", 0)} and journal.videos == []


def test_another_evaluations_journal_is_set_aside(tmp_path):
    write_journal(tmp_path)
    journal = EvalJournal(tmp_path, {**KEY, "seed": 1})
    journal.load([("A", 0)])
    assert journal.records == [] and "another evaluation" in journal.note
    assert not (tmp_path / JOURNAL_NAME).exists() and (tmp_path / (JOURNAL_NAME + ".stale")).is_file()


def test_a_policy_without_files_writes_no_journal(tmp_path):
    journal = EvalJournal(tmp_path, None)
    journal.load([("A", 0)])
    journal.append([record("A", 0)], [], elapsed_s=1.0)
    journal.finish()
    assert not (tmp_path / JOURNAL_NAME).exists()


class Member:
    def __init__(self, source):
        self.source = source


class Router:
    def __init__(self, source, policies):
        self.source, self.policies = source, policies


def test_policy_fingerprint_follows_the_files(tmp_path):
    files = [tmp_path / name for name in ("router.json", "a.pt", "b.pt")]
    for path in files:
        path.write_bytes(path.name.encode())
    router = Router(files[0], {"A": Member(files[1]), "B": Member(files[2])})
    before = policy_fingerprint(router)
    assert before is not None and policy_fingerprint(Member(files[1])) != before
    files[2].write_bytes(b"retrained")
    assert policy_fingerprint(router) != before, "a routed policy's checkpoint counts"
    assert policy_fingerprint(Member(None)) is None and policy_fingerprint(Member(tmp_path / "gone.pt")) is None
    assert policy_fingerprint(object()) is None


def test_policy_fingerprint_counts_a_checkpoint_by_its_weights(tmp_path):
    import torch

    from roboscape_r.checkpoint import save_checkpoint
    from roboscape_r.policy.network import PolicyConfig

    config = {"trainer": "bc", "policy": PolicyConfig().to_dict()}
    weights = {"w": torch.arange(6.0).reshape(2, 3)}
    save_checkpoint(tmp_path / "a.pt", kind="policy", config=config, model_state=weights, step=1,
                    optimizer_state={"state": {}, "param_groups": [{"lr": 1e-3}]})
    save_checkpoint(tmp_path / "b.pt", kind="policy", config=config, model_state=dict(weights), step=1,
                    extra={"restored_from": "policy.slim.pt"})  # no optimizer, other bytes
    assert (tmp_path / "a.pt").read_bytes() != (tmp_path / "b.pt").read_bytes()
    assert policy_fingerprint(Member(tmp_path / "a.pt")) == policy_fingerprint(Member(tmp_path / "b.pt"))
    save_checkpoint(tmp_path / "c.pt", kind="policy", config=config, model_state={"w": weights["w"] + 1e-6}, step=1)
    assert policy_fingerprint(Member(tmp_path / "c.pt")) != policy_fingerprint(Member(tmp_path / "a.pt"))


def test_journal_key_ignores_how_episodes_are_spread():
    config = {"policy": "x/train", "out": "o", "workers": 2, "envs_per_worker": 4, "seed": 0, "episodes": 5}
    other = {**config, "policy": "y/train", "out": "p", "workers": 1, "envs_per_worker": 1}
    assert journal_key(config, "d") == journal_key(other, "d")
    assert journal_key(config, "d") != journal_key({**config, "episodes": 6}, "d")
    assert journal_key(config, "d") != journal_key(config, "e")
