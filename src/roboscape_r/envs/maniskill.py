"""The real simulator as a training vector env: the `sim` baseline trains its policy in ManiSkill.

`ManiSkillVectorEnv` runs ``num_envs`` single-env ManiSkill instances (CPU simulation) and gives
the observations every policy-facing env of the project gives: ``{"rgb": (N, H, W, 3) uint8,
"instruction": (N, 384) float32}``, actions in the shared 7-D ``pd_ee_delta_pose`` Box(-1, 1).
Rewards are ManiSkill's normalized dense reward; an episode terminates on success and is
truncated at its time limit; finished envs are reset at once, gymnasium's (0.29) vector
convention: the returned observation is the new episode's, the last one is in
``info["final_observation"]`` and its info (with ``episode`` return/length/success) in
``info["final_info"]`` (object arrays), masked by ``info["_final_observation"]``/``info["_final_info"]``.

Several env ids share one vector env: slot ``i`` owns the ids ``env_ids[i::num_envs]`` (or
``env_ids[i % len(env_ids)]`` when there are more slots than ids) and cycles through them at
each reset, so every (task, scene) is trained on even with few slots. Each episode's env seed is
drawn from slot ``i``'s generator ``default_rng([seed, i])`` in the training range (< 2**31),
disjoint from evaluation seeds (see :mod:`roboscape_r.envs.seeds`); its instruction is a
paraphrase of its task drawn from the same generator. Rendering dominates a step and one
ManiSkill env uses one core, so ``num_workers`` > 0 moves the slots into that many processes
(slot ``i`` in process ``i % num_workers``); episodes are the same either way.

Registered as the Gymnasium id ``RoboScapeR/ManiSkill-v0``: ``gymnasium.make(SIM_ENV_ID,
num_envs=2, tasks=[...])`` returns the vector env itself (keyword arguments of
:func:`make_maniskill_vector_env`; the time limit is ``max_steps_per_episode``, because
``gymnasium.make`` consumes ``max_episode_steps`` for a single-env TimeLimit wrapper).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from roboscape_r.data import scenes as S
from roboscape_r.envs.maniskill_slots import ACTION_DIM, LocalHandle, ProcessHandle, SlotGroup, make_held_env

from roboscape_r.envs.registration import SIM_ENV_ID, register_sim_env

__all__ = ["ACTION_DIM", "SIM_ENV_ID", "ManiSkillVectorEnv", "make_held_env", "make_maniskill_vector_env",
           "register_sim_env", "sim_env_ids"]


def _time_limit(uid: str) -> int:
    from mani_skill.utils.registration import REGISTERED_ENVS

    return int(REGISTERED_ENVS[uid].max_episode_steps or S.TASKS[S.task_of_env_id(uid)].max_episode_steps)


class ManiSkillVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` ManiSkill envs behind gymnasium's VectorEnv API with numpy outputs.

    Args:
        env_ids: registered env ids (ours: ``RoboScapeR-<Task>-<scene>-v1``, or a user module's).
        num_envs: number of parallel slots N.
        seed: seeds slot i's episode generator ``default_rng([seed, i])`` (``reset(seed=...)`` reseeds).
        max_episode_steps: time limit of every episode; default: each env id's registered limit.
        text_encoder: instruction encoder (``encode(list[str]) -> (n, dim)``, ``dim``); default:
            ``make_text_encoder()`` (offline MiniLM, 384-d).
        image_size: square frame size.
        num_workers: 0 steps every slot in this process; W > 0 spreads them over W spawned processes.
        env_module: module registering user env ids, imported by the worker processes too.

    Raises:
        ValueError: no env ids, an unregistered env id, ``num_envs < 1``, ``max_episode_steps < 1``
            or ``num_workers`` outside ``[0, num_envs]``.
    """

    def __init__(self, env_ids: Sequence[str], num_envs: int, seed: int = 0, max_episode_steps: int | None = None,
                 text_encoder: Any = None, image_size: int = 64, num_workers: int = 0,
                 env_module: str | None = None) -> None:
        from mani_skill.utils.registration import REGISTERED_ENVS

        S.import_env_module(env_module)
        S.register_all()
        env_ids = list(env_ids)
        if not env_ids:
            raise ValueError(f"env_ids is empty; pass registered env ids such as {S.env_id('PickCube', 'id-default-wood')!r}")
        unknown = [uid for uid in env_ids if uid not in REGISTERED_ENVS]
        if unknown:
            raise ValueError(f"env id(s) {unknown} are not registered; our ids are RoboScapeR-<Task>-<scene>-v1 "
                             "(see `roboscape data scenes`), or pass env_module= to import the module registering yours")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        if not 0 <= num_workers <= num_envs:
            raise ValueError(f"num_workers must be in [0, num_envs={num_envs}], got {num_workers}")
        self.env_ids = env_ids
        self.image_size = int(image_size)
        self.max_episode_steps = max_episode_steps
        if len(env_ids) >= num_envs:
            self.slot_env_ids = [env_ids[i::num_envs] for i in range(num_envs)]
        else:
            self.slot_env_ids = [[env_ids[i % len(env_ids)]] for i in range(num_envs)]
        self._task_of = {uid: S.task_of_env_id(uid) for uid in env_ids}

        if text_encoder is None:
            from roboscape_r.worldmodel.text_encoder import make_text_encoder

            text_encoder = make_text_encoder()
        self._paraphrases = {task: list(S.instructions()[task]) for task in sorted(set(self._task_of.values()))}
        self._embeddings = {task: np.asarray(text_encoder.encode(texts), np.float32)  # task -> (P, D)
                            for task, texts in self._paraphrases.items()}
        dim = int(text_encoder.dim)

        self._elapsed = np.zeros(num_envs, np.int64)
        self._horizon = np.zeros(num_envs, np.int64)
        self._return = np.zeros(num_envs, np.float64)
        self._success_once = np.zeros(num_envs, bool)
        self._episode_seed = np.zeros(num_envs, np.int64)
        self._rgb = np.zeros((num_envs, image_size, image_size, 3), np.uint8)
        self._instruction = np.zeros((num_envs, dim), np.float32)
        self.instructions: list[str] = [""] * num_envs
        """The current episode's instruction text per slot (its embedding is in the observation)."""
        self.current_env_ids: list[str] = [ids[0] for ids in self.slot_env_ids]
        self._needs_reset = True

        groups = max(num_workers, 1)
        self._group_slots = [list(range(g, num_envs, groups)) for g in range(groups)]  # global slot indices
        kwargs = [dict(slot_env_ids=[self.slot_env_ids[i] for i in slots], rng_seeds=[[seed, i] for i in slots],
                       image_size=self.image_size) for slots in self._group_slots]
        if num_workers == 0:
            self._handles: list = [LocalHandle(SlotGroup(**kwargs[0]))]
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            self._handles = [ProcessHandle(ctx, kw, env_module) for kw in kwargs]

        observation_space = gym.spaces.Dict({
            "rgb": gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8),
            "instruction": gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32),
        })
        super().__init__(num_envs, observation_space, gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32))

    # ------------------------------------------------------------------ internals
    def _call(self, calls: dict[int, tuple]) -> dict[int, Any]:
        """Run ``{group: (method, *args)}`` on all groups at once (processes work in parallel)."""
        for g, (method, *args) in calls.items():
            self._handles[g].submit(method, *args)
        return {g: self._handles[g].result() for g in calls}

    def _start_episodes(self, slots_by_group: dict[int, list[int]]) -> None:
        """Reset the given (group-local) slots and record their new episodes."""
        results = self._call({g: ("reset", local) for g, local in slots_by_group.items()})
        for g, local in slots_by_group.items():
            for j, (frame, uid, paraphrase, seed) in zip(local, results[g]):
                i = self._group_slots[g][j]
                task = self._task_of[uid]
                self.current_env_ids[i] = uid
                self.instructions[i] = self._paraphrases[task][paraphrase]
                self._instruction[i] = self._embeddings[task][paraphrase]
                self._rgb[i] = frame
                self._episode_seed[i] = seed
                self._horizon[i] = self.max_episode_steps or _time_limit(uid)
        done = [self._group_slots[g][j] for g, local in slots_by_group.items() for j in local]
        self._elapsed[done], self._return[done], self._success_once[done] = 0, 0.0, False

    def _obs(self) -> dict[str, np.ndarray]:
        return {"rgb": self._rgb.copy(), "instruction": self._instruction.copy()}

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict | None = None):
        """Reset every slot.

        Args:
            seed: an int (slot i's generator becomes ``default_rng([seed, i])``), N ints (slot i's
                becomes ``default_rng(seed[i])``), or None (continue the current generators).

        Returns:
            ``(obs, info)``: obs as in the module docstring; info ``success`` (N,) False and
            ``episode_seed`` (N,) int64.

        Raises:
            ValueError: a seed list whose length is not N.
        """
        if seed is not None:
            if np.isscalar(seed):
                rng_seeds = [[int(seed), i] for i in range(self.num_envs)]
            else:
                rng_seeds = [[int(s)] for s in seed]
                if len(rng_seeds) != self.num_envs:
                    raise ValueError(f"reset got {len(rng_seeds)} seeds for {self.num_envs} envs")
            self._call({g: ("reseed", [rng_seeds[i] for i in slots]) for g, slots in enumerate(self._group_slots)})
        self._start_episodes({g: list(range(len(slots))) for g, slots in enumerate(self._group_slots)})
        self._needs_reset = False
        return self._obs(), {"success": np.zeros(self.num_envs, bool), "episode_seed": self._episode_seed.copy()}

    def step(self, actions: np.ndarray):
        """Step every slot with ``actions`` (N, 7) float in [-1, 1] (clipped); reset finished slots.

        Returns:
            ``(obs, reward (N,) float32, terminated (N,) bool, truncated (N,) bool, info)`` with
            ``info["success"]`` (N,) bool and ``info["elapsed_steps"]`` (N,) of the step taken, and
            ``final_observation``/``final_info`` for the slots that finished (gymnasium 0.29).

        Raises:
            RuntimeError: step before reset, or a worker process failed.
            ValueError: actions of the wrong shape or with NaN/inf entries.
        """
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions, dtype=np.float32)
        n = self.num_envs
        if actions.shape != (n, ACTION_DIM):
            raise ValueError(f"actions must have shape ({n}, {ACTION_DIM}), got {tuple(actions.shape)}")
        if not np.isfinite(actions).all():
            raise ValueError(f"actions contain NaN or inf in env(s) {np.flatnonzero(~np.isfinite(actions).all(1)).tolist()}")
        actions = np.clip(actions, -1.0, 1.0)
        results = self._call({g: ("step", actions[slots]) for g, slots in enumerate(self._group_slots)})
        rewards, terminated, success = np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool)
        for g, slots in enumerate(self._group_slots):
            self._rgb[slots], rewards[slots], terminated[slots], success[slots] = results[g]
        self._elapsed += 1
        self._return += rewards
        self._success_once |= success
        truncated = (self._elapsed >= self._horizon) & ~terminated
        elapsed = self._elapsed.copy()
        info: dict[str, Any] = {"success": success, "elapsed_steps": elapsed}
        done = terminated | truncated
        if done.any():
            final_obs, final_info = np.full(n, None, dtype=object), np.full(n, None, dtype=object)
            for i in np.flatnonzero(done):
                final_obs[i] = {"rgb": self._rgb[i].copy(), "instruction": self._instruction[i].copy()}
                final_info[i] = {
                    "success": bool(success[i]), "elapsed_steps": int(elapsed[i]),
                    "episode_seed": int(self._episode_seed[i]), "env_id": self.current_env_ids[i],
                    "episode": {"r": float(self._return[i]), "l": int(elapsed[i]),
                                "success_once": bool(self._success_once[i])},
                }
            self._start_episodes({g: [j for j, i in enumerate(slots) if done[i]]
                                  for g, slots in enumerate(self._group_slots) if done[slots].any()})
            info.update(final_observation=final_obs, _final_observation=done.copy(),
                        final_info=final_info, _final_info=done.copy())
        return self._obs(), rewards, terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        for handle in getattr(self, "_handles", []):
            handle.close()
        self._handles = []


