"""The general reward: perceptual alignment with WM_txt's golden trajectory, plus predicted done.

No task-specific code: the goal is whatever WM_txt imagines for the instruction and first frame.
For an episode with golden frames g_1..g_T (``generate_golden``: g_k is the imagined frame after
k steps) and world-model frames x_1, x_2, ... (x_t after the policy's t-th action):

    k(t)       = min(t, T)                      same-index alignment; after the golden
                                                trajectory ends, its last frame is the target
    d_ref      = d(x_0, g_T) + eps              how far the start is from the imagined goal
    align_t    = clip(1 - d(x_t, g_k(t)) / d_ref, -1, 1)                  alignment="absolute"
    align_t    = clip((d(x_0, g_k(t)) - d(x_t, g_k(t))) / d_ref, -1, 1)   alignment="gain"
    r_t        = align_t + done_weight * p_done_t

where d is the perceptual distance (real LPIPS when available, else the LPIPS formula over our
tokenizer's encoder features; ``distance.name`` says which) and p_done_t is WM_act's predicted
done probability after step t. align_t is 1 when the frame matches the golden frame, about 0
when the frame is as far from it as the start is from the goal, and negative when it is further.
Dividing by d_ref makes the scale comparable across tasks and scenes (a small cube moving
changes fewer features than a large arm motion).

"gain" subtracts what the start frame itself would score against the same golden frame: it is the
absolute alignment of x_t minus that of x_0. Holding still earns exactly 0, following the golden
trajectory earns d(x_0, g_k) / d_ref (growing to 1 at its last frame, where both forms agree), and
moving elsewhere earns less than 0. The absolute form instead falls along every real trajectory,
successful or not, because any two trajectories from one start drift apart over time (measured in
`checkpoints/small/README.md`): it pays for holding still. Subtracting a "do nothing" baseline is
the same idea as VLM-RM's baseline projection, applied to a time-indexed goal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from roboscape_r.reward.base import EpisodeContext, WorldModelReward, register_reward
from roboscape_r.tokenizer.perceptual import PerceptualDistance, make_perceptual_distance


ALIGNMENTS = ("absolute", "gain")


@dataclass(frozen=True)
class GeneralRewardConfig:
    """Weights of the general reward."""

    done_weight: float = 1.0
    """Weight of WM_act's predicted done probability in the reward."""
    eps: float = 1e-3
    """Added to d_ref so that a start already at the goal does not divide by zero."""
    alignment: str = "absolute"
    """"absolute": 1 - d(x_t, g_k) / d_ref; "gain": (d(x_0, g_k) - d(x_t, g_k)) / d_ref, the
    improvement over the start frame (see the module docstring)."""

    def __post_init__(self) -> None:
        if self.alignment not in ALIGNMENTS:
            raise ValueError(f"unknown alignment {self.alignment!r}; valid: {', '.join(ALIGNMENTS)}")
        if not self.done_weight >= 0:
            raise ValueError(f"done_weight must be >= 0, got {self.done_weight}")


class GeneralReward(WorldModelReward):
    """Batched general reward for B parallel episodes, one golden trajectory each.

    ``reset(first_frames, golden_frames)`` once per episode, then ``__call__(frames, done_prob)``
    once per step; the step counter is kept here, all B episodes advance together.
    """

    name = "general"
    needs_golden = True

    def __init__(self, distance: PerceptualDistance, config: GeneralRewardConfig = GeneralRewardConfig()):
        self.distance = distance
        self.config = config
        self.golden: torch.Tensor | None = None
        self.d_ref: torch.Tensor | None = None
        self.d_start: torch.Tensor | None = None
        self.t = 0

    @property
    def distance_name(self) -> str:
        """Which perceptual distance ran (recorded in run configs and reports)."""
        return self.distance.name

    @torch.inference_mode()
    def reset(self, context: EpisodeContext) -> None:
        """Start B episodes from context.first_frames with context.golden_frames (B, T, H, W, 3)."""
        first_frames, golden_frames = context.first_frames, context.golden_frames
        if golden_frames is None:
            raise ValueError("the general reward needs the golden trajectory (context.golden_frames); "
                             "generate it with WM_txt")
        if golden_frames.dim() != 5 or first_frames.dim() != 4 or golden_frames.shape[0] != first_frames.shape[0] \
                or golden_frames.shape[2:] != first_frames.shape[1:]:
            raise ValueError(f"expected first_frames (B, H, W, 3) and golden_frames (B, T, H, W, 3) of the same B, "
                             f"H, W; got {tuple(first_frames.shape)} and {tuple(golden_frames.shape)}")
        if golden_frames.shape[1] < 1:
            raise ValueError("the golden trajectory is empty; generate at least one frame")
        self.golden = golden_frames
        self.d_ref = self.distance(first_frames, golden_frames[:, -1]).float() + self.config.eps  # (B,)
        self.d_start = None
        if self.config.alignment == "gain":  # d(x_0, g_k) for every k at once: (B, T)
            B, T = golden_frames.shape[:2]
            starts = first_frames[:, None].expand(golden_frames.shape).reshape(B * T, *golden_frames.shape[2:])
            self.d_start = self.distance(starts, golden_frames.reshape(B * T, *golden_frames.shape[2:])) \
                .float().reshape(B, T)
        self.t = 0

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor, done_prob: torch.Tensor) -> torch.Tensor:
        """Reward float32 (B,) for frames uint8 (B, H, W, 3) after this step and done_prob (B,)."""
        if self.golden is None:
            raise RuntimeError("call reset(context) with a golden trajectory before computing rewards")
        B, T = self.golden.shape[:2]
        if frames.shape != (B, *self.golden.shape[2:]) or done_prob.shape != (B,):
            raise ValueError(f"expected frames {(B, *self.golden.shape[2:])} and done_prob ({B},), "
                             f"got {tuple(frames.shape)} and {tuple(done_prob.shape)}")
        if not torch.isfinite(done_prob).all():
            raise ValueError(f"done_prob has NaN/inf at step {self.t + 1}")
        self.t += 1
        k = min(self.t, T) - 1  # golden entry k is the frame after k + 1 steps
        distance = self.distance(frames, self.golden[:, k]).float()
        baseline = self.d_start[:, k] if self.d_start is not None else self.d_ref
        align = ((baseline - distance) / self.d_ref).clamp(-1.0, 1.0)
        return align + self.config.done_weight * done_prob.float()

    def describe(self) -> dict:
        return {"name": self.name, "distance": self.distance_name, "done_weight": self.config.done_weight,
                "alignment": self.config.alignment,
                "time_alignment": "same index, last golden frame after the trajectory ends"}


def _make_general(tokenizer=None, prefer_lpips: bool = True, done_weight: float = 1.0, alignment: str = "absolute",
                  **_: object) -> GeneralReward:
    """`make_reward("general", tokenizer=..., alignment="absolute"|"gain")`: real LPIPS if installed with
    weights, else tokenizer features."""
    return GeneralReward(make_perceptual_distance(tokenizer, prefer_lpips=prefer_lpips),
                         GeneralRewardConfig(done_weight=float(done_weight), alignment=alignment))


register_reward("general", _make_general)
