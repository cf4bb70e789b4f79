"""The shared JSON-lines journal (its uses are tested in tests/eval/test_journal.py and tests/reward/test_check.py)."""

from roboscape_r.journal import Journal


def test_entries_survive_a_reopen_and_a_torn_line(tmp_path):
    path = tmp_path / "job.journal.jsonl"
    journal = Journal(path, "fmt-v1", {"seed": 0})
    assert journal.read() == []
    journal.append({"piece": 1})
    journal.append({"piece": 2})
    journal.close()
    path.write_text(path.read_text() + '{"piece": 3, "val')  # a crash mid-write
    again = Journal(path, "fmt-v1", {"seed": 0})
    assert again.read() == [{"piece": 1}, {"piece": 2}] and again.stale is None
    again.append({"piece": 3})
    again.close()
    assert Journal(path, "fmt-v1", {"seed": 0}).read() == [{"piece": 1}, {"piece": 2}, {"piece": 3}]
    again.finish()
    assert not path.exists()


def test_another_jobs_journal_is_moved_aside(tmp_path):
    path = tmp_path / "job.journal.jsonl"
    Journal(path, "fmt-v1", {"seed": 0}).append({"piece": 1})
    for other in (Journal(path, "fmt-v2", {"seed": 0}), Journal(path, "fmt-v1", {"seed": 1})):
        assert other.read() == [] and other.stale == path.with_name(path.name + ".stale")
        assert not path.exists()
        Journal(path, "fmt-v1", {"seed": 0}).append({"piece": 1})
    unkeyed = Journal(path, "fmt-v1", None)  # a job a later run cannot recognise keeps no journal
    assert unkeyed.read() == [] and unkeyed.stale is not None
    unkeyed.append({"piece": 1})
    assert not path.exists()
