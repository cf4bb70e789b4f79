"""A Gymnasium vector env whose observations and rewards both come from the world model.

Each reset draws, per env, a real start frame with its task and instruction from the first
frames of dataset episodes (task-balanced over the requested tasks and in-domain scenes, so
one batch mixes tasks and scene variants, as in the paper); when the reward needs one, WM_txt
imagines a golden trajectory from that frame and instruction (cached per (start frame,
instruction), see `GoldenCache`). Each step runs WM_act one frame for all envs at once; the
reward (`roboscape_r.reward`, "general" by default) scores the frames, and an env's episode
ends when WM_act's predicted done probability exceeds `done_threshold` (terminated, and
info["success"]) or after `max_steps_per_episode` steps (truncated).

Synchronous resets. WM_act's rollout keeps one KV cache for the whole batch, so single envs
cannot be reset. An env whose episode ended waits, as padding, until every env has ended:

* step t where env i ends: its real last transition, reward as computed, terminated[i] or
  truncated[i] True, info["valid"][i] True; obs[i] is its final frame.
* every later step until the batch resets: info["valid"][i] False, reward[i] 0,
  terminated[i] = truncated[i] = False, info["success"][i] False, and obs[i] stays its final
  frame (the model still steps it; those frames are discarded). Learners must drop these
  transitions from losses and statistics.
* the step where the last env ends (at the latest the `max_steps_per_episode`-th step, since all
  envs start together) resets the whole batch in the same call (gymnasium 0.29's autoreset):
  obs are the new episodes' first frames. The reset's own info (task, scene, instruction,
  start_index) is merged into info.

In every step where some env ends, info["final_observation"] (an obs dict of (N, ...) arrays)
and info["final_info"] (a dict of (N,) arrays: success, episode_return, episode_length, task)
hold the last observation and episode statistics; only the rows where the masks
info["_final_observation"] / info["_final_info"] are True belong to an ended episode (the
batched form of ManiSkill's vector env, without a per-env Python loop).

So a truncated env always truncates in a step that also resets the batch; its bootstrap
observation is info["final_observation"]. With `autoreset=False` (the single-env wrapper)
the batch is not reset and stepping it again raises until `reset()` is called.

The class subclasses gymnasium 0.29's `gymnasium.vector.VectorEnv` (what gymnasium 0.29's
SyncVectorEnv and CleanRL-style learners use: batched spaces, `single_observation_space`,
same-step autoreset with "final_observation"), not gymnasium.experimental's 1.0-style
VectorEnv, whose next-step autoreset adds an extra step per episode that gymnasium 0.29
clients do not expect. Every step's info also has "valid", "success", "done_prob" and
"elapsed_steps" (N,) arrays.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils import seeding

from roboscape_r.data.format import DatasetError, read_episode
from roboscape_r.data.scenes import TASKS, check_tasks
from roboscape_r.envs.golden_cache import GoldenCache
from roboscape_r.envs.models import WorldModelComponents, load_env_tokenizer, load_env_world_model, resolve_device
from roboscape_r.envs.start_frames import load_start_frames
from roboscape_r.reward.base import EpisodeContext, WorldModelReward, make_reward, reward_names
from roboscape_r.worldmodel.rollout import WorldModelRollout
from roboscape_r.worldmodel.text_encoder import TextEncoder, make_text_encoder


@dataclass(frozen=True)
class WorldModelEnvConfig:
    """Everything that defines a world-model env; saved into run configs via `describe()`."""

    tokenizer_path: Path = Path("checkpoints/small/tokenizer.pt")
    """Tokenizer checkpoint (or run folder) the world models were trained on."""
    wm_act_path: Path = Path("checkpoints/small/wm_act.pt")
    """WM_act checkpoint (or run folder): frames and done probability from actions."""
    wm_txt_path: Path = Path("checkpoints/small/wm_txt.pt")
    """WM_txt checkpoint (or run folder): golden trajectories; loaded only if the reward needs one."""
    wm_txt_spatial_head_path: Path | None = None
    """Spatial head fitted to WM_txt (`roboscape train-spatial-head`): golden frames are then decoded
    token by token, jointly; None decodes each frame's tokens all at once."""
    dataset: Path = Path("data/train")
    """Dataset folder whose episodes' first frames, tasks and instructions start the episodes."""
    tasks: tuple[str, ...] = tuple(TASKS)
    """Tasks to train on; each must have episodes in `dataset` and `scenes`."""
    scenes: tuple[str, ...] = ("in-domain",)
    """Scenes (names, splits or env ids) whose start frames are used."""
    reward: str = "general"
    """Reward name (`roboscape_r.reward.base.reward_names()`), built with make_reward(reward,
    tokenizer=<the env's>, device=<the env's>, dataset=<the env's>, **reward_kwargs)."""
    reward_kwargs: dict[str, bool | int | float | str] = field(default_factory=dict)
    """Extra keyword arguments of the reward's factory (e.g. {"done_weight": 0.5}; on the command
    line: --reward-kwargs done_weight 0.5)."""
    num_envs: int = 16
    """Parallel envs stepped in lockstep (one world-model batch)."""
    max_steps_per_episode: int = 80
    """Steps before an episode is truncated; the expert demos take 69-106 steps (medians per task)."""
    done_threshold: float = 0.5
    """An episode terminates (success) when WM_act's predicted done probability exceeds this."""
    golden_length: int = 80
    """Frames of WM_txt's golden trajectory (the general reward aims at its last frame afterwards).
    A new start frame costs a WM_txt rollout and a tokenizer decode of this many frames, once:
    trajectories are cached."""
    golden_source: Literal["wm_txt", "dataset"] = "wm_txt"
    """Where golden trajectories come from. "wm_txt" (the method): WM_txt imagines them.
    "dataset" (an oracle, for ablations only): the start episode's own recorded frames after the
    first, through the tokenizer like every world-model frame, its last frame repeated when it is
    shorter than golden_length; starts are then drawn from successful episodes only. It measures
    what the rest of the pipeline (distance, WM_act, PPO) does with a perfect golden trajectory."""
    golden_cache_mb: float = 1024.0
    """Bound on cached golden frames (an 80-frame 64x64 trajectory is 0.94 MiB); 0 disables the cache."""
    act_temperature: float = 0.0
    """WM_act sampling temperature; 0 is greedy decoding (as `roboscape eval-wm` scores it)."""
    act_top_k: int | None = None
    """When sampling WM_act, keep only the k most likely tokens (None: all)."""
    txt_temperature: float = 0.0
    """WM_txt sampling temperature for golden trajectories; 0 is greedy."""
    txt_top_k: int | None = None
    """When sampling WM_txt, keep only the k most likely tokens (None: all)."""
    window_keep_frames: int | None = None
    """Frames kept when the rollout's context window slides (None: context_frames // 2)."""
    text_encoder: Literal["minilm", "t5"] = "minilm"
    """Instruction encoder when none is passed in (its embedding is the "instruction" observation)."""
    device: str = "cpu"
    """Torch device of the models ("cpu", "cuda", "cuda:1", or "auto")."""
    seed: int = 0
    """Seed of start-frame sampling and model sampling until `reset(seed=...)` reseeds."""

    def __post_init__(self) -> None:
        for name in ("num_envs", "max_steps_per_episode", "golden_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"WorldModelEnvConfig.{name} must be a positive int, got {value!r}")
        if not 0.0 <= self.done_threshold <= 1.0:
            raise ValueError(f"WorldModelEnvConfig.done_threshold must be in [0, 1], got {self.done_threshold}")
        if self.act_temperature < 0 or self.txt_temperature < 0:
            raise ValueError("WorldModelEnvConfig.act_temperature and txt_temperature must be >= 0 (0 = greedy)")
        if self.golden_source not in ("wm_txt", "dataset"):
            raise ValueError(f"WorldModelEnvConfig.golden_source must be 'wm_txt' or 'dataset', got {self.golden_source!r}")
        if self.golden_cache_mb < 0:
            raise ValueError(f"WorldModelEnvConfig.golden_cache_mb must be >= 0, got {self.golden_cache_mb}")
        check_tasks(list(self.tasks))
        if not self.scenes:
            raise ValueError("WorldModelEnvConfig.scenes is empty; use ('in-domain',) or scene names")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (paths as strings)."""
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}


def make_config(config: WorldModelEnvConfig | None = None, **overrides: Any) -> WorldModelEnvConfig:
    """`config` (default `WorldModelEnvConfig()`) with fields replaced by keyword overrides.

    Raises:
        ValueError: an override that is not a config field (the message lists the fields).
    """
    config = WorldModelEnvConfig() if config is None else config
    fields = {f.name for f in dataclasses.fields(WorldModelEnvConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown WorldModelEnvConfig field(s) {unknown}; valid fields: {', '.join(sorted(fields))}")
    for name in ("tokenizer_path", "wm_act_path", "wm_txt_path", "dataset"):
        if name in overrides:
            overrides[name] = Path(overrides[name])
    for name in ("tasks", "scenes"):
        if name in overrides and not isinstance(overrides[name], str):
            overrides[name] = tuple(overrides[name])
    return dataclasses.replace(config, **overrides)


class WorldModelVectorEnv(gym.vector.VectorEnv):
    """`num_envs` world-model episodes in lockstep; numpy in and out (see the module docstring).

    Observations: {"rgb": uint8 (N, H, W, 3), "instruction": float32 (N, D)}. Actions: float32
    (N, 7) in [-1, 1] (values outside are clipped, as ManiSkill's controller does).

    Args:
        config: the env's config (default `WorldModelEnvConfig()`); keyword `overrides`
            replace its fields, so `gym.make(id, num_envs=64, reward="general")` works.
        text_encoder: instruction encoder (default `make_text_encoder(config.text_encoder)`).
        components: already loaded tokenizer and world models (default: loaded from the
            config's checkpoint paths).
        autoreset: reset the batch when every env has ended (False for the single-env wrapper).
        render_mode: None or "rgb_array" (`render()` returns the current frames).

    Raises:
        ValueError: unknown reward (lists the valid ones) or config field, or models, tokenizer,
            text encoder and dataset that do not fit together.
        roboscape_r.checkpoint.CheckpointError: a missing or wrong checkpoint (names the file).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    """render_fps: ManiSkill's default control frequency, at which the dataset was recorded."""

    def __init__(
        self,
        config: WorldModelEnvConfig | None = None,
        *,
        text_encoder: TextEncoder | None = None,
        components: WorldModelComponents | None = None,
        autoreset: bool = True,
        render_mode: str | None = None,
        **overrides: Any,
    ) -> None:
        config = make_config(config, **overrides)
        if config.reward not in reward_names():
            raise ValueError(f"unknown reward {config.reward!r}; valid rewards: {', '.join(reward_names())}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.config = config
        self.frames_decoded_by = Path(config.tokenizer_path).resolve()
        """Every frame this env returns is already a decoding of this tokenizer: a policy that
        round-trips frames through the same tokenizer (for evaluation on real frames) skips it."""
        self.render_mode = render_mode
        self.autoreset = autoreset
        self.device = resolve_device(config.device)
        if components is None:
            tokenizer = load_env_tokenizer(config, self.device)
            self.reward_fn = self._make_reward(tokenizer)
            components = WorldModelComponents(
                tokenizer, load_env_world_model(config, "act", self.device),
                load_env_world_model(config, "txt", self.device) if self._uses_wm_txt else None,
            )
        else:
            self.reward_fn = self._make_reward(components.tokenizer)
        self.components = components
        self.tokenizer = components.tokenizer
        self.text_encoder = make_text_encoder(config.text_encoder) if text_encoder is None else text_encoder
        components.check(text_dim=self.text_encoder.dim, needs_txt=self._uses_wm_txt, config=config)

        self.starts = load_start_frames(config.dataset, config.tasks, config.scenes,
                                        successful_only=config.golden_source == "dataset")
        components.check_frames(self.starts.image_size, config.dataset)
        unique = sorted(set(self.starts.instructions))
        table = self.text_encoder.encode(unique).to(torch.float32)  # (U, D)
        row = {text: i for i, text in enumerate(unique)}
        self._start_embeddings = table[[row[t] for t in self.starts.instructions]]  # (E, D) on the CPU

        H, W = self.starts.image_size
        single_obs = gym.spaces.Dict({
            "rgb": gym.spaces.Box(0, 255, (H, W, 3), np.uint8),
            "instruction": gym.spaces.Box(-np.inf, np.inf, (self.text_encoder.dim,), np.float32),
        })
        action_dim = components.wm_act.config.action_dim
        super().__init__(config.num_envs, single_obs, gym.spaces.Box(-1.0, 1.0, (action_dim,), np.float32))

        self.rollout = WorldModelRollout(components.wm_act, self.tokenizer, temperature=config.act_temperature,
                                         top_k=config.act_top_k, seed=config.seed,
                                         window_keep_frames=config.window_keep_frames)
        self.golden_rollout = None
        if self._uses_wm_txt:
            head = None
            if config.wm_txt_spatial_head_path is not None:
                from roboscape_r.worldmodel.spatial_head import load_spatial_head

                head = load_spatial_head(config.wm_txt_spatial_head_path, components.wm_txt, self.device)
            self.golden_rollout = WorldModelRollout(components.wm_txt, self.tokenizer,
                                                    temperature=config.txt_temperature, top_k=config.txt_top_k,
                                                    seed=config.seed, window_keep_frames=config.window_keep_frames,
                                                    spatial_head=head)
        self.golden_cache = GoldenCache(int(config.golden_cache_mb * 2**20))
        self._np_random, _ = seeding.np_random(config.seed)
        self._needs_reset = True
        self._actions: torch.Tensor | None = None

    @property
    def _uses_wm_txt(self) -> bool:
        return self.reward_fn.needs_golden and self.config.golden_source == "wm_txt"

    def _make_reward(self, tokenizer: Any) -> WorldModelReward:
        # What every env knows, as defaults; factories ignore the keywords they do not use.
        context = {"tokenizer": tokenizer, "device": str(self.device), "dataset": str(self.config.dataset)}
        return make_reward(self.config.reward, **{**context, **self.config.reward_kwargs})

    # ------------------------------------------------------------------------------ reset

    def reset_wait(self, seed: int | None = None, options: dict | None = None):
        """Reset every env: new start frames, instructions, golden trajectories and model state.

        Args:
            seed: reseeds start sampling and model sampling (one int: resets are synchronous).
            options: {"start_indices": N ints} picks the start frames (indices into `self.starts`).

        Returns:
            (obs, info): info has "task", "scene", "instruction" (str arrays) and "start_index".
        """
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed must be one int for the whole batch (resets are synchronous), got {seed!r}")
        if seed is not None:
            self._np_random, _ = seeding.np_random(int(seed))
        return self._reset_batch(options or {})

    @torch.inference_mode()
    def _reset_batch(self, options: dict) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        N = self.num_envs
        indices = options.get("start_indices")
        if indices is None:
            indices = self.starts.sample(N, self.np_random)
        indices = np.asarray(indices, dtype=np.int64)
        if indices.shape != (N,) or indices.min() < 0 or indices.max() >= len(self.starts):
            raise ValueError(f"options['start_indices'] must be {N} ints in [0, {len(self.starts)}), got {indices}")
        act_seed, txt_seed = (int(s) for s in self.np_random.integers(0, 2**62, size=2))

        rows = torch.from_numpy(indices)
        real_first = self.starts.frames[rows].to(self.device)  # (N, H, W, 3) uint8
        self._embeddings = self._start_embeddings[rows].to(self.device)  # (N, D)
        self._embeddings_np = self._start_embeddings[rows].numpy()
        tasks = [self.starts.tasks[i] for i in indices]
        instructions = [self.starts.instructions[i] for i in indices]
        self._frames = self.rollout.reset(real_first, seed=act_seed)  # (N, H, W, 3) as the tokenizer sees them
        golden = None
        if self.reward_fn.needs_golden:
            golden = self._golden(indices, instructions, real_first, txt_seed)
        self.reward_fn.reset(EpisodeContext(self._frames, tasks, instructions, golden))

        self._active = torch.ones(N, dtype=torch.bool, device=self.device)
        self._elapsed = torch.zeros(N, dtype=torch.long, device=self.device)
        self._returns = torch.zeros(N, dtype=torch.float32, device=self.device)
        self._tasks = np.array(tasks)
        self._needs_reset = False
        info = {"task": self._tasks, "scene": np.array([self.starts.scenes[i] for i in indices]),
                "instruction": np.array(instructions), "start_index": indices}
        return self._observation(), info

    def _golden(self, indices: np.ndarray, instructions: list[str], real_first: torch.Tensor,
                seed: int) -> torch.Tensor:
        """uint8 (N, T, H, W, 3) golden frames, generating only (start, instruction) pairs not cached."""
        keys = [(int(i), text) for i, text in zip(indices, instructions)]
        found = {key: self.golden_cache.get(key) for key in dict.fromkeys(keys)}
        missing = [key for key, frames in found.items() if frames is None]
        generated: list[torch.Tensor] | torch.Tensor = []
        if missing and self.config.golden_source == "dataset":
            generated = [self._recorded_golden(index) for index, _ in missing]
        elif missing:
            position = {key: keys.index(key) for key in missing}
            rows = torch.tensor([position[key] for key in missing], device=self.device)
            generated = self.golden_rollout.generate_golden(
                real_first[rows], self._embeddings[rows], self.config.golden_length, seed=seed
            ).frames_uint8  # (M, T, H, W, 3)
        for key, frames in zip(missing, generated):
            found[key] = frames
            self.golden_cache.put(key, frames)
        return torch.stack([found[key] for key in keys]).to(self.device)

    def _recorded_golden(self, start_index: int) -> torch.Tensor:
        """uint8 (T, H, W, 3): the start episode's recorded frames 1..T through the tokenizer
        (golden_source="dataset"), the last one repeated to golden_length."""
        shard = Path(self.config.dataset) / self.starts.shards[start_index]
        episode = self.starts.episode_indices[start_index]
        frames = read_episode(shard, episode)["frames"][1:self.config.golden_length + 1]
        if len(frames) == 0:
            raise DatasetError(f"episode {episode} of {shard} has no frame after its first; it cannot be a golden "
                               "trajectory")
        frames = torch.from_numpy(np.asarray(frames)).to(self.device)
        decoded = torch.cat([self.tokenizer.decode(self.tokenizer.encode(chunk, inference_mode=True),
                                                   inference_mode=True) for chunk in frames.split(64)])
        pad = self.config.golden_length - decoded.shape[0]
        return torch.cat([decoded, decoded[-1:].expand(pad, *decoded.shape[1:])]) if pad > 0 else decoded

    # ------------------------------------------------------------------------------- step

    def step_async(self, actions: np.ndarray | torch.Tensor) -> None:
        """Check and store actions float (N, action_dim); `step_wait` runs them.

        Raises:
            ValueError: wrong shape or type, or NaN/inf entries (names the envs).
        """
        N, A = self.num_envs, self.single_action_space.shape[0]
        actions = torch.as_tensor(np.asarray(actions) if not isinstance(actions, torch.Tensor) else actions)
        if tuple(actions.shape) != (N, A):
            raise ValueError(f"actions must have shape ({N}, {A}) (num_envs, action_dim), got {tuple(actions.shape)}")
        if actions.dtype == torch.bool or actions.is_complex():
            raise ValueError(f"actions must be real numbers (float32), got {actions.dtype}")
        actions = actions.to(self.device, torch.float32)
        finite = torch.isfinite(actions).all(dim=1)
        if not bool(finite.all()):
            raise ValueError(f"actions of envs {torch.nonzero(~finite).flatten().tolist()} contain NaN or inf")
        self._actions = actions.clamp(-1.0, 1.0)

    @torch.inference_mode()
    def step_wait(self, **kwargs: Any):
        """Run the stored actions one world-model step; returns (obs, reward, terminated, truncated, info)."""
        if self._needs_reset:
            raise RuntimeError("every episode of the batch has ended (or reset() was never called); call reset()")
        if self._actions is None:
            raise RuntimeError("call step_async(actions) before step_wait()")
        actions, self._actions = self._actions, None
        frames, done_prob = self.rollout.step(actions)  # (N, H, W, 3) uint8, (N,)
        valid = self._active  # (N,) envs whose episode was still running before this step
        reward = torch.where(valid, self.reward_fn(frames, done_prob).float(), 0.0)  # (N,)
        self._elapsed += valid.long()
        self._returns += reward
        terminated = valid & (done_prob > self.config.done_threshold)
        truncated = valid & ~terminated & (self._elapsed >= self.config.max_steps_per_episode)
        ended = terminated | truncated
        self._frames = torch.where(valid[:, None, None, None], frames, self._frames)  # padding keeps its last frame
        self._active = valid & ~ended

        obs = self._observation()
        ended_np = _numpy(ended)
        info: dict[str, Any] = {"success": _numpy(terminated), "valid": _numpy(valid),
                                "done_prob": _numpy(done_prob.float()), "elapsed_steps": _numpy(self._elapsed)}
        if ended_np.any():
            self._add_final(info, obs, ended_np)
        if not bool(self._active.any()):
            if self.autoreset:
                obs, reset_info = self._reset_batch({})
                info.update(reset_info)
            else:
                self._needs_reset = True
        return obs, _numpy(reward), _numpy(terminated), _numpy(truncated), info

    def _add_final(self, info: dict[str, Any], obs: dict[str, np.ndarray], ended: np.ndarray) -> None:
        """Batched final observation and info of the envs that ended (rows where `ended`)."""
        info["final_observation"] = obs  # fresh arrays; an autoreset replaces `obs`, not their contents
        info["final_info"] = {"success": info["success"], "episode_return": _numpy(self._returns),
                              "episode_length": _numpy(self._elapsed), "task": self._tasks.copy()}
        info["_final_observation"] = ended.copy()
        info["_final_info"] = ended.copy()

    def _observation(self) -> dict[str, np.ndarray]:
        return {"rgb": _numpy(self._frames), "instruction": self._embeddings_np.copy()}

    # ---------------------------------------------------------------------------- the rest

    def render(self) -> np.ndarray | None:
        """uint8 (N, H, W, 3) current frames when render_mode is "rgb_array", else None."""
        if self.render_mode != "rgb_array" or not hasattr(self, "_frames"):
            return None
        return _numpy(self._frames)

    def describe(self) -> dict[str, Any]:
        """What this env runs, for run configs: config, reward, models, text encoder, start frames."""
        wm_txt = self.components.wm_txt
        tokenizer_config = getattr(self.tokenizer, "config", None)
        return {
            "config": self.config.to_dict(),
            "reward": self.reward_fn.describe(),
            "tokenizer": dataclasses.asdict(tokenizer_config) if dataclasses.is_dataclass(tokenizer_config) else None,
            "wm_act": self.components.wm_act.config.to_dict(),
            "wm_txt": wm_txt.config.to_dict() if wm_txt is not None and self._uses_wm_txt else None,
            "golden": (None if not self.reward_fn.needs_golden else "WM_txt" if self._uses_wm_txt
                       else "ORACLE: the start episode's recorded frames (an ablation, not the method)"),
            "text_encoder": {"class": type(self.text_encoder).__name__, "dim": self.text_encoder.dim},
            "start_frames": self.starts.summary(),
            "device": str(self.device),
            "resets": "synchronous: an env that ended is padding (info['valid'] False) until all have ended",
        }


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    """A numpy copy (never a view of env state that later steps change in place)."""
    return tensor.detach().cpu().numpy().copy()
