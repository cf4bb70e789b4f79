"""GAE (roboscape_r/policy/gae.py) against hand computations and a plain per-env reference loop."""

import math

import pytest
import torch

from roboscape_r.policy.gae import compute_gae

nan = math.nan


def test_hand_computation_with_termination_truncation_and_padding():
    # gamma = lambda = 0.5, so each step back multiplies by 0.5 (bootstrap) and 0.25 (GAE carry).
    # env 0: terminates after t=1; t=3 bootstraps from next_value 10.
    # env 1: truncated after t=1 (final value 4), padding at t=2 (garbage NaN), new episode at t=3.
    rewards = torch.tensor([[1.0, 1.0], [2.0, 1.0], [3.0, nan], [4.0, 2.0]])
    values = torch.tensor([[0.5, 1.0], [1.0, 2.0], [1.5, nan], [2.0, 3.0]])
    terminated = torch.tensor([[False, False], [True, False], [False, False], [False, False]])
    truncated = torch.tensor([[False, False], [False, True], [False, False], [False, False]])
    valid = torch.tensor([[True, True], [True, True], [True, False], [True, True]])
    final_values = torch.tensor([[nan, nan], [nan, 4.0], [nan, nan], [nan, nan]])
    next_value = torch.tensor([10.0, 6.0])
    adv, ret = compute_gae(rewards, values, next_value, terminated, truncated, final_values=final_values,
                           valid=valid, gamma=0.5, gae_lambda=0.5)
    # env 0: d3 = 4 + .5*10 - 2 = 7; d2 = 3 + .5*2 - 1.5 = 2.5 -> A2 = 2.5 + .25*7 = 4.25;
    #        d1 = 2 - 1 = 1 (terminal, no carry) -> A1 = 1; d0 = 1 + .5*1 - .5 = 1 -> A0 = 1 + .25*1 = 1.25
    # env 1: d1 = 1 + .5*4 - 2 = 1 (truncated: final value, no carry); d0 = 1 + .5*2 - 1 = 1 -> A0 = 1.25;
    #        t=2 padding: 0; d3 = 2 + .5*6 - 3 = 2 -> A3 = 2
    expected_adv = torch.tensor([[1.25, 1.25], [1.0, 1.0], [4.25, 0.0], [7.0, 2.0]])
    torch.testing.assert_close(adv, expected_adv)
    expected_ret = torch.tensor([[1.75, 2.25], [2.0, 3.0], [5.75, 0.0], [9.0, 5.0]])
    torch.testing.assert_close(ret, expected_ret)


def test_missing_final_values_bootstrap_truncations_with_zero():
    rewards = torch.tensor([[1.0], [1.0]])
    values = torch.tensor([[0.0], [0.0]])
    truncated = torch.tensor([[True], [False]])
    adv, _ = compute_gae(rewards, values, torch.tensor([8.0]), torch.zeros(2, 1, dtype=torch.bool), truncated,
                         gamma=0.5, gae_lambda=1.0)
    torch.testing.assert_close(adv, torch.tensor([[1.0], [5.0]]))  # row 0: cut, no bootstrap; row 1: 1 + .5*8


def test_terminated_and_truncated_counts_as_terminated():
    ones = torch.ones(1, 1, dtype=torch.bool)
    adv, _ = compute_gae(torch.tensor([[1.0]]), torch.tensor([[0.0]]), torch.tensor([5.0]), ones, ones,
                         final_values=torch.tensor([[100.0]]), gamma=0.9, gae_lambda=0.9)
    assert adv.item() == pytest.approx(1.0)


def test_gamma_lambda_one_gives_monte_carlo_returns():
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.3], [0.2], [0.1]])
    no = torch.zeros(3, 1, dtype=torch.bool)
    _, ret = compute_gae(rewards, values, torch.tensor([4.0]), no, no, gamma=1.0, gae_lambda=1.0)
    torch.testing.assert_close(ret, torch.tensor([[10.0], [9.0], [7.0]]))


def _reference_gae(rewards, values, next_value, terminated, truncated, final_values, valid, gamma, lam):
    """Per-env, per-step Python loop written directly from the formula in gae.py's docstring."""
    T, N = rewards.shape
    adv = torch.zeros(T, N, dtype=torch.float64)
    for n in range(N):
        last = 0.0
        for t in reversed(range(T)):
            if not valid[t, n]:
                last = 0.0
                continue
            term = bool(terminated[t, n])
            trunc = bool(truncated[t, n]) and not term
            if trunc:
                nv = float(final_values[t, n])
            elif t + 1 < T:
                nv = float(values[t + 1, n]) if valid[t + 1, n] else 0.0
            else:
                nv = float(next_value[n])
            delta = float(rewards[t, n]) + gamma * (0.0 if term else nv) - float(values[t, n])
            next_ok = t + 1 >= T or bool(valid[t + 1, n])
            carry = gamma * lam if not (term or trunc) and next_ok else 0.0
            last = delta + carry * last
            adv[t, n] = last
    return adv


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_loop_on_random_rollouts(seed):
    g = torch.Generator().manual_seed(seed)
    T, N = 13, 5
    rewards = torch.randn(T, N, generator=g)
    values = torch.randn(T, N, generator=g)
    final_values = torch.randn(T, N, generator=g)
    next_value = torch.randn(N, generator=g)
    terminated = torch.rand(T, N, generator=g) < 0.15
    truncated = torch.rand(T, N, generator=g) < 0.15
    valid = torch.rand(T, N, generator=g) < 0.8
    adv, ret = compute_gae(rewards, values, next_value, terminated, truncated, final_values=final_values,
                           valid=valid, gamma=0.95, gae_lambda=0.8)
    expected = _reference_gae(rewards, values, next_value, terminated, truncated, final_values, valid, 0.95, 0.8)
    torch.testing.assert_close(adv.double(), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ret, torch.where(valid, adv + values, torch.zeros_like(values)))


def test_bad_shapes_and_coefficients_raise():
    x = torch.zeros(3, 2)
    b = torch.zeros(3, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="values must have the shape of rewards"):
        compute_gae(x, torch.zeros(3, 3), torch.zeros(2), b, b, gamma=0.9, gae_lambda=0.9)
    with pytest.raises(ValueError, match=r"next_value must have shape \(2,\)"):
        compute_gae(x, x, torch.zeros(3), b, b, gamma=0.9, gae_lambda=0.9)
    with pytest.raises(ValueError, match="gamma and gae_lambda"):
        compute_gae(x, x, torch.zeros(2), b, b, gamma=1.5, gae_lambda=0.9)
