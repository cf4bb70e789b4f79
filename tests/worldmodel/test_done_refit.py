import dataclasses
import json

import numpy as np
import pytest
import torch

from roboscape_r.checkpoint import CheckpointError, save_checkpoint
from roboscape_r.data.dataset import split_episodes
from roboscape_r.data.format import DatasetError, iter_episode_meta, read_manifest
from roboscape_r.worldmodel.data import tokenized_episodes
from roboscape_r.worldmodel.done_refit import RefitDoneConfig, fit_done_head, run_refit_done
from roboscape_r.worldmodel.evaluate import teacher_forced_done_probs
from roboscape_r.worldmodel.frame_metrics import auroc
from roboscape_r.worldmodel.train import load_world_model
from roboscape_r.worldmodel.world_model import WorldModel

from tests.worldmodel.conftest import tiny_config
from tests.worldmodel.test_evaluate import save_model, tiny_tokenizer, write_dataset


def _features(n, seed, d=32):
    """Labels that depend on the first feature only, plus noise features."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] + 0.1 * torch.randn(n, generator=g) > 0.5).float()
    return x, y


def test_fit_done_head_learns_a_separable_label_and_returns_its_best_validation_point():
    template = WorldModel(tiny_config("act")).done_head
    train, val = _features(1000, 0), _features(300, 1)
    best = fit_done_head(template, train, val, weight_decay=1e-2, steps=200, eval_every=20, lr=3e-3, seed=0)
    assert best.val_auroc > 0.9
    assert best.val_auroc == max(p["val_auroc"] for p in best.curve)
    assert [p["step"] for p in best.curve] == list(range(20, 201, 20))
    head = WorldModel(tiny_config("act")).done_head
    head.load_state_dict(best.state)
    with torch.no_grad():
        assert auroc(head(val[0]).squeeze(-1).numpy(), val[1].numpy() > 0.5) == pytest.approx(best.val_auroc)
    # the template is copied, never trained in place
    assert not torch.equal(template[0].weight, head[0].weight)


def test_fit_done_head_needs_both_classes_and_finite_features():
    template = WorldModel(tiny_config("act")).done_head
    x, _ = _features(50, 0)
    with pytest.raises(ValueError, match="validation episodes have only failed steps"):
        fit_done_head(template, _features(50, 1), (x, torch.zeros(50)), weight_decay=0.0, steps=2, eval_every=1,
                      lr=1e-3, seed=0)
    bad = x.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError, match="train features hold NaN"):
        fit_done_head(template, (bad, (x[:, 0] > 0).float()), _features(50, 1), weight_decay=0.0, steps=2,
                      eval_every=1, lr=1e-3, seed=0)


@pytest.fixture(scope="module")
def refit_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("refit")
    tokenizer = tiny_tokenizer()
    torch.manual_seed(1)
    wm_act = WorldModel(tiny_config("act", action_dim=7)).eval()
    # five scenes x three episodes, the first of each scene successful at its last steps
    data = write_dataset(root / "data", [6, 9, 7])
    paths = {"data": data, "wm_act": save_model(root / "act.pt", wm_act, "wm_act"),
             "tokenizer": save_checkpoint(root / "tok.pt", kind="tokenizer", config=dataclasses.asdict(tokenizer.config),
                                          model_state=tokenizer.state_dict(), step=0)}
    return root, paths, tokenizer


def _split_seed_with_both_classes(data):
    """A split seed whose validation episodes hold a success and a failure (write_dataset's first
    episode of each scene is the successful one)."""
    metas = [dict(m, shard=s) for s, m in iter_episode_meta(read_manifest(data))]
    for seed in range(100):
        val = split_episodes(metas, "val", 0.4, seed)
        if {m["episode_index"] % 3 == 0 for m in val} == {True, False}:
            return seed
    raise AssertionError("no split seed puts both kinds of episodes in validation")


def test_refit_done_changes_only_the_done_head_and_reports_what_the_saved_model_scores(refit_setup):
    root, paths, tokenizer = refit_setup
    split_seed = _split_seed_with_both_classes(paths["data"])
    config = RefitDoneConfig(wm_act=paths["wm_act"], tokenizer=paths["tokenizer"], data=paths["data"], val_data=None,
                             out=root / "out", val_fraction=0.4, split_seed=split_seed, weight_decays=(0.0, 0.1), steps=60,
                             eval_every=20, lr=1e-2, progress=False)
    report = run_refit_done(config)
    before, after = load_world_model(paths["wm_act"], "act"), load_world_model(root / "out" / "wm_act.pt", "act")
    changed = {k for k, v in after.state_dict().items() if not torch.equal(v, before.state_dict()[k])}
    assert changed and all(k.startswith("done_head.") for k in changed)
    assert [c["weight_decay"] for c in report["candidates"]] == [0.0, 0.1]
    assert report["chosen"]["val_auroc"] == max(c["val_auroc"] for c in report["candidates"])
    assert json.loads((root / "out" / "refit_done.json").read_text())["chosen"] == report["chosen"]
    # the saved model's teacher-forced done probabilities on the validation episodes give the chosen AUROC
    val = tokenized_episodes(paths["data"], tokenizer, paths["tokenizer"], root / "out" / "token_cache", split="val",
                             val_fraction=0.4, seed=split_seed)
    probs = teacher_forced_done_probs(after, [e["tokens"].long() for e in val], [e["actions"].float() for e in val])
    labels = np.concatenate([e["success"].numpy() for e in val])
    assert auroc(np.concatenate(probs), labels) == pytest.approx(report["chosen"]["val_auroc"], abs=1e-6)


def test_refit_done_rejects_a_world_model_of_the_wrong_kind_and_bad_options(refit_setup):
    root, paths, _ = refit_setup
    wm_txt = save_model(root / "txt.pt", WorldModel(tiny_config("txt", action_dim=7)), "wm_txt")
    with pytest.raises(CheckpointError, match="wm_act"):
        run_refit_done(RefitDoneConfig(wm_act=wm_txt, tokenizer=paths["tokenizer"], data=paths["data"],
                                       out=root / "bad", progress=False))
    with pytest.raises(DatasetError, match="missing"):
        run_refit_done(RefitDoneConfig(wm_act=paths["wm_act"], tokenizer=paths["tokenizer"], data=paths["data"],
                                       val_data=root / "missing", out=root / "bad", progress=False))
    assert not (root / "bad" / "token_cache").exists()  # refused before tokenising anything
    with pytest.raises(ValueError, match="--weight-decays"):
        RefitDoneConfig(weight_decays=())
    with pytest.raises(ValueError, match="--val-fraction"):
        RefitDoneConfig(val_fraction=0.0)


def test_refit_done_with_a_validation_dataset_fits_on_all_of_data_and_chooses_on_all_of_val_data(refit_setup, tmp_path):
    root, paths, _ = refit_setup
    val_data = write_dataset(tmp_path / "val", [5, 8])  # another collection: 5 scenes x 2 episodes
    config = RefitDoneConfig(wm_act=paths["wm_act"], tokenizer=paths["tokenizer"], data=paths["data"], val_data=val_data,
                             out=tmp_path / "out", weight_decays=(0.1,), steps=20, eval_every=10, progress=False)
    report = run_refit_done(config)
    assert report["episodes"] == {"train": 15, "val": 10}
    assert report["steps"]["val"] == 5 * (5 + 8)


def test_a_rerun_reuses_the_saved_features_and_gives_the_same_head(refit_setup, monkeypatch):
    import roboscape_r.worldmodel.done_refit as done_refit

    root, paths, _ = refit_setup
    config = RefitDoneConfig(wm_act=paths["wm_act"], tokenizer=paths["tokenizer"], data=paths["data"], val_data=None,
                             out=root / "rerun", val_fraction=0.4, split_seed=_split_seed_with_both_classes(paths["data"]),
                             weight_decays=(0.1,), steps=40, eval_every=20, lr=1e-2, progress=False)
    first = run_refit_done(config)
    assert (root / "rerun" / "features.pt").is_file()
    passes = []
    real = done_refit._episode_features
    monkeypatch.setattr(done_refit, "_episode_features", lambda *a, **k: passes.append(1) or real(*a, **k))
    second = run_refit_done(config)
    assert passes == [] and second["chosen"] == first["chosen"]
    (root / "rerun" / "features.pt").write_bytes(b"truncated")  # an unreadable cache is recomputed
    assert run_refit_done(config)["chosen"] == first["chosen"] and len(passes) == 2
    other = dataclasses.replace(config, split_seed=config.split_seed + 1)  # other episodes: not the cached features
    run_refit_done(other)
    assert len(passes) == 4


def test_without_progress_tokenising_prints_no_bar(refit_setup, tmp_path, capsys):
    root, paths, tokenizer = refit_setup
    for progress, printed in ((False, False), (True, True)):
        tokenized_episodes(paths["data"], tokenizer, paths["tokenizer"], tmp_path / f"cache_{progress}", split="val",
                           val_fraction=0.4, progress=progress)
        assert ("tokenise val" in capsys.readouterr().err) == printed
