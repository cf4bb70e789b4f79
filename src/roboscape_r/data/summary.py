"""`roboscape data summary`: counts, success rates and a contact sheet of a dataset folder."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from roboscape_r.atomic import atomic_save_figure, atomic_write_json
from roboscape_r.data.format import iter_episode_meta, read_episode, read_manifest


def summarize(root: Path) -> dict:
    """Counts per task/scene/source, success rates, episode lengths; JSON-serialisable."""
    manifest = read_manifest(root)
    metas = [m for _, m in iter_episode_meta(manifest)]
    summary: dict = {"episodes": len(metas), "frames": sum(m["length"] + 1 for m in metas),
                     "image_size": manifest["config"].get("image_size")}
    for key in ("task", "scene", "source"):
        groups = defaultdict(list)
        for m in metas:
            groups[m[key]].append(m)
        summary[f"by_{key}"] = {
            name: {"episodes": len(ms),
                   "success_once": float(np.mean([m["success_once"] for m in ms])),
                   "success_at_end": float(np.mean([m["success_at_end"] for m in ms])),
                   "mean_length": float(np.mean([m["length"] for m in ms]))}
            for name, ms in sorted(groups.items())
        }
    lengths = [m["length"] for m in metas]
    summary["length"] = {"min": int(min(lengths)), "max": int(max(lengths)), "mean": float(np.mean(lengths))} if metas else {}
    return summary


def format_summary(summary: dict) -> str:
    lines = [f"{summary['episodes']} episodes, {summary['frames']} frames, {summary['image_size']}px"]
    for key in ("task", "scene", "source"):
        lines.append(f"\nby {key}:")
        lines.append(f"  {'name':<24}{'episodes':>9}{'success_once':>14}{'success_end':>13}{'mean_len':>10}")
        for name, row in summary[f"by_{key}"].items():
            lines.append(f"  {name:<24}{row['episodes']:>9}{row['success_once']:>14.2f}"
                         f"{row['success_at_end']:>13.2f}{row['mean_length']:>10.1f}")
    if summary["length"]:
        lines.append(f"\nlength: min {summary['length']['min']}, mean {summary['length']['mean']:.1f}, "
                     f"max {summary['length']['max']}")
    return "\n".join(lines)


def contact_sheet(root: Path, out_png: Path, scale: int = 2) -> Path:
    """PNG grid: one row per (task, scene), first and last frame of its first episode of each source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    manifest = read_manifest(root)
    first: dict = {}
    for shard, m in iter_episode_meta(manifest):
        first.setdefault((m["task"], m["scene"]), {}).setdefault(m["source"], (shard, m))
    rows = sorted(first)
    sources = sorted({s for per in first.values() for s in per})
    fig, axes = plt.subplots(len(rows), 2 * len(sources), squeeze=False,
                             figsize=(1.1 * scale * len(sources), 1.1 * scale * len(rows) / 2 + 0.6))
    for r, key in enumerate(rows):
        for c, source in enumerate(sources):
            for j, which in enumerate(("first", "last")):
                ax = axes[r][2 * c + j]
                ax.set_xticks([]), ax.set_yticks([])
                if source in first[key]:
                    shard, m = first[key][source]
                    frames = read_episode(Path(root) / shard, m["episode_index"])["frames"]
                    ax.imshow(frames[0] if which == "first" else frames[-1])
                    ok = "ok" if m["success_at_end"] else "fail"
                    ax.set_xlabel(f"{source} {which}" + (f" ({ok})" if which == "last" else ""), fontsize=6)
                else:
                    ax.set_frame_on(False)  # keep the axis so the row label stays visible
        axes[r][0].set_ylabel(f"{key[0]}\n{key[1]}", fontsize=6)
    fig.tight_layout()
    return atomic_save_figure(fig, out_png, dpi=100)


def write_summary(root: Path) -> tuple[dict, Path]:
    """Write ``summary.json`` and ``contact_sheet.png`` into ``root``; returns both."""
    root = Path(root)
    summary = summarize(root)
    atomic_write_json(root / "summary.json", summary)
    return summary, contact_sheet(root, root / "contact_sheet.png")
