"""World-model training data: whole episodes of a dataset folder, tokenised once and cached.

Tokenising on the fly costs a tokenizer forward per frame per step, which dominates CPU training;
episodes are tokenised once here and `train_world_model` crops random clips from them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from roboscape_r.atomic import atomic_path

from roboscape_r.data.dataset import split_episodes
from roboscape_r.data.format import iter_episode_meta, read_episode, read_manifest, sha256_file


def encode_episode(tokenizer, frames: torch.Tensor, hysteresis: float = 0.0, batch_frames: int = 256) -> torch.Tensor:
    """Token ids long (L, h, w) of one episode's uint8 frames (L, H, W, 3), in chunks of `batch_frames`.

    With `hysteresis` > 0 the episode is one sequence for `Tokenizer.encode_sequence`; with 0 any
    tokenizer with `encode` will do (test doubles included)."""
    if hysteresis:
        return tokenizer.encode_sequence(frames, hysteresis=hysteresis, batch_frames=batch_frames)
    return torch.cat([tokenizer.encode(chunk) for chunk in frames.split(batch_frames)])


def tokenized_episodes(root: Path, tokenizer, tokenizer_path: Path, cache_dir: Path, *, split: str = "train",
                       val_fraction: float = 0.1, seed: int = 0, batch_frames: int = 256,
                       hysteresis: float = 0.0, progress: bool = True) -> list[dict]:
    """Episodes of ``root`` as world-model clips, tokenised with ``tokenizer`` and cached.

    Each item: ``tokens`` long (L, h, w) for frames 0..L-1, ``actions`` float32 (L, A),
    ``success``/``done`` bool (L,) (state after action t), ``instruction``, ``task``, ``scene``,
    and ``next_tokens`` (L, h, w) for frames 1..L. Each episode is tokenised as one sequence
    (`Tokenizer.encode_sequence` with ``hysteresis``; 0 is plain `encode`). The cache file is keyed
    by the tokenizer checkpoint's digest, the dataset manifest's digest, the split and the hysteresis.
    ``progress`` shows a bar while tokenising.
    """
    root, cache_dir = Path(root), Path(cache_dir)
    manifest = read_manifest(root)
    key = f"{sha256_file(Path(tokenizer_path))[:16]}-{sha256_file(root / 'manifest.json')[:16]}-{split}-{val_fraction}-{seed}"
    key += f"-h{hysteresis:g}" if hysteresis else ""  # plain caches keep their old names
    cache = cache_dir / f"tokens-{key}.pt"
    if cache.exists():
        return torch.load(cache, weights_only=False)
    metas = [dict(m, shard=shard) for shard, m in iter_episode_meta(manifest)]
    episodes = []
    from tqdm import tqdm

    with torch.no_grad():
        for meta in tqdm(split_episodes(metas, split, val_fraction, seed), desc=f"tokenise {split}", unit="episode",
                         disable=not progress):
            ep = read_episode(root / meta["shard"], meta["episode_index"])
            frames = torch.from_numpy(ep["frames"])
            tokens = encode_episode(tokenizer, frames, hysteresis, batch_frames).to(torch.int16)
            episodes.append({
                "tokens": tokens[:-1], "next_tokens": tokens[1:],
                "actions": torch.from_numpy(ep["actions"]), "success": torch.from_numpy(ep["success"]),
                "done": torch.from_numpy(ep["terminated"] | ep["truncated"]),
                "instruction": meta["instruction"], "task": meta["task"], "scene": meta["scene"],
            })
    with atomic_path(cache) as tmp:
        torch.save(episodes, tmp)
    return episodes


def fit_and_val_episodes(data: Path, val_data: Path | None, tokenizer, tokenizer_path: Path, cache_dir: Path, *,
                         val_fraction: float, split_seed: int, keep: Callable[[dict], bool] | None = None,
                         kept: str = "", hysteresis: float = 0.0, progress: bool = True) -> dict[str, list[dict]]:
    """Tokenised episodes to fit on ("train") and to choose on ("val"), for the frozen-backbone fits.

    With `val_data`, all of `data` and all of `val_data`; without it, an episode split of `data`
    (`val_fraction`, `split_seed`). Both datasets are checked before any tokenising, so a wrong path
    fails at once. `keep` filters episodes (`kept` names the filter in errors, e.g. "successful ").
    `hysteresis`: as in `tokenized_episodes` (the fitted model's `token_hysteresis`); `progress` too.

    Raises:
        roboscape_r.data.format.DatasetError: no dataset at `data` or `val_data`.
        ValueError: a split keeps no episodes.
    """
    for root in (data, val_data):
        if root is not None:
            read_manifest(Path(root))
    if val_data is None:
        splits = {name: tokenized_episodes(Path(data), tokenizer, Path(tokenizer_path), cache_dir, split=name,
                                           val_fraction=val_fraction, seed=split_seed, hysteresis=hysteresis,
                                           progress=progress)
                  for name in ("train", "val")}
    else:
        splits = {name: tokenized_episodes(Path(root), tokenizer, Path(tokenizer_path), cache_dir, split="all",
                                           hysteresis=hysteresis, progress=progress)
                  for name, root in (("train", data), ("val", val_data))}
    if keep is not None:
        splits = {name: [e for e in episodes if keep(e)] for name, episodes in splits.items()}
    for name, episodes in splits.items():
        if not episodes:
            if val_data is None:
                where = f"--data {data} at --val-fraction {val_fraction}"
            else:
                where = f"--data {data}" if name == "train" else f"--val-data {val_data}"
            raise ValueError(f"{where} gives no {kept}{name} episodes")
    return splits

