"""One PPO update: epochs of shuffled minibatches over a rollout's valid transitions.

Losses (CleanRL's ppo_continuous_action):
    pg_loss  = mean(max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)))
    v_loss   = 0.5 * mean((V - R)^2)            (clipped around the rollout's V when clip_vloss)
    loss     = pg_loss - ent_coef * entropy + vf_coef * v_loss
             + anchor_coef * mean(||mu(s) - mu_BC(s)||^2)     (only with an anchor policy)
Padding transitions (valid False) are never sampled.
"""

from __future__ import annotations

import math

import torch

from roboscape_r.policy.config import PPOConfig
from roboscape_r.policy.network import ActorCritic
from roboscape_r.policy.rollout import RolloutBuffer
from roboscape_r.policy.runtime import NonFiniteError


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var(target - predicted) / Var(target) (NaN when the target is constant)."""
    target_var = target.var(unbiased=False)
    if target.numel() < 2 or float(target_var) == 0.0:
        return math.nan
    return float(1.0 - (target - predicted).var(unbiased=False) / target_var)


def ppo_update(model: ActorCritic, optimizer: torch.optim.Optimizer, config: PPOConfig, buffer: RolloutBuffer,
               advantages: torch.Tensor, returns: torch.Tensor, *, actor_on: bool = True,
               anchor: ActorCritic | None = None, anchor_coef: float = 0.0) -> dict[str, float]:
    """Optimise `model` on one rollout.

    Args:
        model: the actor-critic, in train mode.
        optimizer: its optimizer (learning rate already set for this update).
        config: PPO hyperparameters.
        buffer: the rollout (frames already preprocessed).
        advantages, returns: float (T, N) from `compute_gae`.
        actor_on: False trains the critic head only (critic warm-up): the actor, its log-std and the
            shared encoder keep their weights.
        anchor: a frozen policy (the bc_init one) whose mean actions the actor is pulled towards,
            with weight anchor_coef (PPOConfig.bc_anchor_coef, decayed by the caller).

    Returns:
        Means over the minibatches: "losses/policy_loss", "losses/value_loss", "losses/entropy",
        "losses/old_approx_kl", "losses/approx_kl", "losses/clipfrac", "losses/explained_variance",
        "losses/grad_norm", "losses/bc_anchor" (0 without an anchor), and "losses/epochs" (epochs run
        before the target_kl stop).

    Raises:
        NonFiniteError: the loss of a minibatch is NaN/inf (checked before its optimizer step).
    """
    valid_index = buffer.valid.reshape(-1).nonzero().flatten()  # (V,) rows of the flattened (T * N) rollout
    num_valid = valid_index.numel()
    b_values, b_returns = buffer.flat("values"), returns.reshape(-1)
    explained = explained_variance(b_values[valid_index], b_returns[valid_index])
    if num_valid == 0:
        return {"losses/explained_variance": explained, "losses/epochs": 0}
    b_frames, b_instructions = buffer.flat("frames"), buffer.flat("instructions")
    b_actions, b_log_probs = buffer.flat("actions"), buffer.flat("log_probs")
    b_advantages = advantages.reshape(-1)
    minibatch_size = math.ceil(num_valid / config.num_minibatches)
    names = ("policy_loss", "value_loss", "entropy", "old_approx_kl", "approx_kl", "clipfrac", "grad_norm", "bc_anchor")
    use_anchor = anchor is not None and anchor_coef > 0 and actor_on
    anchor_means = None
    if use_anchor:  # the frozen policy's means, once per update rather than once per epoch and minibatch
        with torch.no_grad():
            anchor_means = torch.zeros_like(buffer.flat("actions"))
            for chunk in valid_index.split(1024):
                anchor_means[chunk] = anchor.action_mean(b_frames[chunk], b_instructions[chunk])
    sums = torch.zeros(len(names), device=b_values.device)
    count, epochs_run = 0, 0
    for epoch in range(config.update_epochs):
        epochs_run += 1
        order = valid_index[torch.randperm(num_valid, device=valid_index.device)]
        epoch_kl = torch.zeros((), device=b_values.device)
        epoch_batches = 0
        for start in range(0, num_valid, minibatch_size):
            mb = order[start:start + minibatch_size]
            # In critic warm-up the value loss must not reach the shared encoder: through it, it would move the actor.
            new = model.act_and_value(b_frames[mb], b_instructions[mb], b_actions[mb],
                                      detach_value_features=not actor_on or not config.value_trains_encoder)
            log_ratio = new.log_prob - b_log_probs[mb]
            ratio = log_ratio.exp()
            with torch.no_grad():
                old_approx_kl = (-log_ratio).mean()
                approx_kl = ((ratio - 1) - log_ratio).mean()  # http://joschu.net/blog/kl-approx.html
                clipfrac = ((ratio - 1.0).abs() > config.clip_coef).float().mean()

            mb_advantages = b_advantages[mb]
            if config.norm_adv and mb.numel() > 1:
                mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
            pg_loss = torch.max(-mb_advantages * ratio,
                                -mb_advantages * ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef)).mean()
            if config.clip_vloss:
                unclipped = (new.value - b_returns[mb]) ** 2
                clipped_value = b_values[mb] + (new.value - b_values[mb]).clamp(-config.clip_coef, config.clip_coef)
                v_loss = 0.5 * torch.max(unclipped, (clipped_value - b_returns[mb]) ** 2).mean()
            else:
                v_loss = 0.5 * ((new.value - b_returns[mb]) ** 2).mean()
            entropy = new.entropy.mean()
            actor_loss = pg_loss - config.ent_coef * entropy
            anchor_loss = torch.zeros((), device=b_values.device)
            if use_anchor:
                anchor_loss = ((new.mean - anchor_means[mb]) ** 2).sum(-1).mean()
                actor_loss = actor_loss + anchor_coef * anchor_loss
            loss = config.vf_coef * v_loss + (actor_loss if actor_on else 0.0 * actor_loss)
            if not bool(torch.isfinite(loss)):
                raise NonFiniteError(
                    f"the loss was NaN/inf in epoch {epoch + 1}, minibatch {start // minibatch_size + 1} "
                    f"(policy {float(pg_loss.detach()):.4g}, value {float(v_loss.detach()):.4g}, "
                    f"entropy {float(entropy.detach()):.4g})"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), config.max_grad_norm)
            optimizer.step()
            sums += torch.stack([pg_loss.detach(), v_loss.detach(), entropy.detach(), old_approx_kl, approx_kl,
                                 clipfrac, grad_norm.detach(), anchor_loss.detach()])
            count += 1
            epoch_kl += approx_kl
            epoch_batches += 1
        if config.target_kl is not None and float(epoch_kl / epoch_batches) > config.target_kl:
            break
    means = dict(zip((f"losses/{name}" for name in names), (sums / count).tolist()))
    means["losses/explained_variance"] = explained
    means["losses/epochs"] = epochs_run
    return means
