"""Tasks and scene variants: in-domain training scenes and held-out out-of-domain (OOD) scenes.

Every scene is a registered Gymnasium/ManiSkill id ``RoboScapeR-{Task}-{scene}-v1`` built by
subclassing the ManiSkill task. A scene changes what the camera sees (object colour, table
texture, lighting, camera pose, distractors, object size) and fixes the camera so that the task
objects and the goal are visible at small resolutions:

* ManiSkill's default camera shows a 4 cm cube as 2-3 pixels at 64x64, so each task has its
  own closer camera (``TASKS[task].camera``), chosen by looking at frames (``docs/scenes.png``).
* PickCube hides its goal sphere from sensors; our variant renders it, because the policy and
  the world models only see pixels.

Users add scenes without editing this file: register an id in their own module (for example with
:func:`register_scene`, or any ManiSkill/Gymnasium registration) and pass ``--env-module MODULE``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

SPLITS = ("in-domain", "ood")
TABLE_TEXTURES = ("slate", "checker", "stripes")
ENV_ID_PREFIX = "RoboScapeR"
CONTROL_MODE = "pd_ee_delta_pose"
"""Shared action space for every task: 7-D end-effector delta pose (3 translation, 3 axis-angle
rotation, 1 gripper), normalised to [-1, 1]. Task-space deltas mean the same thing in every task
and scene (a joint-space action does not), which is what a multi-task policy and an
action-conditioned world model need; rotation is kept because cubes spawn with random yaw."""


@dataclass(frozen=True)
class CameraSpec:
    """A pinhole camera looking from ``eye`` at ``target`` (metres, world frame)."""

    eye: tuple[float, float, float]
    target: tuple[float, float, float]
    fov_deg: float = 60.0


@dataclass(frozen=True)
class TaskSpec:
    """A ManiSkill task as we use it."""

    name: str
    maniskill_id: str
    camera: CameraSpec
    max_episode_steps: int
    """Time limit of one episode in our env (expert demos of StackCube need about 120 steps)."""
    object_attr: str = "cube"
    """Attribute of the env holding the manipulated object (recoloured by scene variants)."""
    resizable: bool = True
    """Whether the object size factor applies (StackCube hard-codes its cube size)."""


# Cameras: close, slightly from the side and above, narrow field of view, framing the region
# where objects spawn and where goals lie (PushCube's goal is up to 0.3 m in +x, PullCube's in -x,
# PickCube's up to 0.3 m high).
TASKS: dict[str, TaskSpec] = {
    "PickCube": TaskSpec(
        "PickCube", "PickCube-v1", CameraSpec((0.35, 0.35, 0.45), (-0.02, 0.0, 0.1), 45.0), 100
    ),
    "PushCube": TaskSpec(
        "PushCube", "PushCube-v1", CameraSpec((0.45, 0.35, 0.4), (0.08, 0.0, 0.0), 45.0), 80,
        object_attr="obj",
    ),
    "PullCube": TaskSpec(
        "PullCube", "PullCube-v1", CameraSpec((0.25, 0.35, 0.4), (-0.1, 0.0, 0.0), 45.0), 80,
        object_attr="obj",
    ),
    "StackCube": TaskSpec(
        "StackCube", "StackCube-v1", CameraSpec((0.3, 0.3, 0.35), (-0.02, 0.0, 0.05), 45.0), 160,
        object_attr="cubeA", resizable=False,
    ),
}


@dataclass(frozen=True)
class SceneSpec:
    """What a scene variant changes relative to the task's own scene. ``None`` keeps the default."""

    name: str
    split: str
    factor: str
    """``base`` for in-domain scenes; the OOD factor otherwise (object_color, table_texture, ...)."""
    severity: int = 0
    object_rgba: tuple[float, float, float, float] | None = None
    table_texture: str | None = None
    """Replace the table's wood texture with a procedural one: one of ``TABLE_TEXTURES``."""
    light_scale: float = 1.0
    light_tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    light_direction: tuple[float, float, float] = (1.0, 1.0, -1.0)
    camera_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Added to the task camera's eye (metres); the camera keeps looking at the same target."""
    num_distractors: int = 0
    """Extra visual-only objects (no collision) placed around the workspace each episode."""
    object_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"scene {self.name!r}: split must be one of {SPLITS}, got {self.split!r}")