def sim_env_ids(tasks: Sequence[str] = tuple(S.TASKS), scenes: Sequence[str] = ("in-domain",),
                env_module: str | None = None) -> list[str]:
    """Env ids of ``tasks`` x ``scenes`` (``in-domain``, ``ood``, scene names or registered env ids).

    Raises:
        ValueError: unknown tasks or scenes (the message lists the valid ones).
    """
    S.import_env_module(env_module)
    S.register_all()
    tasks = S.check_tasks(list(tasks))
    ids: list[str] = []
    for scene in S.resolve_scenes(list(scenes)):
        if scene in S.SCENES:
            ids += [S.env_id(t, scene) for t in tasks if S.scene_applies(t, scene)]
        else:
            ids.append(scene)
    return list(dict.fromkeys(ids))


def make_maniskill_vector_env(tasks: Sequence[str] = tuple(S.TASKS), scenes: Sequence[str] = ("in-domain",),
                              num_envs: int = 2, seed: int = 0, env_ids: Sequence[str] | None = None,
                              env_module: str | None = None, max_steps_per_episode: int | None = None,
                              text_encoder: Any = None, image_size: int = 64, num_workers: int = 0,
                              max_episode_steps: int | None = None) -> ManiSkillVectorEnv:
    """The training vector env over ``tasks`` x ``scenes`` (default: every task in the in-domain
    scenes) or over explicit ``env_ids``; the entry point of ``RoboScapeR/ManiSkill-v0``.

    ``max_steps_per_episode`` (or ``max_episode_steps``, which ``gymnasium.make_vec`` passes)
    overrides the registered time limits.
    """
    ids = list(env_ids) if env_ids is not None else sim_env_ids(tasks, scenes, env_module)
    return ManiSkillVectorEnv(ids, num_envs, seed, max_steps_per_episode or max_episode_steps, text_encoder,
                              image_size, num_workers, env_module)


