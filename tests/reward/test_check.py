import dataclasses
import json

import numpy as np
import pytest
import torch

from roboscape_r.checkpoint import CheckpointError, save_checkpoint
from roboscape_r.reward.base import WorldModelReward
from roboscape_r.reward.check import (
    CheckEpisode,
    RewardCheckConfig,
    average_ranks,
    choose_example,
    load_check_episodes,
    reward_metrics,
    rewards_along_episodes,
    run_reward_check,
    spearman,
)
from roboscape_r.reward.check_report import format_reward_check, min_max
from roboscape_r.reward.proxy import ProxyRewardConfig, ProxyRewardNet
from roboscape_r.worldmodel.world_model import WorldModel

from tests.reward.conftest import SIZE, save_tokenizer, tiny_tokenizer, write_square_dataset
from tests.worldmodel.conftest import tiny_config

HELDOUT_PLAN = [
    ("PushCube", "id-default-wood", True, 7), ("PushCube", "id-cyan-slate", False, 6),
    ("PickCube", "id-default-wood", True, 9), ("PickCube", "id-default-wood", False, 8),
    ("PushCube", "ood-color-purple", True, 8), ("PickCube", "ood-color-purple", True, 10),
    ("PickCube", "ood-color-purple", False, 7), ("PickCube", "ood-light-dim", True, 6),
    ("PushCube", "ood-light-dim", False, 9),
]


class FakeTextEncoder:
    dim = 8

    def encode(self, instructions):
        return torch.stack([torch.full((8,), float(len(text))) / 10 for text in instructions])


class MeanPixelReward(WorldModelReward):
    """Transparent reward: mean pixel value of the frame plus the done probability."""

    name = "mean-pixel"

    def reset(self, context):
        self.batch = context.first_frames.shape[0]

    def __call__(self, frames, done_prob):
        assert frames.shape[0] == self.batch
        return frames.float().mean(dim=(1, 2, 3)) + done_prob


# ------------------------------------------------------------------------------------- metrics


def test_spearman_against_hand_computed_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([4, 3, 2, 1], [1, 2, 3, 4]) == pytest.approx(-1.0)
    # ties: ranks [1, 2.5, 2.5, 4] vs [1, 2, 3, 4] -> 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / np.sqrt(22.5))
    assert spearman([1, 5, 2], [1, 2, 3]) == pytest.approx(0.5)  # ranks [1, 3, 2]: 1 - 6 * 2 / (3 * 8)
    assert spearman([2, 2, 2], [1, 2, 3]) is None
    assert np.array_equal(average_ranks(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1.0, 3.5, 2.0])
    with pytest.raises(ValueError, match="one length"):
        spearman([1, 2], [1, 2, 3])


