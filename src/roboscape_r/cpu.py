"""Process settings for CPU rendering (SAPIEN on Mesa's lavapipe Vulkan driver) and CPU workers."""

from __future__ import annotations

import os

LAVAPIPE_ICD = "/usr/share/vulkan/icd.d/lvp_icd.json"
"""Vulkan driver manifest of lavapipe, the CPU renderer ``scripts/setup.sh`` installs."""


def use_lavapipe() -> None:
    """Render with lavapipe unless ``VK_ICD_FILENAMES`` already names a driver (call before the first env)."""
    os.environ.setdefault("VK_ICD_FILENAMES", LAVAPIPE_ICD)


def init_render_worker() -> None:
    """Set up a worker process that owns one core and renders ManiSkill envs.

    Torch runs on one thread, and lavapipe rasterises in the calling thread (``LP_NUM_THREADS=0``)
    instead of starting a thread pool per process: with one worker per core, those pools only
    contend with the other workers. ``bench/eval_throughput.py`` measures the difference. Must
    run before the process builds its first env; variables the user set are kept.
    """
    import torch

    torch.set_num_threads(1)
    use_lavapipe()
    os.environ.setdefault("LP_NUM_THREADS", "0")
