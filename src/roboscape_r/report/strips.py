"""Figs. 4 and 5: frame strips of evaluation episodes, in-domain and OOD, one row per method.

The strips are the PNGs `roboscape eval` wrote (:func:`roboscape_r.eval.videos.frame_strip`: a
frame every few steps, bordered green from the first successful step, grey before). The episode
shown for a (method, split) is chosen deterministically: the seeds of the method in ascending
order, then the eval's video list in its own (plan) order; the first one of that split whose
strip file exists is taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from roboscape_r.report.run_folder import RunData


@dataclass(frozen=True)
class StripExample:
    """One episode's frame strip chosen for a figure."""

    method: str
    seed: int
    task: str
    scene: str
    episode_index: int
    split: str
    success_once: bool | None
    """From the episode's record; None if the record was not found."""
    success_at_end: bool | None
    path: Path


def first_strip(eval_dir: Path, results: dict, split: str) -> tuple[dict, Path] | None:
    """The episode record and strip path of the first video of `split` in an evaluation's video list
    whose strip file exists in `eval_dir`, or None."""
    records = {(e.get("env_id"), e.get("episode_index")): e for e in results.get("episodes", [])}
    for video in results.get("videos", []):
        record = records.get((video.get("env_id"), video.get("episode_index")))
        strip = video.get("strip")
        if record is None or record.get("split") != split or not strip:
            continue
        if (eval_dir / strip).is_file():
            return record, eval_dir / strip
    return None


def choose_strips(run: RunData, split: str) -> list[StripExample]:
    """The strip shown for each method in `split` ("in-domain" or "ood"), methods in run order;
    methods without a strip of that split are left out."""
    chosen = []
    for method in run.methods:
        for cell in run.cells_of(method):
            found = first_strip(cell.path / "eval", cell.eval_results or {}, split)
            if found is not None:
                record, path = found
                chosen.append(StripExample(method, cell.seed, str(record["task"]), str(record["scene"]),
                                           int(record["episode_index"]), split, record.get("success_once"),
                                           record.get("success_at_end"), path))
                break
    return chosen


def _mark(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def strip_label(example: StripExample) -> str:
    """The caption line of one strip row."""
    return (f"{example.method} (seed {example.seed}): {example.task}, scene {example.scene}, "
            f"episode {example.episode_index}; success_once {_mark(example.success_once)}, "
            f"success_at_end {_mark(example.success_at_end)}")


def write_strip_figure(path: str | Path, examples: list[StripExample], title: str) -> Path | None:
    """Stack the strips of `examples` into one PNG (atomically), a label above each row.

    Returns:
        The path, or None when `examples` is empty.

    Raises:
        ValueError: a strip PNG that cannot be read (the message names it).
    """
    if not examples:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    from roboscape_r.atomic import atomic_save_figure

    images = []
    for example in examples:
        try:
            images.append(mpimg.imread(example.path))
        except (OSError, ValueError, SyntaxError) as error:
            raise ValueError(f"cannot read the frame strip {example.path}: {error}") from error
    # Every row shares one pixel scale, the widest strip filling the width; explicit axes positions
    # (no tight_layout) keep the label lines from squeezing small strips.
    dpi = 100
    width_px = max(image.shape[1] for image in images)
    fig_width = max(10.0, width_px / dpi)
    label_in, title_in = 0.28, 0.4
    image_in = [fig_width * image.shape[0] / width_px for image in images]
    fig_height = title_in + sum(label_in + h for h in image_in) + 0.1
    fig = plt.figure(figsize=(fig_width, fig_height))
    fig.text(0.5, 1 - 0.2 / fig_height, title + " (frame border green from the first successful step, grey before)",
             ha="center", va="center", fontsize=9)
    top = fig_height - title_in
    for image, height, example in zip(images, image_in, examples):
        fig.text(0.005, (top - label_in / 2) / fig_height, strip_label(example), fontsize=8, va="center")
        top -= label_in + height
        axis = fig.add_axes((0.0, top / fig_height, 1.0, height / fig_height))
        axis.imshow(image, interpolation="nearest", aspect="auto", extent=(-0.5, image.shape[1] - 0.5,
                                                                          image.shape[0] - 0.5, -0.5))
        axis.set_xlim(-0.5, width_px - 0.5)
        axis.set_ylim(image.shape[0] - 0.5, -0.5)
        axis.axis("off")
    return atomic_save_figure(fig, path, dpi=dpi)
