"""A picture of every scene: one reset frame per task (columns) and scene (rows)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from roboscape_r.data import scenes as S


def render_scene_grid(out_png: Path, image_size: int = 64, seed: int = 1) -> Path:
    """Render the first frame of each (task, scene) at ``seed`` into a labelled PNG grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from roboscape_r.data.collect import make_env
    from roboscape_r.atomic import atomic_save_figure

    S.register_all()
    names = list(S.SCENES)
    fig, axes = plt.subplots(len(names), len(S.TASKS), figsize=(1.4 * len(S.TASKS), 1.45 * len(names)), squeeze=False)
    for r, scene in enumerate(names):
        for c, task in enumerate(S.TASKS):
            ax = axes[r][c]
            ax.set_xticks([]), ax.set_yticks([])
            if S.scene_applies(task, scene):
                env = make_env(S.env_id(task, scene), image_size, S.CONTROL_MODE)
                obs, _ = env.reset(seed=seed)
                ax.imshow(obs["sensor_data"]["base_camera"]["rgb"][0].cpu().numpy())
                env.close()
            else:
                ax.imshow(np.zeros((image_size, image_size, 3), np.uint8))
                ax.text(0.5, 0.5, "n/a", color="white", ha="center", va="center", transform=ax.transAxes)
            if r == 0:
                ax.set_title(task, fontsize=8)
            if c == 0:
                ax.set_ylabel(scene, fontsize=6)
    fig.tight_layout()
    return atomic_save_figure(fig, out_png, dpi=110)
