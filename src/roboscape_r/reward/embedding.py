"""The embedding reward (VLM-RM / VIP family): goal similarity in a frozen image encoder.

VLM-RM rewards a frame by the similarity of its CLIP embedding to a goal embedding; VIP by the
change of such a similarity from one frame to the next. No pretrained image network can be
downloaded here, so the frozen encoder is **our trained tokenizer's encoder** (its multi-scale
feature maps, `TokenizerFeatureDistance.features`); `describe()` names it and the fingerprint of
its weights.

Embedding of a frame x (channel-last uint8):

    f_1(x) .. f_M(x)   the encoder's M feature maps (stem and every resolution level)
    p_i(x)             f_i(x) average-pooled to pool_size x pool_size, flattened
    e(x)               concat_i p_i(x) / ||p_i(x)||, divided by sqrt(M) (so ||e(x)|| = 1)

Goal and baseline of a task, from the training dataset (computed once, saved as JSON):

    g_task = mean of e(last frame) over successful expert demos of the task
    b_task = mean of e(first frame) over the same demos

Reward after step t (x_0 the first frame, x_t the frame after the t-th action):

    S(x)  = <e(x) - b_task, g_task - b_task> / (||g_task - b_task||^2 + eps)
    r_t   = S(x_t)                     mode "similarity" (default, VLM-RM)
    r_t   = S(x_t) - S(x_{t-1})        mode "vip" (VIP's shaped form with gamma = 1)

S is the position of the frame on the line from the typical start (0) to the typical goal
(1). Projecting on the goal-minus-baseline direction is VLM-RM's goal-baseline regularisation
(with the start frames as the baseline instead of a baseline prompt): a plain cosine with the
goal is dominated by what all frames of a scene share (table, lighting), and barely moves
while the task progresses. The done probability is not used.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from roboscape_r.atomic import atomic_write_json
from roboscape_r.reward.base import EpisodeContext, WorldModelReward, register_reward
from roboscape_r.tokenizer.model import Tokenizer, to_model_space
from roboscape_r.tokenizer.perceptual import TokenizerFeatureDistance

ENCODER_NAME = "tokenizer-encoder-pooled-features"
"""What `describe()` reports as the encoder: our tokenizer's encoder, not a pretrained network."""

GOALS_FORMAT = 1
"""Version of the goal-embedding file layout."""


@dataclass(frozen=True)
class EmbeddingRewardConfig:
    """Settings of the embedding reward."""

    mode: Literal["similarity", "vip"] = "similarity"
    """'similarity': r_t = S(x_t); 'vip': r_t = S(x_t) - S(x_{t-1}) (see the module docstring)."""
    pool_size: int = 4
    """Each feature map is average-pooled to pool_size x pool_size before normalising (1 = global pooling).

    Measured on 62 held-out episodes, mean Spearman of S with progress along successful episodes
    for pool sizes 1 / 2 / 4: first small tokenizer 0.41 / 0.73 / 0.77 in-domain and 0.38 / 0.60 /
    0.66 OOD; augmented small tokenizer 0.65 / 0.83 / 0.80 and 0.33 / 0.63 / 0.62 (a plain cosine
    with the goal, pool 2, first tokenizer: 0.19 and 0.11). Global pooling throws away where the
    arm and the cube are."""
    final_frames: int = 1
    """Goal embedding: the mean over this many last frames of each successful expert demo."""
    sources: tuple[str, ...] = ("expert",)
    """Dataset sources whose successful episodes define the goals (`source` attribute of an episode)."""
    batch_size: int = 256
    """Frames per encoder forward when computing goals."""
    eps: float = 1e-6
    """Added to ||g - b||^2 so that a task whose start and goal embed alike does not divide by zero."""

    def __post_init__(self) -> None:
        if self.mode not in ("similarity", "vip"):
            raise ValueError(f"embedding reward mode must be 'similarity' or 'vip', got {self.mode!r}")
        for name in ("pool_size", "final_frames", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"EmbeddingRewardConfig.{name} must be a positive int, got {value!r}")
        if not self.sources:
            raise ValueError("EmbeddingRewardConfig.sources must name at least one dataset source, e.g. ('expert',)")


