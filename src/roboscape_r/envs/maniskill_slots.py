"""Where the slots of the ManiSkill training vector env live: in this process or in workers.

A `SlotGroup` owns some slots of `roboscape_r.envs.maniskill.ManiSkillVectorEnv`: their envs
(built lazily, one per slot and env id), their episode-seed generators and their env-id cycles.
The vector env talks to every group through the same ``submit(method, *args)`` / ``result()``
calls, whether the group is in this process (`LocalHandle`) or in a spawned worker process
(`ProcessHandle`, one ManiSkill renderer per core): all groups work at once, then their results
are gathered.
"""

from __future__ import annotations

import traceback
from typing import Any

import numpy as np

from roboscape_r.cpu import init_render_worker
from roboscape_r.data import scenes as S
from roboscape_r.envs.seeds import train_seed

ACTION_DIM = 7
"""Size of the shared ``pd_ee_delta_pose`` action."""


def frame_of(obs: dict) -> np.ndarray:
    """(H, W, 3) uint8 frame of the first camera of a single-env ManiSkill observation."""
    return next(iter(obs["sensor_data"].values()))["rgb"][0].cpu().numpy()


_HELD_RENDER_SYSTEM: list = []


def make_held_env(uid: str, image_size: int):
    """An unwrapped single ManiSkill env of ``uid`` for ``pd_ee_delta_pose`` RGB control.

    The first env of the process lends its SAPIEN render system to a module-level reference:
    SAPIEN tears its renderer down when the last env that uses it is closed, and the next env
    then pays the renderer's start-up again (10-25 s on a CPU with lavapipe), so a process that
    closes its envs and builds others (successive evaluations, tests) keeps it alive this way.
    No time-limit wrapper: callers enforce the (possibly overridden) time limit themselves.
    """
    from roboscape_r.data.collect import make_env

    env = make_env(uid, image_size, S.CONTROL_MODE).unwrapped
    if not _HELD_RENDER_SYSTEM:
        sub_scene = env.scene.sub_scenes[0]
        render_system = getattr(sub_scene, "render_system", None)
        if render_system is not None:
            _HELD_RENDER_SYSTEM.append(render_system)
    return env


class SlotGroup:
    """The slots that live in one process: their envs (built lazily, one per slot and env id),
    episode-seed generators and env-id cycles."""

    def __init__(self, slot_env_ids: list[list[str]], rng_seeds: list[list[int]], image_size: int) -> None:
        self.slot_env_ids = slot_env_ids
        self.image_size = image_size
        self.envs: dict[tuple[int, str], Any] = {}
        self.current: list[str] = [ids[0] for ids in slot_env_ids]
        self.reseed(rng_seeds)

    def reseed(self, rng_seeds: list[list[int]]) -> None:
        self.rngs = [np.random.default_rng(s) for s in rng_seeds]
        self.cursor = [-1] * len(self.slot_env_ids)

    def reset(self, slots: list[int]) -> list[tuple[np.ndarray, str, int, int]]:
        """Start the next episode in each of ``slots``: (frame, env id, paraphrase index, env seed)."""
        out = []
        for j in slots:
            ids = self.slot_env_ids[j]
            self.cursor[j] = (self.cursor[j] + 1) % len(ids)
            uid = ids[self.cursor[j]]
            seed = train_seed(self.rngs[j])
            paraphrase = int(self.rngs[j].integers(len(S.instructions()[S.task_of_env_id(uid)])))
            if (j, uid) not in self.envs:
                self.envs[(j, uid)] = make_held_env(uid, self.image_size)
            obs, _ = self.envs[(j, uid)].reset(seed=seed)
            self.current[j] = uid
            out.append((frame_of(obs), uid, paraphrase, seed))
        return out

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step every slot: frames (k, H, W, 3) uint8, rewards (k,), terminated (k,), success (k,)."""
        k = len(self.slot_env_ids)
        frames = np.empty((k, self.image_size, self.image_size, 3), np.uint8)
        rewards, terminated, success = np.zeros(k, np.float32), np.zeros(k, bool), np.zeros(k, bool)
        for j in range(k):
            obs, reward, term, _trunc, info = self.envs[(j, self.current[j])].step(actions[j:j + 1])
            frames[j] = frame_of(obs)
            rewards[j], terminated[j], success[j] = float(reward[0]), bool(term[0]), bool(info["success"][0])
        return frames, rewards, terminated, success

    def close(self) -> None:
        for env in self.envs.values():
            env.close()
        self.envs.clear()


class LocalHandle:
    """A slot group in this process, behind the same submit/result calls as a worker process."""

    def __init__(self, group: SlotGroup) -> None:
        self.group, self._result = group, None

    def submit(self, method: str, *args: Any) -> None:
        self._result = getattr(self.group, method)(*args)

    def result(self) -> Any:
        return self._result

    def close(self) -> None:
        self.group.close()


def _group_worker(conn, group_kwargs: dict, env_module: str | None) -> None:
    init_render_worker()
    group = None
    while True:
        method, args = conn.recv()
        try:
            if group is None:  # set up on the first command, so that set-up errors reach the caller
                S.import_env_module(env_module)
                S.register_all()
                group = SlotGroup(**group_kwargs)
            if method == "close":
                group.close()
                conn.send(("ok", None))
                return
            conn.send(("ok", getattr(group, method)(*args)))
        except Exception:  # noqa: BLE001 - reported to the parent with its traceback
            conn.send(("error", traceback.format_exc()))
            if method == "close":
                return


class ProcessHandle:
    """A slot group in a spawned worker process (one ManiSkill renderer per core)."""

    def __init__(self, ctx, group_kwargs: dict, env_module: str | None) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_group_worker, args=(child, group_kwargs, env_module), daemon=True)
        self.process.start()
        child.close()

    def submit(self, method: str, *args: Any) -> None:
        self.conn.send((method, args))

    def result(self) -> Any:
        try:
            status, payload = self.conn.recv()
        except EOFError:
            self.process.join(1)
            raise RuntimeError(f"ManiSkill worker process {self.process.pid} died (exit code "
                               f"{self.process.exitcode})") from None
        if status == "error":
            raise RuntimeError(f"ManiSkill worker process {self.process.pid} failed:\n{payload}")
        return payload

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self.submit("close")
                self.conn.poll(30) and self.conn.recv()
            except (OSError, EOFError):
                pass
            self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self.conn.close()
