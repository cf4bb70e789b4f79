"""A tiny procedural frame dataset for tests and smoke runs (no simulator needed)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class SyntheticFrames(Dataset):
    """Tabletop-like uint8 frames (H, W, 3): a shaded background, a table band, a few coloured
    boxes (cubes a few pixels wide), a disk (a goal marker) and a thick line (an arm).

    Frame i is a pure function of (seed, i), so any index order gives the same frames.
    """

    def __init__(self, num_frames: int = 64, image_size: int = 64, seed: int = 0) -> None:
        if num_frames < 1 or image_size < 8:
            raise ValueError(f"need num_frames >= 1 and image_size >= 8, got {num_frames}, {image_size}")
        self.num_frames = num_frames
        self.image_size = image_size
        self.seed = seed

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -self.num_frames <= index < self.num_frames:
            raise IndexError(f"index {index} out of range for {self.num_frames} frames")
        index %= self.num_frames
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        size = self.image_size

        def uniform(low: float, high: float, shape: tuple[int, ...] = ()) -> torch.Tensor:
            return low + (high - low) * torch.rand(shape, generator=gen)

        ys = torch.linspace(0.0, 1.0, size).view(size, 1, 1)
        xs = torch.linspace(0.0, 1.0, size).view(1, size, 1)
        wall, table = uniform(0.2, 0.8, (3,)), uniform(0.2, 0.8, (3,))
        horizon = uniform(0.25, 0.5)
        image = torch.where(ys < horizon, wall * (0.7 + 0.3 * ys), table * (0.8 + 0.2 * xs))  # (H, W, 3)
        image = image.expand(size, size, 3).clone()
        for _ in range(int(torch.randint(1, 4, (), generator=gen))):
            half = uniform(1.5, 6.0, (2,)) / size
            centre = torch.stack([uniform(horizon, 0.95), uniform(0.05, 0.95)])
            inside = ((ys - centre[0]).abs() < half[0]) & ((xs - centre[1]).abs() < half[1])
            image = torch.where(inside, uniform(0.0, 1.0, (3,)), image)
        centre, radius = uniform(0.1, 0.9, (2,)), uniform(2.0, 5.0) / size
        disk = (ys - centre[0]) ** 2 + (xs - centre[1]) ** 2 < radius**2
        image = torch.where(disk, torch.tensor([0.1, 0.8, 0.2]), image)
        start, end = uniform(0.0, 1.0, (2,)), uniform(0.2, 0.8, (2,))
        direction = end - start
        along = ((ys - start[0]) * direction[0] + (xs - start[1]) * direction[1]) / direction.pow(2).sum().clamp_min(1e-6)
        along = along.clamp(0.0, 1.0)
        distance = ((ys - start[0] - along * direction[0]) ** 2 + (xs - start[1] - along * direction[1]) ** 2).sqrt()
        image = torch.where(distance < 2.5 / size, uniform(0.6, 0.95), image)
        return (image * 255.0).round().clamp(0, 255).to(torch.uint8)