def test_reward_metrics_against_hand_computed_values():
    rewards = [np.array([0.1, 0.5, 0.9]), np.array([0.8, 0.8, 0.8, 0.8]),  # successful
               np.array([0.6, 0.6]), np.array([0.1, 0.0, 0.2])]  # failed
    metrics = reward_metrics(rewards, [True, True, False, False])
    assert metrics["episodes"] == 4 and metrics["successful"] == 2 and metrics["failed"] == 2
    assert metrics["spearman_progress"] == pytest.approx(1.0)  # the constant episode is undefined
    assert metrics["spearman_undefined"] == 1
    # mean returns: successful 0.5, 0.8; failed 0.6, 0.1 -> 3 of 4 pairs ordered
    assert metrics["auroc_mean_return"] == pytest.approx(0.75)
    # sum returns: successful 1.5, 3.2; failed 1.2, 0.3 -> 4 of 4
    assert metrics["auroc_sum_return"] == pytest.approx(1.0)
    assert reward_metrics(rewards[:2], [True, True])["auroc_mean_return"] is None  # one class
    assert np.allclose(min_max(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    assert np.allclose(min_max(np.array([1.0, 1.0])), [0.5, 0.5])


def test_rewards_along_episodes_pads_batches_and_aligns_frames(train_dataset):
    episodes = load_check_episodes(train_dataset, max_episodes=None, seed=0)[:5]
    assert len({e.length for e in episodes}) > 1  # mixed lengths in one batch
    done = [np.linspace(0, 1, e.length, dtype=np.float32) for e in episodes]
    results = rewards_along_episodes(MeanPixelReward(), episodes, done, batch_size=3)
    for episode, values, probs in zip(episodes, results, done):
        expected = episode.frames[1:].float().mean(dim=(1, 2, 3)).numpy() + probs  # r_t is frame t
        assert values.shape == (episode.length,) and np.allclose(values, expected, atol=1e-4)


def test_choose_example_prefers_a_successful_ood_pickcube_episode():
    def episode(split, task, ok):
        return CheckEpisode(split, "scene", task, "x", torch.zeros(3, 4, 4, 3, dtype=torch.uint8),
                            torch.zeros(2, 7), np.zeros(2, np.float32), ok)

    episodes = [episode("in-domain", "PickCube", True), episode("ood/lighting", "PushCube", True),
                episode("ood/lighting", "PickCube", False), episode("ood/camera", "PickCube", True)]
    assert choose_example(episodes)["episode"] == 3
    assert choose_example(episodes[:3])["kind"] == "successful OOD"
    assert choose_example(episodes[2:3]) is None


# ---------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def models(tmp_path_factory, train_dataset):
    root = tmp_path_factory.mktemp("check_models")
    tokenizer = tiny_tokenizer()
    torch.manual_seed(1)
    wm_act = WorldModel(tiny_config("act", action_dim=7)).eval()
    wm_txt = WorldModel(tiny_config("txt", action_dim=7)).eval()
    proxy_config = ProxyRewardConfig(image_size=SIZE, channels=(8, 16), hidden=16, task_dim=4, norm_groups=4)

    def save_wm(path, model, kind):
        return save_checkpoint(path, kind=kind, config={"model": model.config.to_dict()},
                               model_state=model.state_dict(), step=0)

    return {
        "data": write_square_dataset(root / "heldout", HELDOUT_PLAN),
        "train_data": train_dataset,
        "tokenizer": save_tokenizer(root / "tok.pt", tokenizer),
        "wm_act": save_wm(root / "act.pt", wm_act, "wm_act"),
        "wm_txt": save_wm(root / "txt.pt", wm_txt, "wm_txt"),
        "proxy": save_checkpoint(root / "proxy.pt", kind="proxy_reward",
                                 config={"model": dataclasses.asdict(proxy_config)},
                                 model_state=ProxyRewardNet(proxy_config).state_dict(), step=0),
    }


def check_config(models, out, **overrides):
    values = dict(models, out=out, golden_max_steps=4, batch_size=4, device="cpu", progress=False)
    values.update(overrides)
    return RewardCheckConfig(**values)


def test_end_to_end_writes_json_figure_and_table(models, tmp_path):
    result = run_reward_check(check_config(models, tmp_path), text_encoder=FakeTextEncoder())
    saved = json.loads((tmp_path / "reward_check.json").read_text())
    assert saved == result
    assert (tmp_path / "reward_check.png").stat().st_size > 1000
    assert (tmp_path / "goal_embeddings.json").is_file()  # computed from --train-data once
    assert {name: entry["status"] for name, entry in result["rewards"].items()} == {
        "sim": "ok", "general": "ok", "embedding": "ok", "proxy": "ok"}
    assert result["rewards"]["general"]["describe"]["distance"] == "tokenizer-features-lpips"
    assert "teacher-forced" in result["notes"]["general_done"]
    splits = result["splits"]
    assert list(splits) == ["in-domain", "ood/object_color", "ood/lighting", "ood", "all"]
    assert splits["all"]["sim"]["episodes"] == len(HELDOUT_PLAN) and splits["ood"]["sim"]["episodes"] == 5
    # The stored dense reward rises along every successful episode and separates success perfectly.
    assert splits["all"]["sim"]["spearman_progress"] == pytest.approx(1.0)
    assert splits["all"]["sim"]["auroc_mean_return"] == pytest.approx(1.0)
    for name in ("general", "embedding", "proxy"):
        entry = splits["all"][name]
        assert entry["successful"] == 5 and entry["failed"] == 4
        assert entry["auroc_mean_return"] is None or 0.0 <= entry["auroc_mean_return"] <= 1.0
    assert result["example"]["kind"] == "successful OOD PickCube" and result["example"]["scene"] == "ood-color-purple"
    table = format_reward_check(result)
    assert "ood/object_color" in table and "embedding rho/auroc" in table
    # The general reward's terms add up to it, episode by episode, and are scored like rewards.
    terms = result["components"]["all"]
    assert set(terms) == {"general/alignment", "general/done"} and terms["general/done"]["successful"] == 5
    for row in result["episodes"]:
        terms_sum = row["mean_term"]["general/alignment"] + row["mean_term"]["general/done"]
        assert row["mean_reward"]["general"] == pytest.approx(terms_sum, abs=1e-5)
        assert 0.0 <= row["mean_term"]["general/done"] <= 1.0
    assert "general/alignment" in table


def test_missing_checkpoints_are_skipped_with_a_reason(models, tmp_path):
    config = check_config(models, tmp_path, wm_act=None, wm_txt=tmp_path / "no_txt.pt", proxy=None, max_episodes=2)
    result = run_reward_check(config, text_encoder=FakeTextEncoder())
    rewards = result["rewards"]
    assert rewards["general"] == {"status": "skipped",
                                  "reason": f"needs a tokenizer and WM_txt: --wm-txt {tmp_path / 'no_txt.pt'} does not exist"}
    assert rewards["proxy"] == {"status": "skipped", "reason": "not given (--proxy)"}
    assert rewards["embedding"]["status"] == "ok"
    assert set(result["splits"]["all"]) == {"sim", "embedding"}
    assert result["splits"]["in-domain"]["sim"]["episodes"] == 2  # --max-episodes per split
    assert "skipped proxy: not given (--proxy)" in format_reward_check(result)
    # Without WM_act the general reward runs with done probability 0, and says so.
    no_act = run_reward_check(check_config(models, tmp_path / "b", wm_act=None, max_episodes=1),
                              text_encoder=FakeTextEncoder())
    assert no_act["rewards"]["general"]["status"] == "ok" and "done probability 0" in no_act["notes"]["general_done"]
    no_tokenizer = run_reward_check(check_config(models, tmp_path / "c", tokenizer=None, max_episodes=1))
    assert no_tokenizer["rewards"]["embedding"]["reason"] == "needs a tokenizer: not given (--tokenizer)"


def test_error_paths(models, tmp_path):
    with pytest.raises(CheckpointError, match="--proxy: .*'wm_act' model but a 'proxy_reward' was expected"):
        run_reward_check(check_config(models, tmp_path, proxy=models["wm_act"], max_episodes=1),
                         text_encoder=FakeTextEncoder())
    with pytest.raises(CheckpointError, match="--wm-txt: .*'wm_act' model"):
        run_reward_check(check_config(models, tmp_path, wm_txt=models["wm_act"], max_episodes=1),
                         text_encoder=FakeTextEncoder())
    empty = write_square_dataset(tmp_path / "empty", [])
    with pytest.raises(ValueError, match="holds no episodes"):
        run_reward_check(check_config(models, tmp_path, data=empty))
    with pytest.raises(ValueError, match="--max-episodes"):
        RewardCheckConfig(max_episodes=0)
    from roboscape_r.data.format import DatasetError

    with pytest.raises(DatasetError, match="not a roboscape dataset"):
        run_reward_check(check_config(models, tmp_path, data=tmp_path / "nothing"))


def test_a_stopped_check_resumes_from_its_journals_and_matches_a_straight_run(models, tmp_path, monkeypatch):
    from roboscape_r.journal import Journal
    from roboscape_r.worldmodel.rollout import WorldModelRollout

    golden_calls = []
    generate = WorldModelRollout.generate_golden

    def counting_generate(self, *args, **kwargs):
        golden_calls.append(kwargs.get("seed"))
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(WorldModelRollout, "generate_golden", counting_generate)
    sampled = dict(temperature=1.0)  # sampled golden frames: each batch's must not depend on the ones before
    straight = run_reward_check(check_config(models, tmp_path / "straight", **sampled), text_encoder=FakeTextEncoder())
    assert len(golden_calls) == 3  # 9 episodes in batches of 4
    assert not list((tmp_path / "straight").glob("*.journal.jsonl")), "journals are removed at the end"

    append = Journal.append
    appended = []

    def append_then_stop(self, entry):
        append(self, entry)
        appended.append(entry)
        if len(appended) == 2:  # the general reward's second batch is journaled, then the machine goes away
            raise KeyboardInterrupt

    monkeypatch.setattr(Journal, "append", append_then_stop)
    out = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        run_reward_check(check_config(models, out, **sampled), text_encoder=FakeTextEncoder())
    assert (out / "general.journal.jsonl").is_file() and not (out / "reward_check.json").exists()
    monkeypatch.setattr(Journal, "append", append)

    golden_calls.clear()
    resumed = run_reward_check(check_config(models, out, **sampled), text_encoder=FakeTextEncoder())
    assert len(golden_calls) == 1, "only the batch that was not journaled is generated again"
    for key in ("splits", "components", "episodes", "example", "rewards"):  # the same but for the output folder
        assert json.dumps(resumed[key]).replace(str(out), "OUT") == \
            json.dumps(straight[key]).replace(str(tmp_path / "straight"), "OUT"), key
    assert not (out / "general.journal.jsonl").exists()


def test_a_journal_of_other_settings_is_set_aside(models, tmp_path, monkeypatch):
    from roboscape_r.journal import Journal

    append = Journal.append

    def append_then_stop(self, entry):
        append(self, entry)
        raise KeyboardInterrupt

    monkeypatch.setattr(Journal, "append", append_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_reward_check(check_config(models, tmp_path), text_encoder=FakeTextEncoder())
    monkeypatch.setattr(Journal, "append", append)
    other = run_reward_check(check_config(models, tmp_path, general_alignment="gain"), text_encoder=FakeTextEncoder())
    assert (tmp_path / "general.journal.jsonl.stale").is_file()
    fresh = run_reward_check(check_config(models, tmp_path / "fresh", general_alignment="gain"),
                             text_encoder=FakeTextEncoder())
    assert other["episodes"] == fresh["episodes"], "nothing of the other settings' journal was used"


def test_cli(models, tmp_path, capsys):
    from roboscape_r.cli import main

    out = tmp_path / "cli"
    with pytest.raises(SystemExit) as exit_info:
        main(["reward-check", "--data", str(models["data"]), "--tokenizer", str(models["tokenizer"]),
              "--proxy", str(models["proxy"]), "--train-data", str(models["train_data"]), "--out", str(out),
              "--max-episodes", "2", "--device", "cpu", "--no-progress"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "proxy rho/auroc" in printed and "skipped general" in printed and "reward_check.json" in printed
    assert (out / "reward_check.json").is_file() and (out / "reward_check.png").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main(["reward-check", "--data", str(tmp_path / "nothing"), "--out", str(out), "--no-progress"])
    assert exit_info.value.code == 2
    assert "not a roboscape dataset" in capsys.readouterr().err
