"""Batched frame and classification metrics for world-model evaluation.

Frames are channel-last (B, H, W, 3), uint8 in 0..255 or float in [0, 1]; every frame metric
returns one value per frame, (B,), and takes an optional (B, H, W) bool mask that restricts it to
some pixels (the moving ones). A frame whose mask is empty gets NaN, so callers can `nanmean`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PSNR_CAP_DB = 100.0
"""PSNR of identical frames (MSE 0). Any two different 64x64 uint8 frames score below 90 dB, so
the cap only ever marks an exact copy; it keeps means finite."""

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def to_unit_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) in 0..255 or float in [0, 1] -> float32 in [0, 1], same shape."""
    if frames.dtype == torch.uint8:
        return frames.float() / 255.0
    return frames.float()


def _check_pair(frames_a: torch.Tensor, frames_b: torch.Tensor, mask: torch.Tensor | None) -> None:
    if frames_a.shape != frames_b.shape or frames_a.dim() != 4 or frames_a.shape[-1] != 3:
        raise ValueError(
            f"expected two (B, H, W, 3) frame batches of one shape, got {tuple(frames_a.shape)} and "
            f"{tuple(frames_b.shape)}"
        )
    if mask is not None and (mask.dtype != torch.bool or tuple(mask.shape) != tuple(frames_a.shape[:3])):
        raise ValueError(f"mask must be bool {tuple(frames_a.shape[:3])}, got {mask.dtype} {tuple(mask.shape)}")


