"""scripts/snapshot_run.py: the small files of a run folder, enough for `roboscape report`."""

import importlib.util
import json
from pathlib import Path

from roboscape_r.report import build_report
from roboscape_r.report.build import ReportConfig
from tests.report.fake_run import real_ppo_template, write_fake_run

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "snapshot_run.py"


def load_script():
    spec = importlib.util.spec_from_file_location("snapshot_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_snapshot_holds_the_results_but_no_checkpoints_and_rebuilds_the_report(tmp_path):
    run = write_fake_run(tmp_path / "run", real_ppo_template(tmp_path / "ppo")[0])
    (run / "cells" / "general" / "seed0" / "train" / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run / "cells" / "general" / "seed0" / "train" / "checkpoints" / "ckpt_00000001.pt").write_bytes(b"x" * 1000)
    for stage in ("reward_check", "wm_eval"):  # what made a final stage's output: a resumed run keeps it
        (run / stage / "stage.json").write_text('{"checkpoint_digests": {}}')
    (run / "reward_check" / "goal_embeddings.json").write_text("[]")  # a by-product the report does not read
    copied = load_script().snapshot(run, tmp_path / "snap")
    names = {p.relative_to(tmp_path / "snap").as_posix() for p in copied}
    assert {"reward_check/reward_check.json", "reward_check/reward_check.png", "reward_check/stage.json",
            "wm_eval/metrics.json", "wm_eval/stage.json"} <= names
    assert "reward_check/goal_embeddings.json" not in names
    assert "experiment.json" in names and "cells/general/seed0/eval/results.json" in names
    assert not any(name.endswith((".pt", ".mp4", ".gif")) for name in names)  # the cell is done: no checkpoint
    for name in names:  # byte-for-byte copies
        assert (tmp_path / "snap" / name).read_bytes() == (run / name).read_bytes()
    from roboscape_r.report.run_folder import load_run
    from roboscape_r.report.strips import choose_strips

    for split in ("in-domain", "ood"):  # the strips the report shows, and only those, are kept
        chosen = [(e.method, e.seed, e.path.name) for e in choose_strips(load_run(run), split)]
        assert chosen and chosen == [(e.method, e.seed, e.path.name) for e in choose_strips(load_run(tmp_path / "snap"), split)]
    assert len([n for n in names if n.endswith("_strip.png")]) < len(list(run.glob("cells/*/*/eval/videos/*_strip.png")))
    result = build_report(ReportConfig(tmp_path / "snap", out=tmp_path / "report"))
    original = build_report(ReportConfig(run, out=tmp_path / "report_original"))
    def sections(path):
        wanted = ("Success rates in ManiSkill", "Per OOD factor", "Relative OOD improvement")
        return [section for section in path.read_text().split("## ") if section.startswith(wanted)]

    assert len(sections(original.markdown)) == 3
    assert sections(result.markdown) == sections(original.markdown)
    assert json.loads((tmp_path / "snap" / "experiment.json").read_text())["methods"]


def test_a_snapshot_mirrors_the_run_when_a_cell_is_moved_aside(tmp_path):
    run = write_fake_run(tmp_path / "run", real_ppo_template(tmp_path / "ppo")[0])
    module = load_script()
    module.snapshot(run, tmp_path / "snap")
    (tmp_path / "snap" / "README.md").write_text("notes")
    assert (tmp_path / "snap" / "cells" / "general" / "seed0" / "cell.json").is_file()
    (run / "cells" / "general" / "seed0").rename(tmp_path / "general-seed0-aside")
    module.snapshot(run, tmp_path / "snap")
    assert not (tmp_path / "snap" / "cells" / "general" / "seed0").exists()
    assert (tmp_path / "snap" / "README.md").read_text() == "notes"
    assert (tmp_path / "snap" / "cells" / "bc").is_dir()


def test_an_unfinished_cell_keeps_what_it_resumes_from_until_it_is_done(tmp_path):
    run = write_fake_run(tmp_path / "run", real_ppo_template(tmp_path / "ppo")[0])
    cell = run / "cells" / "general" / "seed0"
    status = json.loads((cell / "cell.json").read_text())
    (cell / "cell.json").write_text(json.dumps({**status, "status": "trained"}))
    (cell / "train" / "checkpoints").mkdir(parents=True, exist_ok=True)
    (cell / "train" / "checkpoints" / "ckpt_00000008.pt").write_bytes(b"x" * 100)
    (cell / "train" / "policy.slim.pt").write_bytes(b"slim")
    (cell / "eval" / "episodes.journal.jsonl").write_text("{}\n")
    bc_slim = run / "cells" / "bc" / "seed0" / "train" / "policy.slim.pt"
    bc_slim.parent.mkdir(parents=True, exist_ok=True)
    bc_slim.write_bytes(b"bc")
    module = load_script()
    names = {p.relative_to(tmp_path / "snap").as_posix() for p in module.snapshot(run, tmp_path / "snap")}
    prefix = "cells/general/seed0/"
    assert {prefix + "train/policy.slim.pt", prefix + "eval/episodes.journal.jsonl",
            "cells/bc/seed0/train/policy.slim.pt"} <= names
    assert not any(name.endswith("ckpt_00000008.pt") for name in names)  # full checkpoints never
    (cell / "cell.json").write_text(json.dumps({**status, "status": "done"}))
    module.snapshot(run, tmp_path / "snap")
    assert not (tmp_path / "snap" / prefix / "train" / "policy.slim.pt").exists()
    assert not (tmp_path / "snap" / prefix / "eval" / "episodes.journal.jsonl").exists()
    assert (tmp_path / "snap" / prefix / "eval" / "results.json").is_file()
    assert (tmp_path / "snap" / "cells" / "bc" / "seed0" / "train" / "policy.slim.pt").is_file()  # later PPO cells start from it
