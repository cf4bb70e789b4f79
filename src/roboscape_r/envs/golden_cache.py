"""A bounded LRU cache of golden trajectories, keyed by (start frame, instruction).

WM_txt's golden trajectory depends only on the start frame and the instruction (and the
sampling seed), and the same starts recur every few resets, so regenerating it would cost a
full WM_txt rollout plus a tokenizer decode of T frames per env and reset. Frames are cached
decoded (uint8), because decoding is the expensive half on a CPU; the cache is bounded by
bytes, so its size in entries follows from the trajectory length and frame size.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

import torch


class GoldenCache:
    """LRU map key -> uint8 (T, H, W, 3) golden frames, holding at most `max_bytes` of frames.

    Args:
        max_bytes: bound on the bytes of all stored trajectories (0 disables caching).
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get(self, key: Hashable) -> torch.Tensor | None:
        """The stored frames of `key` (marked most recently used), or None; counts a hit or a miss."""
        frames = self._entries.get(key)
        if frames is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return frames

    def put(self, key: Hashable, frames: torch.Tensor) -> None:
        """Store a copy of `frames` under `key`, evicting least recently used entries to stay in bounds.

        A copy, because a slice of a batch would keep the whole batch alive and break the bound.
        A trajectory larger than the whole bound is not stored.
        """
        size = frames.numel() * frames.element_size()
        if size > self.max_bytes:
            return
        if key in self._entries:
            self.bytes -= self._nbytes(self._entries.pop(key))
        while self._entries and self.bytes + size > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= self._nbytes(evicted)
        self._entries[key] = frames.clone()
        self.bytes += size

    def clear(self) -> None:
        """Drop every entry (hit and miss counts are kept)."""
        self._entries.clear()
        self.bytes = 0

    @staticmethod
    def _nbytes(frames: torch.Tensor) -> int:
        return frames.numel() * frames.element_size()
