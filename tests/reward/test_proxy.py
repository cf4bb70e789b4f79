import dataclasses

import numpy as np
import pytest
import torch

from roboscape_r.checkpoint import CheckpointError, save_checkpoint
from roboscape_r.data.format import iter_episode_meta, read_episode, read_manifest
from roboscape_r.reward.base import EpisodeContext, make_reward, reward_names
from roboscape_r.reward.proxy import ProxyReward, ProxyRewardConfig, ProxyRewardNet, load_proxy_reward
from roboscape_r.reward.proxy_train import ProxyTrainConfig, train_proxy_reward

from tests.reward.conftest import SIZE, square_episode, write_square_dataset

TINY_MODEL = ProxyRewardConfig(image_size=SIZE, channels=(8, 16), hidden=32, task_dim=4, norm_groups=4)


def tiny_train_config(**overrides) -> ProxyTrainConfig:
    values = dict(model=TINY_MODEL, steps=300, batch_size=32, lr=3e-3, warmup_steps=10, log_every=25,
                  eval_every=150, ckpt_every=1000, val_fraction=0.25, augment_prob=0.0, device="cpu",
                  progress=False)
    values.update(overrides)
    return ProxyTrainConfig(**values)


@pytest.fixture(scope="module")
def trained(train_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("proxy_run")
    return out, train_proxy_reward(train_dataset, out, tiny_train_config())


def test_training_loss_falls_and_the_reward_tracks_the_target_on_held_out_episodes(trained, train_dataset):
    out, result = trained
    assert result.finished and result.step == 300 and result.checkpoint_path.name == "ckpt_00000300.pt"
    assert result.metrics["eval/reward_corr"] > 0.9  # validation episodes are whole held-out episodes
    assert result.metrics["eval/reward_mse"] < 0.02
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    mse = [e.value for e in events.Scalars("losses/reward_mse")]
    assert mse[-1] < 0.25 * mse[0]
    assert "eval/reward_corr" in events.Tags()["scalars"]

    # The reward interface gives the same numbers as the network, on frame t+1 of an episode.
    reward = make_reward("proxy", checkpoint=out)
    manifest = read_manifest(train_dataset)
    shard, meta = next(iter_episode_meta(manifest))
    episode = read_episode(train_dataset / shard, meta["episode_index"])
    frames = torch.from_numpy(episode["frames"])
    reward.reset(EpisodeContext(frames[:1].expand(len(frames) - 1, -1, -1, -1), [meta["task"]] * (len(frames) - 1),
                                ["x"] * (len(frames) - 1)))
    values = reward(frames[1:], torch.zeros(len(frames) - 1)).numpy()
    assert np.corrcoef(values, episode["rewards"])[0, 1] > 0.9
    assert reward.describe()["step"] == 300 and "proxy" in reward_names()


def test_success_weight_adds_the_success_probability(trained):
    out, _ = trained
    plain = make_reward("proxy", checkpoint=out)
    weighted = make_reward("proxy", checkpoint=out, success_weight=2.0)
    frames = torch.from_numpy(square_episode(3, 6)["frames"])
    context = EpisodeContext(frames[:2], ["PickCube", "PushCube"], ["a", "b"])
    plain.reset(context)
    weighted.reset(context)
    probability = torch.sigmoid(plain.predict(frames[4:6]).success_logit)
    assert torch.allclose(weighted(frames[4:6], torch.zeros(2)), plain(frames[4:6], torch.zeros(2)) + 2 * probability,
                          atol=1e-6)


def test_resume_in_two_calls_gives_the_same_weights(train_dataset, tmp_path):
    config = tiny_train_config(steps=12, log_every=4, eval_every=6, augment_prob=0.5)
    whole = train_proxy_reward(train_dataset, tmp_path / "whole", config)
    first = train_proxy_reward(train_dataset, tmp_path / "split", dataclasses.replace(config, run_steps=5))
    assert not first.finished and first.step == 5
    second = train_proxy_reward(train_dataset, tmp_path / "split", config)
    assert second.finished and second.step == 12
    net_whole, _ = load_proxy_reward(whole.checkpoint_path)
    net_split, _ = load_proxy_reward(second.checkpoint_path)
    for (name, a), (_, b) in zip(net_whole.state_dict().items(), net_split.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        train_proxy_reward(train_dataset, tmp_path / "whole", dataclasses.replace(config, resume=False))
    with pytest.raises(CheckpointError, match="different config"):
        train_proxy_reward(train_dataset, tmp_path / "whole", dataclasses.replace(config, steps=20, lr=1e-2))


def test_checkpoint_errors(tmp_path):
    with pytest.raises(ValueError, match="checkpoint=PATH"):
        make_reward("proxy")
    with pytest.raises(CheckpointError, match="does not exist"):
        make_reward("proxy", checkpoint=tmp_path / "nope.pt")
    other = save_checkpoint(tmp_path / "tok.pt", kind="tokenizer", config={}, model_state={}, step=0)
    with pytest.raises(CheckpointError, match="'tokenizer' model but a 'proxy_reward' was expected"):
        make_reward("proxy", checkpoint=other)
    net = ProxyRewardNet(TINY_MODEL)
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("head")}
    broken = save_checkpoint(tmp_path / "broken.pt", kind="proxy_reward", config={"model": dataclasses.asdict(TINY_MODEL)},
                             model_state=state, step=0)
    with pytest.raises(CheckpointError, match="retrain"):
        load_proxy_reward(broken)


def test_bad_input(train_dataset, tmp_path):
    reward = ProxyReward(ProxyRewardNet(TINY_MODEL).eval())
    frames = torch.from_numpy(square_episode(0, 4)["frames"])
    with pytest.raises(RuntimeError, match="reset"):
        reward(frames[:1], torch.zeros(1))
    with pytest.raises(ValueError, match=r"not \['OpenDrawer'\]"):
        reward.reset(EpisodeContext(frames[:1], ["OpenDrawer"], ["x"]))
    reward.reset(EpisodeContext(frames[:2], ["PickCube", "PushCube"], ["x", "y"]))
    with pytest.raises(ValueError, match="one per env"):
        reward(frames[:3], torch.zeros(3))
    with pytest.raises(ValueError, match="uint8 frames"):
        reward.net(torch.zeros(2, SIZE, SIZE, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        ProxyRewardConfig(image_size=20, channels=(8, 16, 32))
    only_pick = dataclasses.replace(TINY_MODEL, tasks=("PickCube",))
    with pytest.raises(ValueError, match="not in --train.model.tasks"):
        train_proxy_reward(train_dataset, tmp_path / "run", tiny_train_config(model=only_pick))
    wrong_size = dataclasses.replace(TINY_MODEL, image_size=32)
    with pytest.raises(ValueError, match="16x16 frames but the network takes 32x32"):
        train_proxy_reward(train_dataset, tmp_path / "run", tiny_train_config(model=wrong_size))
    empty = write_square_dataset(tmp_path / "empty", [])
    with pytest.raises(ValueError, match="holds no episodes"):
        train_proxy_reward(empty, tmp_path / "run", tiny_train_config())
    with pytest.raises(ValueError, match="val_fraction"):
        tiny_train_config(val_fraction=1.0)