def encoder_fingerprint(tokenizer: Tokenizer) -> str:
    """sha256 (hex, 16 chars) of the tokenizer encoder's weights: ties goal files to one encoder."""
    digest = hashlib.sha256()
    for name, tensor in tokenizer.encoder.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class TokenizerEmbedding(torch.nn.Module):
    """Frozen frame embedder: pooled, per-map unit-normalised tokenizer-encoder features.

    `forward(frames_uint8 (B, H, W, 3)) -> float32 (B, D)` with unit-norm rows,
    D = pool_size^2 * (sum of the feature maps' channels).
    """

    def __init__(self, tokenizer: Tokenizer, pool_size: int = 4) -> None:
        super().__init__()
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        # TokenizerFeatureDistance keeps a frozen copy of the encoder and checks the frame size.
        self.features = TokenizerFeatureDistance(tokenizer)
        self.pool_size = pool_size
        self.image_size = tokenizer.config.image_size
        self.fingerprint = encoder_fingerprint(tokenizer)

    @torch.inference_mode()
    def forward(self, frames_uint8: torch.Tensor) -> torch.Tensor:
        if frames_uint8.dtype != torch.uint8 or frames_uint8.dim() != 4 or frames_uint8.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames (B, H, W, 3), got {frames_uint8.dtype} "
                             f"{tuple(frames_uint8.shape)}")
        device = next(self.features.parameters()).device
        maps = self.features.features(to_model_space(frames_uint8.to(device)))  # [(B, C_i, H_i, W_i)]
        parts = [F.normalize(F.adaptive_avg_pool2d(m.float(), self.pool_size).flatten(1), dim=1) for m in maps]
        return torch.cat(parts, dim=1) / math.sqrt(len(parts))  # (B, D)

    def embed_many(self, frames_uint8: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Embed any number of frames (N, H, W, 3) in chunks; float32 (N, D) on the CPU."""
        return torch.cat([self(chunk).cpu() for chunk in frames_uint8.split(batch_size)])


@dataclass
class GoalEmbeddings:
    """Per-task goal and baseline embeddings, and how they were made."""

    goals: dict[str, torch.Tensor]
    """task -> float32 (D,): mean embedding of the final frames of successful demos."""
    baselines: dict[str, torch.Tensor]
    """task -> float32 (D,): mean embedding of the first frames of the same demos."""
    encoder_fingerprint: str
    """`encoder_fingerprint` of the tokenizer that embedded the frames."""
    pool_size: int
    final_frames: int
    episodes: dict[str, int] = field(default_factory=dict)
    """task -> number of demos averaged."""
    dataset: str = ""
    """Folder the demos came from."""

    def save(self, path: str | Path) -> Path:
        """Write as JSON, atomically."""
        atomic_write_json(path, {
            "format": GOALS_FORMAT, "encoder": ENCODER_NAME, "encoder_fingerprint": self.encoder_fingerprint,
            "pool_size": self.pool_size, "final_frames": self.final_frames, "dataset": self.dataset,
            "episodes": self.episodes,
            "goals": {task: _float32_list(vector) for task, vector in self.goals.items()},
            "baselines": {task: _float32_list(vector) for task, vector in self.baselines.items()},
        })
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> GoalEmbeddings:
        """Read a file written by `save`.

        Raises:
            ValueError: missing, unreadable or not a goal-embedding file.
        """
        import json

        path = Path(path)
        if not path.is_file():
            raise ValueError(f"goal-embedding file {path} does not exist; compute it from a training dataset "
                             "(make_reward('embedding', tokenizer=..., dataset=DIR, goals=PATH))")
        try:
            raw = json.loads(path.read_text())
            if raw.get("format") != GOALS_FORMAT:
                raise ValueError(f"format {raw.get('format')!r}, expected {GOALS_FORMAT}")
            return cls(
                goals={t: torch.tensor(v, dtype=torch.float32) for t, v in raw["goals"].items()},
                baselines={t: torch.tensor(v, dtype=torch.float32) for t, v in raw["baselines"].items()},
                encoder_fingerprint=raw["encoder_fingerprint"], pool_size=int(raw["pool_size"]),
                final_frames=int(raw["final_frames"]), episodes=dict(raw.get("episodes", {})),
                dataset=str(raw.get("dataset", "")),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is not a goal-embedding file ({error}); delete it and compute it again") from error

    def check_compatible(self, embedder: TokenizerEmbedding, config: EmbeddingRewardConfig, source: str) -> None:
        """Raise ValueError unless these goals were embedded by `embedder` with `config`'s settings."""
        if self.encoder_fingerprint != embedder.fingerprint:
            raise ValueError(f"goal embeddings {source} were computed with another tokenizer (encoder "
                             f"{self.encoder_fingerprint}, this one is {embedder.fingerprint}); recompute them "
                             "from the training dataset with this tokenizer")
        if (self.pool_size, self.final_frames) != (config.pool_size, config.final_frames):
            raise ValueError(f"goal embeddings {source} use pool_size {self.pool_size}, final_frames "
                             f"{self.final_frames} but the reward is set to {config.pool_size}, "
                             f"{config.final_frames}; recompute them or change the settings")


def compute_goal_embeddings(dataset_dir: str | Path, embedder: TokenizerEmbedding,
                            config: EmbeddingRewardConfig = EmbeddingRewardConfig(), *,
                            progress: bool = True) -> GoalEmbeddings:
    """Goal and baseline embedding of every task with successful demos in a dataset.

    A demo is an episode whose `source` is in config.sources and whose last step is a success;
    its last config.final_frames frames feed the goal, its first frame the baseline.

    Raises:
        roboscape_r.data.format.DatasetError: no dataset at `dataset_dir` or a corrupt shard.
        ValueError: no successful demo of any task in the dataset.
    """
    from roboscape_r.data.format import iter_episode_meta, read_episode, read_manifest

    root = Path(dataset_dir)
    metas = [(shard, meta) for shard, meta in iter_episode_meta(read_manifest(root))
             if meta["source"] in config.sources and meta["success_at_end"]]
    if not metas:
        raise ValueError(f"dataset {root} has no successful episodes from sources {list(config.sources)}; the "
                         "embedding reward's goals need successful demos (collect expert episodes, or set sources)")
    goal_sums: dict[str, torch.Tensor] = {}
    baseline_sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = defaultdict(int)
    pending: list[tuple[str, np.ndarray]] = []  # (task, frames (final_frames + 1, H, W, 3)), first frame first

    def flush() -> None:
        frames = torch.from_numpy(np.concatenate([f for _, f in pending]))
        embeddings = embedder.embed_many(frames, config.batch_size).split(config.final_frames + 1)
        for (task, _), rows in zip(pending, embeddings):
            goal = rows[1:].mean(dim=0)
            goal_sums[task] = goal_sums.get(task, 0) + goal
            baseline_sums[task] = baseline_sums.get(task, 0) + rows[0]
            counts[task] += 1
        pending.clear()

    for shard, meta in tqdm(metas, desc="goal embeddings", unit="demo", disable=not progress):
        frames = read_episode(root / shard, meta["episode_index"])["frames"]  # (L+1, H, W, 3)
        pending.append((meta["task"], np.concatenate([frames[:1], frames[-config.final_frames:]])))
        if len(pending) * (config.final_frames + 1) >= config.batch_size:
            flush()
    if pending:
        flush()
    return GoalEmbeddings(
        goals={t: (goal_sums[t] / counts[t]).float() for t in sorted(counts)},
        baselines={t: (baseline_sums[t] / counts[t]).float() for t in sorted(counts)},
        encoder_fingerprint=embedder.fingerprint, pool_size=embedder.pool_size, final_frames=config.final_frames,
        episodes=dict(sorted(counts.items())), dataset=str(root),
    )


class EmbeddingReward(WorldModelReward):
    """Batched embedding reward for B parallel episodes (equation in the module docstring)."""

    name = "embedding"
    needs_golden = False

    def __init__(self, embedder: TokenizerEmbedding, goals: GoalEmbeddings,
                 config: EmbeddingRewardConfig = EmbeddingRewardConfig(), *, goals_source: str = "") -> None:
        goals.check_compatible(embedder, config, goals_source or "(in memory)")
        self.embedder = embedder
        self.goals = goals
        self.config = config
        self.goals_source = goals_source
        self._goal: torch.Tensor | None = None  # (B, D) g - b
        self._baseline: torch.Tensor | None = None  # (B, D)
        self._scale: torch.Tensor | None = None  # (B,) ||g - b||^2 + eps
        self._previous: torch.Tensor | None = None  # (B,) S(x_{t-1}) for mode "vip"

    def score(self, frames: torch.Tensor) -> torch.Tensor:
        """S(x) float32 (B,) of frames uint8 (B, H, W, 3) for the tasks of the last reset."""
        if self._goal is None:
            raise RuntimeError("call reset(context) before computing rewards")
        embedding = self.embedder(frames).to(self._goal.device)  # (B, D)
        return ((embedding - self._baseline) * self._goal).sum(dim=1) / self._scale

    @torch.inference_mode()
    def reset(self, context: EpisodeContext) -> None:
        """Look up the goal of each env's task; raises ValueError for a task without goals."""
        missing = sorted(set(context.tasks) - set(self.goals.goals))
        if missing:
            raise ValueError(f"no goal embedding for task(s) {missing}; the goals ({self.goals_source or 'in memory'}) "
                             f"cover {sorted(self.goals.goals)}: compute them from a dataset with successful demos "
                             "of these tasks")
        goal = torch.stack([self.goals.goals[t] for t in context.tasks])  # (B, D)
        self._baseline = torch.stack([self.goals.baselines[t] for t in context.tasks])  # (B, D)
        self._goal = goal - self._baseline
        self._scale = self._goal.pow(2).sum(dim=1) + self.config.eps
        self._previous = self.score(context.first_frames) if self.config.mode == "vip" else None

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor, done_prob: torch.Tensor) -> torch.Tensor:
        """Reward float32 (B,) for frames uint8 (B, H, W, 3) after a step; done_prob (B,) is not used."""
        if self._goal is None:
            raise RuntimeError("call reset(context) before computing rewards")
        B = self._goal.shape[0]
        if frames.dim() != 4 or frames.shape[0] != B or done_prob.shape != (B,):
            raise ValueError(f"expected frames (B={B}, H, W, 3) and done_prob ({B},), got {tuple(frames.shape)} "
                             f"and {tuple(done_prob.shape)}")
        current = self.score(frames)
        if self.config.mode == "similarity":
            return current.float()
        reward = current - self._previous
        self._previous = current
        return reward.float()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "encoder": ENCODER_NAME, "encoder_fingerprint": self.embedder.fingerprint,
                "mode": self.config.mode, "pool_size": self.config.pool_size,
                "final_frames": self.config.final_frames, "goals": self.goals_source or "in memory",
                "goal_episodes": self.goals.episodes,
                "equation": "S(x) = <e(x)-b, g-b>/||g-b||^2; r_t = S(x_t)" if self.config.mode == "similarity"
                else "S(x) = <e(x)-b, g-b>/||g-b||^2; r_t = S(x_t) - S(x_{t-1})"}


