"""Evaluation of WM_act (and optionally WM_txt) on held-out episodes, per split.

Splits come from each episode's scene: `in-domain`, `ood/<factor>` for our OOD scenes, and the
scene's own name for scenes this code does not know (user env ids). Per split it measures:

* Open-loop prediction. From `context` real frames (teacher-forced through the rollout's KV
  cache with their true actions), WM_act rolls out with the true actions and its frames at each
  horizon are compared with the real ones: PSNR, SSIM, perceptual distance. Two references
  bracket the model: copy-the-last-context-frame (what a model that ignores actions would
  score) and the tokenizer's reconstruction of the target (the best any model over these tokens
  can do). Every metric is also taken on moving pixels only (where the target differs from the
  last context frame), because static background dominates full-frame numbers.
* Action controllability: the same start rolled out with the true actions and with open-loop
  actions taken from another window of the split; the PSNR gap at `control_horizon`, with a
  bootstrap interval, says whether the model listens to its actions at all.
* Done prediction: WM_act's done probability, teacher-forced over whole episodes, against the
  recorded success labels (AUROC, F1 at 0.5).
* WM_txt (optional): the golden trajectory from the first frame and the instruction against the
  real trajectory of successful episodes, and its done timing against the first success step.

Writes `metrics.json`, `open_loop_grid.png` and `open_loop.gif` into the output folder.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from roboscape_r.atomic import atomic_write_json
from roboscape_r.data.format import iter_episode_meta, read_episode, read_manifest
from roboscape_r.worldmodel import frame_metrics as M
from roboscape_r.worldmodel.evaluate_report import (
    FRAME_METRICS,
    jsonable,
    summarize_done,
    summarize_golden,
    summarize_open_loop,
    upscale,
    write_open_loop_grid,
    write_rollout_gif,
)
from roboscape_r.worldmodel.data import encode_episode
from roboscape_r.worldmodel.rollout import WorldModelRollout, anchor_frames
from roboscape_r.worldmodel.world_model import WorldModel


@dataclass(frozen=True)
class EvalWMConfig:
    """Evaluate trained world models on a held-out dataset, per split (in-domain, each OOD factor)."""

    data: Path = Path("data/heldout")
    """Held-out dataset folder written by `roboscape collect`."""
    tokenizer: Path = Path("checkpoints/small/tokenizer.pt")
    """Tokenizer checkpoint (file or run folder) the world models were trained with."""
    wm_act: Path = Path("runs/wm_act")
    """WM_act checkpoint (file or run folder)."""
    wm_txt: Path | None = None
    """Optional WM_txt checkpoint (file or run folder): adds the golden-trajectory metrics."""
    wm_txt_spatial_head: Path | None = None
    """Spatial head fitted to WM_txt (`roboscape train-spatial-head`): golden frames decoded token by token."""
    context_decoder: Path | None = None
    """Context decoder (`roboscape train-context-decoder`): also score WM_act's predictions drawn on the
    last real context frame ("model_context"), as iVideoGPT decodes future frames with the context's features."""
    out: Path = Path("runs/eval_wm")
    """Output folder: metrics.json, open_loop_grid.png, open_loop.gif."""
    horizons: tuple[int, ...] = (1, 4, 8, 16)
    """Open-loop steps after the last context frame at which frames are scored."""
    context: int = 1
    """Real frames before the open-loop rollout. 1 matches the world-model env, which resets
    from one real frame; more frames are teacher-forced through the KV cache."""
    control_horizon: int = 8
    """Open-loop step of the controllability test (true vs shuffled actions); <= max(horizons)."""
    episodes_per_split: int = 64
    """Most episodes evaluated per split (a seeded random subset when a split has more). Few give
    noisy tables: with 12 per split the shipped WM_act's anchored frames looked ahead of copy-last
    in-domain at horizon 8; over all 48 in-domain episodes they are 2 dB behind."""
    windows_per_episode: int = 1
    """Open-loop windows per episode, at seeded random starts (without replacement)."""
    moving_threshold: int = 8
    """A pixel is moving when some channel of the target differs from the last context frame
    by more than this many uint8 levels."""
    golden_max_steps: int = 100
    """Most frames WM_txt generates per golden trajectory."""
    bootstrap_samples: int = 2000
    """Resamples of the 95% bootstrap intervals (controllability gap; done AUROC, over episodes)."""
    temperature: float = 0.0
    """Sampling temperature of the rollouts (0 = greedy)."""
    text_encoder: Literal["minilm", "t5"] = "minilm"
    """Instruction encoder of WM_txt (must be the one it was trained with)."""
    batch_size: int = 64
    """Windows (or episodes) per batched model call."""
    seed: int = 0
    """Seed of episode and window selection, action shuffling, sampling and the bootstrap."""
    device: str = "auto"
    """'auto' (CUDA if available, else CPU), 'cpu' or 'cuda[:N]'."""
    num_threads: int | None = None
    """torch CPU threads (None leaves torch's default)."""
    env_module: str | None = None
    """Python module to import first; scenes it registers get their split and factor from it."""
    progress: bool = True
    """Show tqdm progress bars."""

    def __post_init__(self) -> None:
        if not self.horizons or any(not isinstance(h, int) or h < 1 for h in self.horizons):
            raise ValueError(f"--horizons must be positive ints, got {self.horizons}")
        if len(set(self.horizons)) != len(self.horizons):
            raise ValueError(f"--horizons has duplicates: {self.horizons}")
        for name in ("context", "control_horizon", "episodes_per_split", "windows_per_episode", "golden_max_steps",
                     "bootstrap_samples", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive int, got {value!r}")
        if self.control_horizon > max(self.horizons):
            raise ValueError(f"--control-horizon {self.control_horizon} exceeds the largest horizon {max(self.horizons)}")
        if not 0 <= self.moving_threshold < 255:
            raise ValueError(f"--moving-threshold must be in [0, 255), got {self.moving_threshold}")
        if self.temperature < 0:
            raise ValueError(f"--temperature must be >= 0, got {self.temperature}")

    @property
    def max_horizon(self) -> int:
        return max(self.horizons)


@dataclass
class HeldOutEpisode:
    """One held-out episode, read whole and tokenised."""

    split: str
    scene: str
    instruction: str
    frames: torch.Tensor
    """uint8 (L+1, H, W, 3)."""
    tokens: torch.Tensor
    """long (L+1, h, w)."""
    actions: torch.Tensor
    """float32 (L, A); action t leads from frame t to frame t+1."""
    success: np.ndarray
    """bool (L,); success[t] describes frame t+1."""


# ------------------------------------------------------------------------------------ data


def split_of_scene(scene: str) -> str:
    """`in-domain`, `ood/<factor>` for a scene in `scenes.SCENES`, else the scene name itself."""
    from roboscape_r.data.scenes import SCENES

    spec = SCENES.get(scene)
    if spec is None:
        return scene
    return "in-domain" if spec.split == "in-domain" else f"ood/{spec.factor}"


def _split_order(splits: set[str]) -> list[str]:
    from roboscape_r.data.scenes import SCENES

    known = ["in-domain"] + list(dict.fromkeys(f"ood/{s.factor}" for s in SCENES.values() if s.split == "ood"))
    return [s for s in known if s in splits] + sorted(splits - set(known))


def load_heldout_episodes(root: Path, tokenizer: Any, *, episodes_per_split: int, seed: int, action_dim: int,
                          batch_size: int = 256, hysteresis: float = 0.0) -> list[HeldOutEpisode]:
    """Read up to `episodes_per_split` episodes of every split of `root` and tokenise them (each
    episode as one sequence, with WM_act's `token_hysteresis` as `hysteresis`).

    Raises:
        roboscape_r.data.format.DatasetError: no dataset at `root` or a corrupt shard.
        ValueError: an empty dataset, frames of another size than the tokenizer's, or actions of
            another size than the world model's.
    """
    root = Path(root)
    manifest = read_manifest(root)
    metas = [dict(meta, shard=shard) for shard, meta in iter_episode_meta(manifest)]
    if not metas:
        raise ValueError(f"dataset {root} holds no episodes; collect some with `roboscape collect`")
    size = tokenizer.image_size
    data_size = manifest.get("config", {}).get("image_size")
    if data_size is not None and data_size != size:
        raise ValueError(f"dataset {root} has {data_size}x{data_size} frames but the tokenizer takes {size}x{size}; "
                         "use the tokenizer trained on this image size")
    by_split: dict[str, list[dict]] = defaultdict(list)
    for meta in metas:
        by_split[split_of_scene(meta["scene"])].append(meta)
    rng = np.random.default_rng(seed)
    episodes = []
    for split in _split_order(set(by_split)):
        chosen = by_split[split]
        if len(chosen) > episodes_per_split:
            chosen = [chosen[i] for i in sorted(rng.choice(len(chosen), episodes_per_split, replace=False))]
        for meta in chosen:
            raw = read_episode(root / meta["shard"], meta["episode_index"])
            frames = torch.from_numpy(raw["frames"])  # (L+1, H, W, 3)
            if tuple(frames.shape[1:3]) != (size, size):
                raise ValueError(f"episode {meta['episode_index']} of {root} has {frames.shape[1]}x{frames.shape[2]} "
                                 f"frames but the tokenizer takes {size}x{size}")
            if raw["actions"].shape[1] != action_dim:
                raise ValueError(f"episode {meta['episode_index']} of {root} has {raw['actions'].shape[1]}-D actions "
                                 f"but WM_act takes {action_dim}-D actions")
            with torch.inference_mode():
                tokens = encode_episode(tokenizer, frames, hysteresis, batch_size).cpu()
            episodes.append(HeldOutEpisode(split, meta["scene"], str(meta["instruction"]), frames, tokens.long(),
                                           torch.from_numpy(raw["actions"]).float(), raw["success"].astype(bool)))
    return episodes


# ------------------------------------------------------------------------------- rollouts


def open_loop_tokens(rollout: WorldModelRollout, context_tokens: torch.Tensor, actions: torch.Tensor,
                     horizon: int) -> torch.Tensor:
    """Open-loop WM_act rollout after teacher-forced real context.

    Args:
        rollout: a WorldModelRollout over WM_act.
        context_tokens: long (B, C, h, w), C >= 1 real frames.
        actions: float (B, >= C-1+horizon, A); actions[:, t] follows frame t of the window.
        horizon: open-loop steps.

    Returns:
        long (B, horizon, h, w): entry k is the predicted frame k+1 steps after the last context frame.
    """
    B, C = context_tokens.shape[:2]
    if actions.shape[1] < C - 1 + horizon:
        raise ValueError(f"need {C - 1 + horizon} actions for {C} context frames and horizon {horizon}, "
                         f"got {actions.shape[1]}")
    rollout.reset_tokens(context_tokens[:, 0])
    for t in range(1, C):
        rollout.step_tokens(actions[:, t - 1])
        rollout.observe_tokens(context_tokens[:, t])
    steps = [rollout.step_tokens(actions[:, C - 1 + k]).tokens for k in range(horizon)]
    return torch.stack(steps, dim=1)  # (B, horizon, h, w)


@torch.inference_mode()
def teacher_forced_hidden(model: WorldModel, tokens: list[torch.Tensor], conditions: list[torch.Tensor],
                          reduce: Callable[[torch.Tensor], torch.Tensor] | None = None, batch_size: int = 64,
                          progress: bool = False, desc: str = "teacher-forced features") -> list[torch.Tensor]:
    """The backbone's hidden states for every step of whole episodes, teacher-forced on the real frames.

    Episodes longer than the model's context are cut into windows of `context_frames` frames
    every `context_frames // 2`; each step is scored by the window that gives it the most past
    (at least half a context, as in a rollout after its window slides). Windows are padded at
    the end, which block-causal attention keeps from affecting earlier frames.

    Args:
        model: WM_act or WM_txt.
        tokens: per episode, long (>= L, h, w); frame t for t < L is the input of step t.
        conditions: per episode, WM_act: float (L, A) actions; WM_txt: float (text_dim,) instruction
            embedding (then L = len(tokens)).
        reduce: applied to each batch of hidden states (n, T, h*w, D) before they are kept (e.g.
            the done head's pooling); None keeps them whole.
        batch_size: windows per forward.
        progress: show a tqdm bar over the batches of windows.

    Returns:
        Per episode, float32 (L, ...) on the CPU: step t's hidden states, reduced.
    """
    cfg = model.config
    device = next(model.parameters()).device
    acting = cfg.cond == "act"
    lengths = [len(c) if acting else len(t) for c, t in zip(conditions, tokens)]
    window, stride = cfg.context_frames, max(1, cfg.context_frames // 2)
    rows = []  # (episode, start)
    for e, length in enumerate(lengths):
        start = 0
        while True:
            rows.append((e, start))
            if start + window >= length:
                break
            start += stride
    features: list[torch.Tensor | None] = [None] * len(lengths)
    for first in tqdm(range(0, len(rows), batch_size), desc=desc, unit="batch", disable=not progress):
        chunk = rows[first:first + batch_size]
        batch_tokens = torch.zeros(len(chunk), window, cfg.grid_h, cfg.grid_w, dtype=torch.long)
        for i, (e, start) in enumerate(chunk):
            stop = min(start + window, lengths[e])
            batch_tokens[i, : stop - start] = tokens[e][start:stop]
        if acting:
            batch_actions = torch.zeros(len(chunk), window, cfg.action_dim)
            for i, (e, start) in enumerate(chunk):
                stop = min(start + window, lengths[e])
                batch_actions[i, : stop - start] = conditions[e][start:stop]
            hidden = model.hidden_states(batch_tokens.to(device), actions=batch_actions.to(device))
        else:
            text = torch.stack([conditions[e] for e, _ in chunk]).float()
            hidden = model.hidden_states(batch_tokens.to(device), instruction_embeddings=text.to(device))
        kept = (hidden if reduce is None else reduce(hidden)).float().cpu()  # (n, T, ...)
        for i, (e, start) in enumerate(chunk):
            if features[e] is None:
                features[e] = torch.zeros(lengths[e], *kept.shape[2:])
            stop = min(start + window, lengths[e])
            owned_from = start if start == 0 else start + window - stride
            features[e][owned_from:stop] = kept[i, owned_from - start : stop - start]
    return features


def teacher_forced_pooled_features(model: WorldModel, tokens: list[torch.Tensor], actions: list[torch.Tensor],
                                   batch_size: int = 64, progress: bool = False) -> list[torch.Tensor]:
    """The done head's input, float32 (L, d_model) per episode, for every step of whole WM_act
    episodes (windows as in `teacher_forced_hidden`)."""
    return teacher_forced_hidden(model, tokens, actions, model.done_features, batch_size, progress,
                                 desc="done-head features")


@torch.inference_mode()
def teacher_forced_done_probs(model: WorldModel, tokens: list[torch.Tensor], actions: list[torch.Tensor],
                              batch_size: int = 64) -> list[np.ndarray]:
    """Done probability of every step of whole episodes, teacher-forced on the real frames
    (windows as in `teacher_forced_pooled_features`).

    Returns:
        Per episode, float (L,): probability that frame t+1 shows success.
    """
    param = next(model.done_head.parameters())
    features = teacher_forced_pooled_features(model, tokens, actions, batch_size)
    return [torch.sigmoid(model.done_head(f.to(param.device, param.dtype)).squeeze(-1).float()).cpu().numpy()
            for f in features]


# -------------------------------------------------------------------------- frame metrics


@torch.inference_mode()
def score_frames(candidates: dict[str, torch.Tensor], targets: torch.Tensor, last_context: torch.Tensor,
                 perceptual: torch.nn.Module, moving_threshold: int) -> dict[str, dict[str, torch.Tensor]]:
    """PSNR, SSIM and perceptual distance of each candidate batch against the targets.

    Args:
        candidates: name -> uint8 (N, H, W, 3), e.g. model, copy_last, tokenizer_recon.
        targets: uint8 (N, H, W, 3) real frames.
        last_context: uint8 (N, H, W, 3), the last real frame before the rollout (defines motion).
        perceptual: a PerceptualDistance.
        moving_threshold: see EvalWMConfig.moving_threshold.

    Returns:
        {"<name>": {"psnr", "ssim", "perceptual"}, "moving/<name>": {...}} of float (N,) CPU
        tensors; moving-pixel values are NaN where nothing moved. On moving pixels the perceptual
        distance compares the target with the candidate pasted over it on the moving pixels only.
    """
    mask = M.moving_mask(targets, last_context, moving_threshold)  # (N, H, W)
    nothing_moved = ~mask.flatten(1).any(dim=1)  # (N,)
    names = list(candidates)
    stacked = torch.cat([candidates[n] for n in names])  # (K*N, H, W, 3)
    stacked_targets = targets.repeat(len(names), 1, 1, 1)
    stacked_mask = mask.repeat(len(names), 1, 1)
    pasted = torch.where(stacked_mask[..., None], stacked, stacked_targets)
    values = {
        "psnr": M.psnr(stacked, stacked_targets),
        "ssim": M.ssim(stacked, stacked_targets),
        "perceptual": perceptual(stacked, stacked_targets).float(),
        "moving/psnr": M.psnr(stacked, stacked_targets, stacked_mask),
        "moving/ssim": M.ssim(stacked, stacked_targets, stacked_mask),
        "moving/perceptual": perceptual(pasted, stacked_targets).float(),
    }
    result: dict[str, dict[str, torch.Tensor]] = {}
    for k, name in enumerate(names):
        rows = slice(k * len(targets), (k + 1) * len(targets))
        result[name] = {m: values[m][rows].cpu() for m in FRAME_METRICS}
        moving = {m: values[f"moving/{m}"][rows].cpu().clone() for m in FRAME_METRICS}
        for metric in moving.values():
            metric[nothing_moved.cpu()] = float("nan")
        result[f"moving/{name}"] = moving
    result["moving/pixel_fraction"] = {"value": mask.float().mean(dim=(1, 2)).cpu()}
    return result


# ------------------------------------------------------------------------------ open loop


def sample_windows(episodes: list[HeldOutEpisode], context: int, max_horizon: int, per_episode: int,
                   rng: np.random.Generator) -> tuple[list[tuple[int, int]], list[int]]:
    """Open-loop windows (episode, start) at random starts, and the episodes too short for one.

    A window needs `context` real frames and `max_horizon` frames after them: frames
    start .. start + context - 1 + max_horizon.
    """
    steps_needed = context - 1 + max_horizon
    windows, too_short = [], []
    for e, episode in enumerate(episodes):
        num_starts = len(episode.actions) - steps_needed + 1
        if num_starts < 1:
            too_short.append(e)
            continue
        starts = sorted(rng.choice(num_starts, min(per_episode, num_starts), replace=False).tolist())
        windows += [(e, s) for s in starts]
    return windows, too_short


def shuffled_action_sources(window_splits: list[str], rng: np.random.Generator) -> tuple[np.ndarray, dict[str, str]]:
    """For each window, the window whose open-loop actions replace its own in the controllability
    test: another window of the same split (a random cyclic order, so never itself), or itself
    (then its actions are time-reversed) when the split has one window.

    Returns (sources (N,), {split: "across-windows" | "time-reversed"}).
    """
    sources = np.arange(len(window_splits))
    kinds = {}
    for split in dict.fromkeys(window_splits):
        members = np.flatnonzero(np.asarray(window_splits) == split)
        if len(members) >= 2:
            order = rng.permutation(members)
            sources[order] = np.roll(order, -1)
            kinds[split] = "across-windows"
        else:
            kinds[split] = "time-reversed"
    return sources, kinds


def token_change_rates(predicted: torch.Tensor, targets: torch.Tensor, last_context: torch.Tensor) -> dict[str, torch.Tensor]:
    """How far the predicted token grids keep what stays and change what changes, per frame.

    A grid cell is still when the real target frame has the last context frame's token there,
    and changed otherwise. "still_kept" is the fraction of still cells where the prediction also
    keeps the context token; "changed_changed" the fraction of changed cells where it does not.
    Copy-last scores 1 and 0. A model that redraws an unfamiliar scene as a familiar one scores
    low on the first, whatever its decoder then draws.

    Args:
        predicted: long (B, S, h, w) predicted grids.
        targets: long (B, S, h, w) real grids of the same frames.
        last_context: long (B, h, w) real grid of the last context frame.

    Returns:
        {"still_kept", "changed_changed"}: float (B, S), NaN where a frame has no cell of that kind.
    """
    context = last_context[:, None].to(predicted.device)
    still = targets.to(predicted.device) == context  # (B, S, h, w)
    kept = predicted == context

    def rate(cells: torch.Tensor, hits: torch.Tensor) -> torch.Tensor:
        count = cells.flatten(2).sum(dim=2).float()
        return ((cells & hits).flatten(2).sum(dim=2).float() / count).where(count > 0, torch.nan).cpu()

    return {"still_kept": rate(still, kept), "changed_changed": rate(~still, ~kept)}


def window_batch(episodes: list[HeldOutEpisode], chunk: list[tuple[int, int]], context: int,
                 horizon: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The real frames, tokens and actions of windows (episode, start), stacked.

    Returns:
        frames uint8 (B, C+horizon, H, W, 3), tokens long (B, C+horizon, h, w) and actions float
        (B, C-1+horizon, A), where C = `context`; actions[:, t] follows frame t of the window.
    """
    frames = torch.stack([episodes[e].frames[s : s + context + horizon] for e, s in chunk])
    tokens = torch.stack([episodes[e].tokens[s : s + context + horizon] for e, s in chunk])
    actions = torch.stack([episodes[e].actions[s : s + context - 1 + horizon] for e, s in chunk])
    return frames, tokens, actions


def evaluate_open_loop(episodes: list[HeldOutEpisode], windows: list[tuple[int, int]], rollout: WorldModelRollout,
                       tokenizer: Any, perceptual: torch.nn.Module, config: EvalWMConfig,
                       rng: np.random.Generator, example_windows: list[int],
                       context_decoder: torch.nn.Module | None = None) -> dict[str, Any]:
    """Open-loop scores of every window, batched over windows.

    With a `context_decoder` the predicted tokens are also drawn on the last real context frame
    (group "model_context").

    Returns a dict: "steps" (the scored horizons, sorted, control_horizon included); "scores"
    {group: {metric: float (N, num_steps)}} as in `score_frames`; "tokens" {rate: float
    (N, num_steps)} as in `token_change_rates`; "control_true" and
    "control_shuffled" float (N,) model PSNR at control_horizon; "shuffle_kinds"; "examples"
    {window: long (max_horizon, h, w) predicted tokens} for `example_windows`.
    """
    C, horizon = config.context, config.max_horizon
    steps = sorted(set(config.horizons) | {config.control_horizon})
    step_index = torch.tensor(steps) - 1  # into the predicted frames
    target_index = C - 1 + torch.tensor(steps)  # into the window's real frames
    control_column = steps.index(config.control_horizon)
    window_splits = [episodes[e].split for e, _ in windows]
    sources, shuffle_kinds = shuffled_action_sources(window_splits, rng)

    def future_actions(e: int, s: int) -> torch.Tensor:
        return episodes[e].actions[s + C - 1 : s + C - 1 + horizon]  # (horizon, A)

    scores: dict[str, dict[str, list[torch.Tensor]]] = defaultdict(lambda: defaultdict(list))
    token_rates: dict[str, list[torch.Tensor]] = defaultdict(list)
    control_true, control_shuffled, examples = [], [], {}
    device = rollout.device
    batches = range(0, len(windows), config.batch_size)
    for first in tqdm(batches, desc="open-loop", unit="batch", disable=not config.progress):
        chunk = windows[first:first + config.batch_size]
        B = len(chunk)
        frames, tokens, actions = window_batch(episodes, chunk, C, horizon)  # (B, C+Hmax, ...), actions (B, C-1+Hmax, A)
        frames = frames.to(device)
        shuffled = actions.clone()
        for i, window in enumerate(range(first, first + B)):
            source = sources[window]
            own = source == window
            replacement = future_actions(*windows[source])
            shuffled[i, C - 1 :] = replacement.flip(0) if own else replacement
        predicted = open_loop_tokens(rollout, tokens[:, :C], actions, horizon)  # (B, Hmax, h, w)
        predicted_shuffled = open_loop_tokens(rollout, tokens[:, :C], shuffled, config.control_horizon)
        for name, values in token_change_rates(predicted[:, step_index], tokens[:, target_index],
                                               tokens[:, C - 1]).items():
            token_rates[name].append(values)
        with torch.inference_mode():
            model_frames = tokenizer.decode(predicted[:, step_index].flatten(0, 1).to(device))  # (B*S, H, W, 3)
            recon_frames = tokenizer.decode(tokens[:, target_index].flatten(0, 1).to(device))
            shuffled_frames = tokenizer.decode(predicted_shuffled[:, -1].to(device))  # (B, H, W, 3)
            last_decoded = tokenizer.decode(tokens[:, C - 1].to(device))  # (B, H, W, 3)
        targets = frames[:, target_index].flatten(0, 1)  # (B*S, H, W, 3)
        last = frames[:, C - 1, None].expand(B, len(steps), *frames.shape[2:]).flatten(0, 1)
        anchored = anchor_frames(model_frames.view(B, len(steps), *frames.shape[2:]), frames[:, C - 1],
                                 last_decoded).flatten(0, 1)
        groups = {"model": model_frames, "model_anchored": anchored, "copy_last": last, "tokenizer_recon": recon_frames}
        if context_decoder is not None:
            S = len(steps)
            with torch.inference_mode():
                groups["model_context"] = context_decoder.decode(
                    tokenizer, predicted[:, step_index].flatten(0, 1).to(device),
                    tokens[:, C - 1, None].expand(B, S, *tokens.shape[2:]).flatten(0, 1).to(device), last)
        batch_scores = score_frames(groups,
                                    targets, last, perceptual, config.moving_threshold)
        for group, metrics in batch_scores.items():
            for metric, values in metrics.items():
                scores[group][metric].append(values.view(B, len(steps)))
        control_true.append(batch_scores["model"]["psnr"].view(B, len(steps))[:, control_column])
        control_shuffled.append(M.psnr(shuffled_frames, frames[:, C - 1 + config.control_horizon]).cpu())
        for i, window in enumerate(range(first, first + B)):
            if window in example_windows:
                examples[window] = predicted[i].cpu()
    return {
        "steps": steps,
        "scores": {g: {m: torch.cat(v) for m, v in metrics.items()} for g, metrics in scores.items()},
        "tokens": {name: torch.cat(values) for name, values in token_rates.items()},
        "control_true": torch.cat(control_true),
        "control_shuffled": torch.cat(control_shuffled),
        "shuffle_kinds": shuffle_kinds,
        "examples": examples,
    }


# ---------------------------------------------------------------------------- golden (WM_txt)


def evaluate_golden(episodes: list[HeldOutEpisode], rollout: WorldModelRollout, tokenizer: Any,
                    perceptual: torch.nn.Module, text_encoder: Any, config: EvalWMConfig) -> list[dict[str, float]]:
    """WM_txt's golden trajectories against the real trajectories of successful episodes.

    Each golden trajectory starts from the episode's first frame and instruction and runs
    min(golden_max_steps, longest episode of the batch) steps. Golden frame k (after k steps) is
    compared with real frame k for k = 1 .. first success frame. Done timing: the first golden
    step with done_prob > 0.5 against the first real success frame (a trajectory that never
    crosses 0.5 counts as one step past its end, and as `never`).

    Returns one dict per episode (same order): psnr, perceptual (means over the compared
    steps), copy_first_psnr, copy_first_perceptual (the first real frame as the prediction),
    compared_steps, done_step_pred, done_step_real, never_done.
    """
    results = []
    batches = range(0, len(episodes), config.batch_size)
    for first in tqdm(batches, desc="golden", unit="batch", disable=not config.progress):
        chunk = episodes[first:first + config.batch_size]
        lengths = [len(e.actions) for e in chunk]
        num_steps = min(config.golden_max_steps, max(lengths))
        embeddings = text_encoder.encode([e.instruction for e in chunk])  # (B, text_dim)
        rollout.reset_tokens(torch.stack([e.tokens[0] for e in chunk]), embeddings)
        steps = [rollout.step_tokens() for _ in range(num_steps)]
        golden_tokens = torch.stack([s.tokens for s in steps], dim=1).cpu()  # (B, T, h, w)
        done_prob = torch.stack([s.done_prob for s in steps], dim=1).cpu()  # (B, T)
        real_done = [int(np.flatnonzero(e.success)[0]) + 1 for e in chunk]  # first success frame
        pairs = [(b, k) for b in range(len(chunk)) for k in range(min(real_done[b], num_steps))]
        rows = torch.tensor([b for b, _ in pairs])
        columns = torch.tensor([k for _, k in pairs])
        real = torch.stack([chunk[b].frames[k + 1] for b, k in pairs])  # (P, H, W, 3)
        first_frames = torch.stack([chunk[b].frames[0] for b, _ in pairs])
        psnr_values, perceptual_values, copy_psnr, copy_perceptual = [], [], [], []
        with torch.inference_mode():
            for start in range(0, len(pairs), config.batch_size):
                part = slice(start, start + config.batch_size)
                golden = tokenizer.decode(golden_tokens[rows[part], columns[part]].to(rollout.device))
                target = real[part].to(golden.device)
                first_frame = first_frames[part].to(golden.device)
                psnr_values.append(M.psnr(golden, target).cpu())
                perceptual_values.append(perceptual(golden, target).float().cpu())
                copy_psnr.append(M.psnr(first_frame, target).cpu())
                copy_perceptual.append(perceptual(first_frame, target).float().cpu())
        per_pair = {name: torch.cat(values) for name, values in (("psnr", psnr_values), ("perceptual", perceptual_values),
                    ("copy_first_psnr", copy_psnr), ("copy_first_perceptual", copy_perceptual))}
        crossed = done_prob > 0.5  # (B, T)
        for b, episode in enumerate(chunk):
            mine = rows == b
            never = not bool(crossed[b].any())
            predicted = num_steps + 1 if never else int(crossed[b].float().argmax()) + 1
            results.append({**{name: float(values[mine].mean()) for name, values in per_pair.items()},
                            "compared_steps": int(mine.sum()), "done_step_pred": predicted,
                            "done_step_real": real_done[b], "never_done": never})
    return results


# ------------------------------------------------------------------------------ the whole run


def check_compatible(tokenizer: Any, model: WorldModel, flag: str) -> None:
    """Raise ValueError unless `model` reads the token grids and vocabulary `tokenizer` makes."""
    cfg = model.config
    grid = (tokenizer.grid_size, tokenizer.grid_size)
    if (cfg.grid_h, cfg.grid_w) != grid or cfg.codebook_size != tokenizer.codebook_size:
        raise ValueError(
            f"{flag} reads {cfg.grid_h}x{cfg.grid_w} token grids of {cfg.codebook_size} codes but the tokenizer "
            f"makes {grid[0]}x{grid[1]} grids of {tokenizer.codebook_size} codes; pass the tokenizer it was trained with"
        )


def evaluate_world_models(config: EvalWMConfig, episodes: list[HeldOutEpisode], tokenizer: Any, wm_act: WorldModel,
                          perceptual: torch.nn.Module, wm_txt: WorldModel | None = None,
                          text_encoder: Any | None = None,
                          spatial_head: torch.nn.Module | None = None,
                          context_decoder: torch.nn.Module | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every metric of the module docstring, per split and over all episodes ("all").

    Args:
        config: the evaluation options.
        episodes: held-out episodes (see `load_heldout_episodes`), grouped by split in order.
        tokenizer: object with encode/decode, image_size, grid_size, codebook_size.
        wm_act: WM_act; wm_txt and text_encoder: optional WM_txt and its instruction encoder.
        spatial_head: optional spatial head of WM_txt for the golden trajectories.
        context_decoder: optional ContextDecoder: open-loop frames also drawn on the context frame.
        perceptual: a PerceptualDistance (its `name` is reported).

    Returns:
        (metrics: the JSON-ready dict written to metrics.json minus run info,
         pictures: {"grid_rows", "grid_titles", "gif_real", "gif_predicted"} for the image files).

    Raises:
        ValueError: no episode long enough for context + max horizon.
    """
    C = config.context
    rng = np.random.default_rng(config.seed)
    windows, too_short = sample_windows(episodes, C, config.max_horizon, config.windows_per_episode, rng)
    if not windows:
        longest = max(len(e.actions) for e in episodes)
        raise ValueError(f"no held-out episode has the {C - 1 + config.max_horizon} steps that --context {C} and "
                         f"horizon {config.max_horizon} need (the longest has {longest}); lower --horizons or --context")
    splits = list(dict.fromkeys(e.split for e in episodes))
    first_window_of = {}
    for w, (e, _) in enumerate(windows):
        first_window_of.setdefault(episodes[e].split, w)
    example_windows = list(first_window_of.values())[:4]

    rollout = WorldModelRollout(wm_act, tokenizer, temperature=config.temperature, seed=config.seed)
    open_loop = evaluate_open_loop(episodes, windows, rollout, tokenizer, perceptual, config, rng, example_windows,
                                   context_decoder)
    done_probs = teacher_forced_done_probs(wm_act, [e.tokens for e in episodes], [e.actions for e in episodes],
                                           config.batch_size)
    successful = [i for i, e in enumerate(episodes) if e.success.any()]
    golden = {}
    if wm_txt is not None and successful:
        golden_rollout = WorldModelRollout(wm_txt, tokenizer, temperature=config.temperature, seed=config.seed,
                                           spatial_head=spatial_head)
        results = evaluate_golden([episodes[i] for i in successful], golden_rollout, tokenizer, perceptual,
                                  text_encoder, config)
        golden = dict(zip(successful, results))

    window_split = np.array([episodes[e].split for e, _ in windows])
    summaries = {}
    for split in [*splits, "all"]:
        members = [i for i, e in enumerate(episodes) if split in ("all", e.split)]
        member_set = set(members)
        window_members = np.flatnonzero((window_split == split) | (split == "all"))
        entry: dict[str, Any] = {
            "episodes": len(members), "scenes": sorted({episodes[i].scene for i in members}),
            "windows": int(len(window_members)), "episodes_too_short": sum(1 for i in too_short if i in member_set),
        }
        if len(window_members):
            kind = open_loop["shuffle_kinds"].get(split, "within each split")
            entry.update(summarize_open_loop(open_loop, window_members, config.horizons, config.control_horizon, kind,
                                             config.bootstrap_samples, config.seed))
        entry["done"] = summarize_done([done_probs[i] for i in members], [episodes[i].success for i in members],
                                       config.bootstrap_samples, config.seed)
        if wm_txt is not None:
            entry["golden"] = summarize_golden([golden[i] for i in members if i in golden])
        summaries[split] = entry
    metrics = {"perceptual_distance": getattr(perceptual, "name", type(perceptual).__name__),
               "psnr_cap_db": M.PSNR_CAP_DB, "splits": summaries}
    return metrics, _pictures(episodes, windows, open_loop, example_windows, tokenizer, config, context_decoder)


def _pictures(episodes: list[HeldOutEpisode], windows: list[tuple[int, int]], open_loop: dict[str, Any],
              example_windows: list[int], tokenizer: Any, config: EvalWMConfig,
              context_decoder: torch.nn.Module | None = None) -> dict[str, Any]:
    C, horizons = config.context, sorted(config.horizons)
    factor = max(1, 128 // tokenizer.image_size)
    rows = []
    gif_real = gif_predicted = None
    for w in example_windows:
        e, s = windows[w]
        episode = episodes[e]
        with torch.inference_mode():
            predicted = tokenizer.decode(open_loop["examples"][w].to(_device_of(tokenizer))).cpu()  # (Hmax, H, W, 3)
            start = tokenizer.decode(episode.tokens[s + C - 1, None].to(_device_of(tokenizer))).cpu()
        index = torch.tensor(horizons)
        real = episode.frames[s + C - 1 + index]
        last = episode.frames[s + C - 1, None].expand_as(real)
        rows += [(f"real {episode.split}"[:18], list(upscale(real, factor))),
                 ("predicted", list(upscale(predicted[index - 1], factor)))]
        if context_decoder is not None:
            device = _device_of(tokenizer)
            with torch.inference_mode():
                drawn = context_decoder.decode(
                    tokenizer, open_loop["examples"][w][index - 1].to(device),
                    episode.tokens[s + C - 1, None].expand(len(index), -1, -1).to(device), last.to(device)).cpu()
            rows.append(("on context frame", list(upscale(drawn, factor))))
        rows.append(("copy-last", list(upscale(last, factor))))
        if gif_real is None:
            gif_real = upscale(episode.frames[s + C - 1 : s + C + config.max_horizon], factor)
            gif_predicted = upscale(torch.cat([start, predicted]), factor)
    return {"grid_rows": rows, "grid_titles": [f"t+{h}" for h in horizons], "gif_real": gif_real,
            "gif_predicted": gif_predicted}


def _device_of(module: Any) -> torch.device:
    if isinstance(module, torch.nn.Module):
        for tensor in module.parameters():
            return tensor.device
    return torch.device("cpu")


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device!r} asked for, but CUDA is not available")
    return resolved


def run_evaluation(config: EvalWMConfig, *, text_encoder: Any | None = None) -> dict[str, Any]:
    """Load the checkpoints and held-out data, evaluate, and write metrics.json,
    open_loop_grid.png and open_loop.gif into `config.out`.

    Args:
        config: the evaluation options.
        text_encoder: WM_txt's instruction encoder (default `make_text_encoder(config.text_encoder)`).

    Returns:
        The dict written to metrics.json.

    Raises:
        roboscape_r.checkpoint.CheckpointError: a missing or corrupt checkpoint, or one of the
            wrong kind (e.g. a WM_txt passed as --wm-act); the message names the flag.
        roboscape_r.data.format.DatasetError: no dataset at --data, or a corrupt shard.
        ValueError: an empty dataset, mismatched image sizes, token grids, vocabularies,
            action or instruction sizes, or episodes too short for the horizons.
    """
    from roboscape_r.checkpoint import CheckpointError
    from roboscape_r.data.scenes import import_env_module
    from roboscape_r.tokenizer import load_tokenizer, make_perceptual_distance
    from roboscape_r.worldmodel.train import load_world_model

    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    import_env_module(config.env_module)
    device = _resolve_device(config.device)

    def load(flag: str, loader, *args):
        try:
            return loader(*args, map_location=device)
        except CheckpointError as error:
            raise CheckpointError(f"{flag}: {error}") from error

    tokenizer = load("--tokenizer", load_tokenizer, config.tokenizer)
    wm_act = load("--wm-act", load_world_model, config.wm_act, "act")
    check_compatible(tokenizer, wm_act, "--wm-act")
    wm_txt = None
    if config.wm_txt is not None:
        wm_txt = load("--wm-txt", load_world_model, config.wm_txt, "txt")
        check_compatible(tokenizer, wm_txt, "--wm-txt")
        if text_encoder is None:
            from roboscape_r.worldmodel.text_encoder import make_text_encoder

            text_encoder = make_text_encoder(config.text_encoder)
        if text_encoder.dim != wm_txt.config.text_dim:
            raise ValueError(f"--wm-txt takes {wm_txt.config.text_dim}-D instruction embeddings but the "
                             f"{config.text_encoder!r} text encoder makes {text_encoder.dim}-D ones; pass --text-encoder "
                             "the model was trained with")
    spatial_head = None
    if config.wm_txt_spatial_head is not None:
        if wm_txt is None:
            raise ValueError("--wm-txt-spatial-head needs --wm-txt, the model it was fitted to")
        from roboscape_r.worldmodel.spatial_head import load_spatial_head

        spatial_head = load("--wm-txt-spatial-head", load_spatial_head, config.wm_txt_spatial_head, wm_txt)
    context_decoder = None
    if config.context_decoder is not None:
        from roboscape_r.tokenizer.context_decoder import load_context_decoder

        context_decoder = load("--context-decoder", load_context_decoder, config.context_decoder)
        if context_decoder.tokenizer_config != tokenizer.config:
            raise ValueError("--context-decoder was fitted to a tokenizer with another config than --tokenizer; "
                             "pass the tokenizer it was fitted to, or fit one (roboscape train-context-decoder)")
    perceptual = make_perceptual_distance(tokenizer).to(device)
    episodes = load_heldout_episodes(config.data, tokenizer, episodes_per_split=config.episodes_per_split,
                                     seed=config.seed, action_dim=wm_act.config.action_dim,
                                     batch_size=4 * config.batch_size, hysteresis=wm_act.config.token_hysteresis)
    metrics, pictures = evaluate_world_models(config, episodes, tokenizer, wm_act, perceptual, wm_txt, text_encoder,
                                              spatial_head, context_decoder)
    metrics = {
        "config": dataclasses.asdict(config),
        "models": {"tokenizer": {"path": config.tokenizer, "image_size": tokenizer.image_size,
                                 "grid_size": tokenizer.grid_size, "codebook_size": tokenizer.codebook_size},
                   "wm_act": {"path": config.wm_act, "config": wm_act.config.to_dict()},
                   "wm_txt": None if wm_txt is None else {"path": config.wm_txt, "config": wm_txt.config.to_dict()}},
        **metrics,
    }
    metrics = jsonable(metrics)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "metrics.json", metrics)
    write_open_loop_grid(out / "open_loop_grid.png", pictures["grid_rows"], pictures["grid_titles"])
    write_rollout_gif(out / "open_loop.gif", pictures["gif_real"], pictures["gif_predicted"])
    return metrics
