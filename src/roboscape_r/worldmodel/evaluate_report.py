"""Summaries and pictures of a world-model evaluation (see `worldmodel.evaluate`): per-split
means of the per-window scores, the controllability interval, done and golden-trajectory
statistics, the JSON-ready metrics dict, a console table, the PNG grid and the GIF.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from roboscape_r.atomic import atomic_write_bytes
from roboscape_r.worldmodel import frame_metrics as M

REFERENCES = ("model", "model_anchored", "copy_last", "tokenizer_recon")
"""What each target frame is compared with: the model's prediction decoded from its tokens, the
same prediction anchored on the last real frame (`rollout.anchor_frames`), and two references."""
CONTEXT_REFERENCE = "model_context"
"""Present only when eval-wm ran with a context decoder: the prediction drawn on the last real frame."""


def references_of(entry: dict[str, Any]) -> tuple[str, ...]:
    """The comparison groups an open-loop entry (or score dict) holds, in display order."""
    return REFERENCES + ((CONTEXT_REFERENCE,) if CONTEXT_REFERENCE in entry else ())
FRAME_METRICS = ("psnr", "ssim", "perceptual")


# ------------------------------------------------------------------------------ summaries


def _mean_or_none(values: torch.Tensor | np.ndarray) -> float | None:
    mean = M.nanmean(values)
    return None if mean is None or not np.isfinite(mean) else mean


def _difference_from_copy_last(scores: dict[str, Any], references: tuple[str, ...], members: np.ndarray, column: int,
                               bootstrap_samples: int, seed: int) -> dict[str, Any]:
    """Mean PSNR of the best prediction (drawn on the context frame when there is one) minus copy-last's,
    window by window, with its 95% bootstrap interval over windows: full frames and moving pixels.

    A few still windows, where copy-last scores the PSNR cap, can decide a split's mean; the interval
    says how much the comparison rests on which windows were drawn."""
    model = CONTEXT_REFERENCE if CONTEXT_REFERENCE in references else "model"
    result: dict[str, Any] = {"model": model}
    for name, prefix in (("full", ""), ("moving", "moving/")):
        diff = (scores[f"{prefix}{model}"]["psnr"][members, column] - scores[f"{prefix}copy_last"]["psnr"][members, column])
        ci = M.bootstrap_mean_ci(np.asarray(diff), samples=bootstrap_samples, seed=seed)
        result[name] = None if ci is None else {"psnr_diff": ci[0], "psnr_diff_ci95": [ci[1], ci[2]]}
    return result


def summarize_open_loop(open_loop: dict[str, Any], members: np.ndarray, horizons: tuple[int, ...],
                        control_horizon: int, shuffle_kind: str, bootstrap_samples: int, seed: int) -> dict[str, Any]:
    """Means over the windows `members` (indices) of every open-loop score, per horizon, and the
    controllability gap with its 95% bootstrap interval."""
    scores, steps = open_loop["scores"], open_loop["steps"]
    per_horizon = {}
    references = references_of(scores)
    for h in horizons:
        column = steps.index(h)
        entry: dict[str, Any] = {ref: {m: _mean_or_none(scores[ref][m][members, column]) for m in FRAME_METRICS}
                                 for ref in references}
        moved = scores["moving/model"]["psnr"][members, column]
        entry["moving"] = {ref: {m: _mean_or_none(scores[f"moving/{ref}"][m][members, column]) for m in FRAME_METRICS}
                           for ref in references}
        entry["moving"]["windows_with_motion"] = int((~moved.isnan()).sum())
        entry["moving"]["pixel_fraction"] = _mean_or_none(scores["moving/pixel_fraction"]["value"][members, column])
        # Full frames, over the windows in which something moved: a still window gives copy-last the
        # PSNR cap, so a few of them can decide the plain mean.
        changed = members[~moved.isnan().numpy()]
        entry["moved_windows"] = {ref: {m: _mean_or_none(scores[ref][m][changed, column]) for m in FRAME_METRICS}
                                  for ref in references}
        entry["moved_windows"]["windows"] = int(len(changed))
        entry["vs_copy_last"] = _difference_from_copy_last(scores, references, members, column, bootstrap_samples, seed)
        if "tokens" in open_loop:  # see evaluate.token_change_rates
            entry["tokens"] = {name: _mean_or_none(values[members, column])
                               for name, values in open_loop["tokens"].items()}
        per_horizon[str(h)] = entry
    true_psnr = open_loop["control_true"][members].numpy()
    shuffled_psnr = open_loop["control_shuffled"][members].numpy()
    gap = M.bootstrap_mean_ci(true_psnr - shuffled_psnr, samples=bootstrap_samples, seed=seed)
    control = {
        "horizon": control_horizon, "shuffle": shuffle_kind, "windows": int(len(members)),
        "psnr_true_actions": _mean_or_none(true_psnr), "psnr_shuffled_actions": _mean_or_none(shuffled_psnr),
        "psnr_gap": None if gap is None else gap[0], "psnr_gap_ci95": None if gap is None else [gap[1], gap[2]],
    }
    return {"open_loop": per_horizon, "controllability": control}


def summarize_done(probs: list[np.ndarray], labels: list[np.ndarray], bootstrap_samples: int = 0,
                   seed: int = 0) -> dict[str, Any]:
    """AUROC and F1 (threshold 0.5) of pooled per-step done probabilities against success labels.

    With ``bootstrap_samples`` > 0 the AUROC also gets a 95% percentile interval over resampled
    episodes (``auroc_ci95``): steps of one episode are not independent, so whole episodes are
    resampled; a resample with a single class is redrawn. Few episodes give a wide interval.
    """
    scores = np.concatenate(probs) if probs else np.zeros(0)
    truth = np.concatenate(labels) if labels else np.zeros(0, bool)
    result = {"auroc": M.auroc(scores, truth), **M.binary_scores(scores, truth), "threshold": 0.5,
              "steps": int(truth.size), "positive_steps": int(truth.sum()), "episodes": len(probs)}
    if bootstrap_samples > 0 and result["auroc"] is not None:
        rng = np.random.default_rng(seed)
        values: list[float] = []
        for _ in range(20 * bootstrap_samples):  # bounded: most resamples hold both classes
            picks = rng.integers(0, len(probs), len(probs))
            value = M.auroc(np.concatenate([probs[i] for i in picks]), np.concatenate([labels[i] for i in picks]))
            if value is not None:
                values.append(value)
            if len(values) == bootstrap_samples:
                break
        result["auroc_ci95"] = [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if values else None
    return result


def summarize_golden(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over successful episodes of the golden-trajectory scores and the done-timing error."""
    if not results:
        return {"episodes": 0}
    column = {key: np.array([r[key] for r in results], dtype=np.float64) for key in results[0]}
    return {
        "episodes": len(results),
        "psnr": _mean_or_none(column["psnr"]), "perceptual": _mean_or_none(column["perceptual"]),
        "copy_first": {"psnr": _mean_or_none(column["copy_first_psnr"]),
                       "perceptual": _mean_or_none(column["copy_first_perceptual"])},
        "compared_steps_mean": _mean_or_none(column["compared_steps"]),
        "done_step_mae": _mean_or_none(np.abs(column["done_step_pred"] - column["done_step_real"])),
        "never_done_fraction": _mean_or_none(column["never_done"]),
    }


