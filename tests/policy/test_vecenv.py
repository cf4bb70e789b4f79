"""The PPO/vector-env boundary (roboscape_r/policy/vecenv.py): both final-observation forms, masks, errors."""

import numpy as np
import pytest
import torch

from roboscape_r.policy.vecenv import final_observations, info_mask, obs_to_tensors, step_array, step_success

CPU = torch.device("cpu")


def obs(n, size=4, dim=3, fill=0):
    return {"rgb": np.full((n, size, size, 3), fill, np.uint8), "instruction": np.full((n, dim), fill, np.float32)}


def test_obs_to_tensors_accepts_numpy_and_torch():
    frames, instructions = obs_to_tensors(obs(2), 2, 4, 3, CPU)
    assert frames.dtype == torch.uint8 and frames.shape == (2, 4, 4, 3)
    assert instructions.dtype == torch.float32 and instructions.shape == (2, 3)
    torch_obs = {key: torch.as_tensor(value) for key, value in obs(2).items()}
    assert obs_to_tensors(torch_obs, 2, 4, 3, CPU)[0].shape == (2, 4, 4, 3)


@pytest.mark.parametrize("bad, match", [
    ({"rgb": np.zeros((2, 4, 4, 3), np.uint8)}, "'rgb' and 'instruction'"),
    ({"rgb": np.zeros((2, 4, 4, 3), np.float32), "instruction": np.zeros((2, 3), np.float32)}, "uint8"),
    ({"rgb": np.zeros((2, 8, 8, 3), np.uint8), "instruction": np.zeros((2, 3), np.float32)}, "PolicyConfig.image_size"),
    ({"rgb": np.zeros((2, 4, 4, 3), np.uint8), "instruction": np.zeros((2, 5), np.float32)}, "instruction_dim"),
])
def test_bad_observations_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        obs_to_tensors(bad, 2, 4, 3, CPU)


def test_step_array_and_info_mask():
    assert step_array(np.array([[1.0], [2.0]]), 2, "reward", CPU, torch.float32).tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match=r"reward must have shape \(3,\)"):
        step_array(np.zeros(2), 3, "reward", CPU, torch.float32)
    assert info_mask({}, "valid", 3, True, CPU).tolist() == [True, True, True]
    assert info_mask({"valid": np.array([True, False])}, "valid", 2, True, CPU).tolist() == [True, False]


def test_final_observations_batched_form():
    final = obs(3)
    final["rgb"][1] = 7
    got = final_observations({"final_observation": final}, torch.tensor([1]), 4, 3, CPU)
    assert got is not None and got[0].shape == (1, 4, 4, 3) and int(got[0].max()) == 7


def test_final_observations_gymnasium_form():
    entries = np.empty(3, dtype=object)
    entries[2] = {key: value[0] for key, value in obs(1, fill=5).items()}
    got = final_observations({"final_observation": entries}, torch.tensor([2]), 4, 3, CPU)
    assert got is not None and int(got[0].min()) == 5 and got[1].shape == (1, 3)
    # An env asked for but without an entry: no final observation at all.
    assert final_observations({"final_observation": entries}, torch.tensor([0, 2]), 4, 3, CPU) is None
    assert final_observations({}, torch.tensor([0]), 4, 3, CPU) is None


def test_step_success_reads_final_info_only_for_finished_envs():
    finished = torch.tensor([True, False, True])
    # gymnasium: info["success"] of a finished env already describes the new episode.
    infos = np.empty(3, dtype=object)
    infos[0], infos[2] = {"success": True}, {"success": False}
    info = {"success": np.array([False, True, False]), "final_info": infos}
    assert step_success(info, finished).tolist() == [True, True, False]
    # batched: final_info rows of unfinished envs are ignored.
    info = {"success": np.array([False, False, False]), "final_info": {"success": np.array([True, True, True])}}
    assert step_success(info, finished).tolist() == [True, False, True]
    assert step_success({}, finished).tolist() == [False, False, False]