IN_DOMAIN_COLORS = {"default": None, "cyan": (0.1, 0.8, 0.9, 1.0)}
IN_DOMAIN_TABLES = {"wood": None, "slate": "slate"}

SCENES: dict[str, SceneSpec] = {}
for _color, _rgba in IN_DOMAIN_COLORS.items():
    for _table, _tint in IN_DOMAIN_TABLES.items():
        _name = f"id-{_color}-{_table}"
        SCENES[_name] = SceneSpec(_name, "in-domain", "base", 0, object_rgba=_rgba, table_texture=_tint)

# Held out from all training data. Each factor changes one thing; severity 2 changes it more.
for _spec in [
    SceneSpec("ood-color-purple", "ood", "object_color", 1, object_rgba=(0.6, 0.1, 0.8, 1.0)),
    SceneSpec("ood-color-yellow", "ood", "object_color", 2, object_rgba=(0.95, 0.85, 0.1, 1.0)),
    SceneSpec("ood-texture-checker", "ood", "table_texture", 1, table_texture="checker"),
    SceneSpec("ood-texture-stripes", "ood", "table_texture", 2, table_texture="stripes"),
    SceneSpec("ood-light-dim", "ood", "lighting", 1, light_scale=0.55, light_tint=(1.0, 0.85, 0.7)),
    SceneSpec("ood-light-blue", "ood", "lighting", 2, light_scale=0.8, light_tint=(0.6, 0.7, 1.0),
              light_direction=(-1.0, 0.5, -1.0)),
    SceneSpec("ood-camera-small", "ood", "camera", 1, camera_offset=(0.0, -0.04, 0.03)),
    SceneSpec("ood-camera-large", "ood", "camera", 2, camera_offset=(-0.05, -0.08, 0.05)),
    SceneSpec("ood-distractors-2", "ood", "distractors", 1, num_distractors=2),
    SceneSpec("ood-distractors-4", "ood", "distractors", 2, num_distractors=4),
    SceneSpec("ood-size-small", "ood", "object_size", 1, object_scale=0.75),
    SceneSpec("ood-size-large", "ood", "object_size", 2, object_scale=1.25),
]:
    SCENES[_spec.name] = _spec