def psnr(frames_a: torch.Tensor, frames_b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per frame, peak 1 (255 for uint8).

    Args:
        frames_a, frames_b: (B, H, W, 3), uint8 or float in [0, 1].
        mask: optional bool (B, H, W); the MSE is taken over the masked pixels only.

    Returns:
        float32 (B,): capped at PSNR_CAP_DB for identical frames; NaN where the mask is empty.
    """
    _check_pair(frames_a, frames_b, mask)
    squared_error = (to_unit_float(frames_a) - to_unit_float(frames_b)).pow(2)  # (B, H, W, 3)
    if mask is None:
        mse = squared_error.mean(dim=(1, 2, 3))
    else:
        weight = mask[..., None].float()  # (B, H, W, 1)
        count = weight.sum(dim=(1, 2, 3)) * 3
        mse = (squared_error * weight).sum(dim=(1, 2, 3)) / count  # NaN for an empty mask
    return -10.0 * torch.log10(mse.clamp_min(10.0 ** (-PSNR_CAP_DB / 10.0)))


def _gaussian_window(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    window = torch.exp(-coords.pow(2) / (2 * sigma**2))
    return window / window.sum()


def ssim_map(frames_a: torch.Tensor, frames_b: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03).

    The window is reflect-padded so the map has one value per pixel (masks apply directly);
    on frames smaller than 11 pixels it shrinks to the largest odd size that fits.

    Args:
        frames_a, frames_b: (B, H, W, 3), uint8 or float in [0, 1].

    Returns:
        float32 (B, H, W), the SSIM map averaged over the colour channels; 1 where equal.
    """
    _check_pair(frames_a, frames_b, None)
    B, H, W, C = frames_a.shape
    size = min(SSIM_WINDOW, H - (H + 1) % 2, W - (W + 1) % 2)
    a = to_unit_float(frames_a).permute(0, 3, 1, 2).reshape(B * C, 1, H, W)  # (B*3, 1, H, W)
    b = to_unit_float(frames_b).permute(0, 3, 1, 2).reshape(B * C, 1, H, W)
    stacked = torch.cat([a, b, a * a, b * b, a * b])  # (5*B*3, 1, H, W): one blur for all five moments
    window = _gaussian_window(size, SSIM_SIGMA, a.device)
    pad = size // 2
    if pad:
        stacked = F.pad(stacked, (pad, pad, pad, pad), mode="reflect")
    blurred = F.conv2d(F.conv2d(stacked, window.view(1, 1, 1, size)), window.view(1, 1, size, 1))
    mu_a, mu_b, mean_aa, mean_bb, mean_ab = blurred.chunk(5)  # each (B*3, 1, H, W)
    var_a = mean_aa - mu_a * mu_a
    var_b = mean_bb - mu_b * mu_b
    cov = mean_ab - mu_a * mu_b
    numerator = (2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)
    denominator = (mu_a * mu_a + mu_b * mu_b + SSIM_C1) * (var_a + var_b + SSIM_C2)
    return (numerator / denominator).view(B, C, H, W).mean(dim=1)  # (B, H, W)


def ssim(frames_a: torch.Tensor, frames_b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean SSIM per frame, float32 (B,); with a bool (B, H, W) mask, the SSIM map averaged
    over the masked pixels (NaN where the mask is empty). See `ssim_map`."""
    _check_pair(frames_a, frames_b, mask)
    values = ssim_map(frames_a, frames_b)  # (B, H, W)
    if mask is None:
        return values.mean(dim=(1, 2))
    weight = mask.float()
    return (values * weight).sum(dim=(1, 2)) / weight.sum(dim=(1, 2))


def moving_mask(target_frames: torch.Tensor, reference_frames: torch.Tensor, threshold: int) -> torch.Tensor:
    """bool (B, H, W): pixels where some channel of the target differs from the reference by
    more than `threshold` uint8 levels. Both inputs uint8 (B, H, W, 3)."""
    if target_frames.dtype != torch.uint8 or reference_frames.dtype != torch.uint8:
        raise ValueError(f"moving_mask takes uint8 frames, got {target_frames.dtype} and {reference_frames.dtype}")
    _check_pair(target_frames, reference_frames, None)
    difference = (target_frames.to(torch.int16) - reference_frames.to(torch.int16)).abs()
    return difference.amax(dim=-1) > threshold


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve of `scores` for bool `labels` (Mann-Whitney U, ties count half).

    Returns None when only one class is present (the AUROC is undefined).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in size: {scores.shape} vs {labels.shape}")
    num_pos = int(labels.sum())
    num_neg = labels.size - num_pos
    if num_pos == 0 or num_neg == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average_rank = ends - (counts - 1) / 2.0  # 1-based mean rank of each tied group
    ranks = average_rank[inverse]
    return float((ranks[labels].sum() - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg))


def binary_scores(probs: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict[str, float | None]:
    """Precision, recall and F1 of `probs > threshold` against bool `labels`.

    Returns a dict with `precision`, `recall`, `f1` (None where undefined: no predicted or no
    true positives) and the counts `true_positives`, `false_positives`, `false_negatives`.
    """
    predicted = np.asarray(probs).ravel() > threshold
    labels = np.asarray(labels, dtype=bool).ravel()
    tp = int((predicted & labels).sum())
    fp = int((predicted & ~labels).sum())
    fn = int((~predicted & labels).sum())
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return {"precision": precision, "recall": recall, "f1": f1,
            "true_positives": tp, "false_positives": fp, "false_negatives": fn}


def bootstrap_mean_ci(values: np.ndarray, *, samples: int = 2000, level: float = 0.95,
                      seed: int = 0) -> tuple[float, float, float] | None:
    """Mean of `values` and its percentile bootstrap interval (resampling the values).

    Returns (mean, low, high), or None for no values; NaNs are dropped first.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(samples, values.size))].mean(axis=1)  # (samples,)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(values.mean()), float(low), float(high)


def nanmean(values: torch.Tensor | np.ndarray) -> float | None:
    """Mean over the non-NaN entries; None when there are none (JSON-friendly)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


__all__ = [
    "PSNR_CAP_DB", "auroc", "binary_scores", "bootstrap_mean_ci", "moving_mask", "nanmean", "psnr", "ssim",
    "ssim_map", "to_unit_float",
]