# ------------------------------------------------------------------------------- pictures


def upscale(frames: torch.Tensor, factor: int) -> np.ndarray:
    """uint8 (..., H, W, 3) -> numpy (..., H*factor, W*factor, 3), nearest neighbour."""
    return frames.repeat_interleave(factor, dim=-3).repeat_interleave(factor, dim=-2).cpu().numpy()


def write_open_loop_grid(path: Path, rows: list[tuple[str, list[np.ndarray]]], column_titles: list[str]) -> None:
    """A labelled PNG grid: one row per (label, frames), one column per title; written atomically."""
    from PIL import Image, ImageDraw

    tile_h, tile_w = rows[0][1][0].shape[:2]
    label_w, title_h, gap = 110, 14, 2
    canvas = Image.new("RGB", (label_w + len(column_titles) * (tile_w + gap), title_h + len(rows) * (tile_h + gap)),
                       (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(column_titles):
        draw.text((label_w + c * (tile_w + gap) + 2, 1), title, fill=(0, 0, 0))
    for r, (label, frames) in enumerate(rows):
        top = title_h + r * (tile_h + gap)
        draw.text((2, top + tile_h // 2 - 5), label, fill=(0, 0, 0))
        for c, frame in enumerate(frames):
            canvas.paste(Image.fromarray(frame), (label_w + c * (tile_w + gap), top))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def write_rollout_gif(path: Path, real: np.ndarray, predicted: np.ndarray, frame_ms: int = 250) -> None:
    """A GIF of real | predicted side by side, uint8 (T, H, W, 3) each; written atomically."""
    import imageio.v3 as iio

    separator = np.full((*real.shape[:2], 2, 3), 255, np.uint8)
    frames = np.concatenate([real, separator, predicted], axis=2)  # (T, H, 2W+2, 3)
    atomic_write_bytes(path, iio.imwrite("<bytes>", frames, extension=".gif", duration=frame_ms, loop=0))


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def format_metrics(metrics: dict[str, Any]) -> str:
    """A short table of the headline numbers of `run_evaluation`'s result, one row per split."""
    horizons = [str(h) for h in metrics["config"]["horizons"]]

    def number(value: Any, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    first = next((e["open_loop"][horizons[0]] for e in metrics["splits"].values() if e.get("open_loop")), {})
    references = references_of(first)
    letters = "m/a/c/r" + ("/x" if CONTEXT_REFERENCE in references else "")
    width = 7 * len(references) + 1
    header = f"{'split':<20}{'win':>5}" + "".join(f"{'psnr@' + h + ' ' + letters:>{width}}" for h in horizons)
    header += f"{'ctrl gap@' + str(metrics['config']['control_horizon']):>16}{'done auroc':>12}"
    legend = "model / model anchored on the last real frame / copy-last / tokenizer recon"
    if CONTEXT_REFERENCE in references:
        legend += " / model drawn on the last real frame by the context decoder"
    lines = [f"perceptual distance: {metrics['perceptual_distance']}  ({letters} = {legend}, dB)",
             header]
    for split, entry in metrics["splits"].items():
        row = f"{split[:19]:<20}{entry['windows']:>5}"
        for h in horizons:
            cell = entry.get("open_loop", {}).get(h)
            row += f"{'-':>{width}}" if cell is None else f"{' / '.join(number(cell[r]['psnr'], 1) for r in references):>{width}}"
        gap = entry.get("controllability", {}).get("psnr_gap")
        row += f"{number(gap):>16}{number(entry['done']['auroc'], 3):>12}"
        lines.append(row)
    return "\n".join(lines)