def scenes_in_split(split: str) -> list[str]:
    """Names of our scenes in ``split`` (``in-domain`` or ``ood``)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return [name for name, spec in SCENES.items() if spec.split == split]


def scene_applies(task: str, scene: str) -> bool:
    """Whether ``scene`` is defined for ``task`` (object size needs a resizable object)."""
    spec = SCENES[scene]
    return not (spec.object_scale != 1.0 and not TASKS[task].resizable)


def env_id(task: str, scene: str) -> str:
    """The registered env id of ``task`` in ``scene``."""
    return f"{ENV_ID_PREFIX}-{task}-{scene}-v1"


def check_tasks(tasks: list[str]) -> list[str]:
    """Return ``tasks`` or raise ValueError naming the unknown ones and listing the valid ones."""
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; valid tasks: {', '.join(TASKS)}")
    if not tasks:
        raise ValueError(f"no tasks given; valid tasks: {', '.join(TASKS)}")
    return list(tasks)


def resolve_scenes(scenes: list[str]) -> list[str]:
    """Expand ``in-domain``/``ood`` into scene names; keep scene names and registered env ids.

    Raises ValueError naming an unknown entry and listing the valid ones.
    """
    import gymnasium as gym

    resolved: list[str] = []
    for entry in scenes:
        if entry in SPLITS:
            resolved += scenes_in_split(entry)
        elif entry in SCENES or entry in gym.registry:
            resolved.append(entry)
        else:
            raise ValueError(
                f"unknown scene {entry!r}; valid: {', '.join(SPLITS)}, {', '.join(SCENES)}, or an env "
                "id registered by a module passed with --env-module"
            )
    if not resolved:
        raise ValueError("no scenes given; use in-domain, ood or scene names")
    return list(dict.fromkeys(resolved))


@lru_cache(maxsize=None)
def instructions() -> dict[str, list[str]]:
    """Language instructions per task (paraphrases), read from ``instructions.json``."""
    text = resources.files("roboscape_r.data").joinpath("instructions.json").read_text()
    return json.loads(text)


def _procedural_texture(kind: str, size: int = 256) -> np.ndarray:
    """An RGBA float32 texture, one of ``TABLE_TEXTURES``."""
    ys, xs = np.mgrid[0:size, 0:size]
    if kind == "slate":  # in-domain: plain grey-blue with faint noise
        noise = np.random.default_rng(0).uniform(-0.03, 0.03, (size, size, 1))
        rgb = (np.array([0.42, 0.45, 0.5]) + noise).astype(np.float32)
        return np.concatenate([rgb, np.ones((size, size, 1), np.float32)], axis=-1)
    if kind == "checker":
        mask = ((xs // 16) + (ys // 16)) % 2 == 0
        light, dark = (0.85, 0.85, 0.8), (0.25, 0.3, 0.35)
    elif kind == "stripes":
        mask = (xs // 10) % 2 == 0
        light, dark = (0.9, 0.75, 0.6), (0.35, 0.5, 0.3)
    else:
        raise ValueError(f"unknown table texture {kind!r}; valid: {', '.join(TABLE_TEXTURES)}")
    rgb = np.where(mask[..., None], np.array(light), np.array(dark)).astype(np.float32)
    return np.concatenate([rgb, np.ones((size, size, 1), np.float32)], axis=-1)


def _render_materials(actor):
    """Materials of every render shape of a ManiSkill Actor (all sub-scenes)."""
    from sapien.render import RenderBodyComponent

    for entity in actor._objs:
        body = entity.find_component_by_type(RenderBodyComponent)
        if body is None:
            continue
        for shape in body.render_shapes:
            parts = shape.parts if hasattr(shape, "parts") else [shape]
            for part in parts:
                yield part.material


def make_variant_class(base_cls: type) -> type:
    """Subclass a ManiSkill task so that it renders a :class:`SceneSpec` with the task camera."""

    class SceneVariant(base_cls):  # type: ignore[misc, valid-type]
        def __init__(self, *args, task: str, scene: dict, image_size: int = 64, **kwargs):
            self._task = TASKS[task]
            self._scene = SceneSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in scene.items()})
            self._image_size = int(image_size)
            super().__init__(*args, **kwargs)

        @property
        def _default_sensor_configs(self):
            from mani_skill.sensors.camera import CameraConfig
            from mani_skill.utils import sapien_utils

            cam = self._task.camera
            eye = np.asarray(cam.eye) + np.asarray(self._scene.camera_offset)
            pose = sapien_utils.look_at(eye=eye.tolist(), target=list(cam.target))
            size = self._image_size
            return [CameraConfig("base_camera", pose, size, size, np.deg2rad(cam.fov_deg), 0.01, 100)]

        def _load_lighting(self, options: dict):
            spec = self._scene
            color = (np.asarray(spec.light_tint) * spec.light_scale).tolist()
            self.scene.set_ambient_light((0.3 * np.asarray(color)).tolist())
            self.scene.add_directional_light(list(spec.light_direction), color, shadow=self.enable_shadow,
                                             shadow_scale=5, shadow_map_size=2048)
            self.scene.add_directional_light([0, 0, -1], color)

        def _load_scene(self, options: dict):
            spec = self._scene
            if spec.object_scale != 1.0:
                if not self._task.resizable:
                    raise ValueError(f"scene {spec.name!r} resizes objects, which {self._task.name} does not support")
                self.cube_half_size = type(self).cube_half_size_default * spec.object_scale
            super()._load_scene(options)
            if hasattr(self, "goal_site") and self.goal_site in self._hidden_objects:
                self._hidden_objects.remove(self.goal_site)  # PickCube: make the goal visible
            if spec.object_rgba is not None:
                for material in _render_materials(getattr(self, self._task.object_attr)):
                    material.set_base_color(list(spec.object_rgba))
            table = self.table_scene.table
            if spec.table_texture is not None:
                from sapien.render import RenderTexture2D

                texture = RenderTexture2D(_procedural_texture(spec.table_texture), "R32G32B32A32Sfloat")
                for material in _render_materials(table):
                    material.set_base_color([1.0, 1.0, 1.0, 1.0])
                    material.set_base_color_texture(texture)
            self._distractors = self._build_distractors(spec.num_distractors)

        def _build_distractors(self, count: int) -> list:
            from mani_skill.utils.building import actors

            palette = [(0.9, 0.5, 0.1, 1), (0.2, 0.3, 0.9, 1), (0.95, 0.95, 0.95, 1), (0.1, 0.1, 0.1, 1)]
            built = []
            for i in range(count):
                kwargs = dict(color=list(palette[i % len(palette)]), name=f"distractor_{i}",
                              body_type="kinematic", add_collision=False)
                if i % 2 == 0:
                    built.append(actors.build_sphere(self.scene, radius=0.018, **kwargs))
                else:
                    built.append(actors.build_cube(self.scene, half_size=0.015, **kwargs))
            return built

        def _initialize_episode(self, env_idx, options: dict):
            super()._initialize_episode(env_idx, options)
            if not self._distractors:
                return
            import torch
            from mani_skill.utils.structs.pose import Pose

            # Distractors sit beside the workspace (|y| in [0.15, 0.22]) so they never block a task.
            b = len(env_idx)
            for i, actor in enumerate(self._distractors):
                xy = torch.from_numpy(self._episode_rng.uniform([-0.2, 0.15], [0.2, 0.22], size=(b, 2))).float()
                if i % 2 == 1:
                    xy[:, 1] = -xy[:, 1]
                xyz = torch.cat([xy, torch.full((b, 1), 0.02)], dim=1)
                actor.set_pose(Pose.create_from_pq(p=xyz))

    SceneVariant.__name__ = f"{base_cls.__name__}SceneVariant"
    SceneVariant.cube_half_size_default = getattr(base_cls, "cube_half_size", 0.02)
    return SceneVariant


_REGISTERED = False
_ENV_TASK: dict[str, str] = {}


def register_scene(task: str, scene: SceneSpec, *, image_size: int = 64, env_id_override: str | None = None) -> str:
    """Register ``task`` in ``scene`` as a ManiSkill/Gymnasium id and return the id.

    Public so that user modules (``--env-module``) can add their own :class:`SceneSpec`.
    """
    from mani_skill.utils.registration import REGISTERED_ENVS, register_env

    check_tasks([task])
    uid = env_id_override or env_id(task, scene.name)
    _ENV_TASK[uid] = task
    if uid in REGISTERED_ENVS:
        return uid
    base = REGISTERED_ENVS[TASKS[task].maniskill_id].cls
    register_env(uid, max_episode_steps=TASKS[task].max_episode_steps, task=task,
                 scene=dataclasses.asdict(scene), image_size=image_size)(_variant_class(base))
    return uid


@lru_cache(maxsize=None)
def _variant_class(base_cls: type) -> type:
    return make_variant_class(base_cls)


def register_all() -> None:
    """Register every (task, scene) pair of ours. Idempotent."""
    global _REGISTERED
    if _REGISTERED:
        return
    import mani_skill.envs  # noqa: F401  (registers the base tasks)

    for task in TASKS:
        for scene, spec in SCENES.items():
            if scene_applies(task, scene):
                register_scene(task, spec)
    _REGISTERED = True


def import_env_module(module: str | None) -> None:
    """Import a user module that registers extra env ids (the ``--env-module`` hook)."""
    if not module:
        return
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise ValueError(f"--env-module {module!r} could not be imported: {err}. "
                         "Pass an importable module name (its folder must be on PYTHONPATH).") from err


def task_of_env_id(uid: str) -> str:
    """Our task name for a registered env id (ours or a user's), from the env class."""
    from mani_skill.utils.registration import REGISTERED_ENVS

    if uid in _ENV_TASK:
        return _ENV_TASK[uid]
    for task, spec in TASKS.items():
        if uid == spec.maniskill_id:
            return task
    if uid in REGISTERED_ENVS:
        cls = REGISTERED_ENVS[uid].cls
        for task, spec in TASKS.items():
            if issubclass(cls, REGISTERED_ENVS[spec.maniskill_id].cls):
                return task
    raise ValueError(f"env id {uid!r} is not one of our tasks ({', '.join(TASKS)}) nor a subclass of one")


def describe_scenes() -> list[dict]:
    """One row per scene: name, split, factor, severity, tasks it applies to."""
    return [
        {**{k: v for k, v in dataclasses.asdict(spec).items() if k in ("name", "split", "factor", "severity")},
         "tasks": [t for t in TASKS if scene_applies(t, name)]}
        for name, spec in SCENES.items()
    ]


__all__ = [
    "CONTROL_MODE", "CameraSpec", "SCENES", "SPLITS", "SceneSpec", "TASKS", "TaskSpec",
    "check_tasks", "describe_scenes", "env_id", "import_env_module", "instructions",
    "register_all", "register_scene", "resolve_scenes", "scene_applies", "scenes_in_split",
    "task_of_env_id",
]
