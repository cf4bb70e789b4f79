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


MALLOC_ENV = "ROBOSCAPE_MALLOC"
"""Set to ``default`` to leave glibc's allocator settings alone (see `keep_freed_memory`)."""


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory in the process instead of handing it back after every step.

    PyTorch on the CPU allocates and frees the same large tensors every step (a world model's
    logits at batch 32 are 268 MB). glibc serves large blocks (always those above 32 MB) with their
    own ``mmap`` and returns them with ``munmap``, so every step faults in and zeroes the same pages
    again: the kernel then takes most of a training step's time. Serving everything from the heap and never trimming
    it removes that; ``bench/cpu_allocator.py`` measures the two side by side. The cost is that the
    process keeps its peak memory until it exits.

    Returns whether the settings were applied: not on other C libraries, nor when ``ROBOSCAPE_MALLOC``
    is ``default``. Call it early, before large allocations.
    """
    if os.environ.get(MALLOC_ENV, "") == "default":
        return False
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # from glibc's <malloc.h>
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))
