import pytest
import torch

from roboscape_r.data.dataset import ClipDataset, FrameDataset


def test_clips_shapes_and_content(fake_dataset):
    clips = ClipDataset(fake_dataset, clip_len=5, split="all")
    assert clips.skipped_episodes == 1  # the 4-step episode is shorter than the clip
    item = clips[0]
    assert item["frames"].shape == (5, 16, 16, 3) and item["frames"].dtype == torch.uint8
    assert item["actions"].shape == (5, 7) and item["actions"].dtype == torch.float32
    assert item["done"].shape == (5,) and item["done"].dtype == torch.bool
    # frames[..., 1] holds the step index and actions hold it too: they line up.
    for k in range(len(clips)):
        item = clips[k]
        steps = item["frames"][:, 0, 0, 1].long()
        assert torch.equal(steps, item["actions"][:, 0].long() % 1000)
        assert torch.all(steps[1:] - steps[:-1] == 1)
    assert {clips[k]["task"] for k in range(len(clips))} == {"PickCube", "PushCube"}
    assert isinstance(item["instruction"], str) and item["instruction"]


def test_split_is_by_episode_and_deterministic(fake_dataset):
    train = ClipDataset(fake_dataset, clip_len=3, split="train", val_fraction=0.25, seed=1)
    val = ClipDataset(fake_dataset, clip_len=3, split="val", val_fraction=0.25, seed=1)
    train_eps = {m["episode_index"] for m in train.episodes}
    val_eps = {m["episode_index"] for m in val.episodes}
    assert train_eps.isdisjoint(val_eps) and len(train_eps | val_eps) == 8 and len(val_eps) == 2
    again = ClipDataset(fake_dataset, clip_len=3, split="val", val_fraction=0.25, seed=1)
    assert {m["episode_index"] for m in again.episodes} == val_eps


def test_random_access_with_dataloader_workers(fake_dataset):
    clips = ClipDataset(fake_dataset, clip_len=4, split="all", stride=2)
    loader = torch.utils.data.DataLoader(clips, batch_size=4, shuffle=True, num_workers=2,
                                         generator=torch.Generator().manual_seed(0))
    batches = list(loader)
    assert sum(b["frames"].shape[0] for b in batches) == len(clips)


def test_frames_dataset(fake_dataset):
    frames = FrameDataset(fake_dataset, split="all")
    assert len(frames) == sum(n + 1 for n in [12, 9, 15, 4, 10, 11, 8, 13])
    assert frames[0].shape == (16, 16, 3) and frames[0].dtype == torch.uint8


def test_bad_arguments(fake_dataset):
    with pytest.raises(ValueError, match="unknown split"):
        ClipDataset(fake_dataset, split="test")
    with pytest.raises(ValueError, match="StackCube"):
        ClipDataset(fake_dataset, tasks=["StackCube"])