def make_embedding_reward(tokenizer: Tokenizer | None = None, goals: str | Path | None = None,
                          dataset: str | Path | None = None, mode: str = "similarity", pool_size: int = 4,
                          final_frames: int = 1, progress: bool = False, **_: object) -> EmbeddingReward:
    """`make_reward("embedding", tokenizer=..., goals=FILE, dataset=DIR)`.

    Args:
        tokenizer: the trained tokenizer whose encoder embeds frames (required).
        goals: goal-embedding JSON file; read if it exists, else computed from `dataset` and written here.
        dataset: training dataset folder to compute the goals from (when `goals` is absent or missing).
        mode, pool_size, final_frames: see EmbeddingRewardConfig.
        progress: show a progress bar while computing goals.

    Raises:
        ValueError: no tokenizer, neither an existing goals file nor a dataset, goals from another
            tokenizer or with other settings, or a dataset without successful demos.
    """
    if tokenizer is None:
        raise ValueError("the embedding reward needs a trained tokenizer (tokenizer=load_tokenizer(path)): its "
                         "encoder is the frozen image encoder")
    config = EmbeddingRewardConfig(mode=mode, pool_size=pool_size, final_frames=final_frames)  # type: ignore[arg-type]
    embedder = TokenizerEmbedding(tokenizer, pool_size).to(_device_of(tokenizer))
    if goals is not None and Path(goals).is_file():
        return EmbeddingReward(embedder, GoalEmbeddings.load(goals), config, goals_source=str(goals))
    if dataset is None:
        raise ValueError(f"the embedding reward needs goal embeddings: pass goals=FILE (missing: {goals}) or "
                         "dataset=DIR (a training dataset with successful expert demos) to compute them")
    computed = compute_goal_embeddings(dataset, embedder, config, progress=progress)
    if goals is not None:
        computed.save(goals)
    return EmbeddingReward(embedder, computed, config, goals_source=str(goals or f"computed from {dataset}"))


def _float32_list(vector: torch.Tensor) -> list[float]:
    # 8 significant digits keep a float32 to within 1e-9 here and shrink the file (1.4 MB -> 1.0 MB at pool 4).
    return [float(f"{value:.8g}") for value in vector.tolist()]


def _device_of(module: torch.nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")


register_reward("embedding", make_embedding_reward)
