"""Where episodes come from: the motion-planning expert, a perturbed expert, and random actions.

All three act in the shared action space (``pd_ee_delta_pose``). ManiSkill's motion-planning
experts emit ``pd_joint_pos`` targets, so the expert runs first in a physics-only copy of the env
(no rendering, fast), and we record, after each planner step, the end-effector pose that its
joint targets lead to. The rendering env then tracks those poses closed-loop with delta-pose
actions, the same scheme as ManiSkill's ``from_pd_joint_pos_to_ee`` trajectory conversion, from
which we reuse ``delta_pose_to_pd_ee_delta``. Tracking closed-loop one step at a time is what lets
the perturbed expert inject noise and detours and then recover (or fail).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

SOURCES = ("expert", "perturbed", "random")


@dataclass(frozen=True)
class PerturbConfig:
    """How the perturbed expert and the random source misbehave."""

    noise_std: tuple[float, float] = (0.05, 0.25)
    """Per-episode std of Gaussian noise on the arm actions, drawn uniformly from this range."""
    detour_prob: float = 0.04
    """Per-step probability of starting a detour (a burst of one random constant action)."""
    detour_steps: tuple[int, int] = (3, 10)
    """Detour length range, in steps; the expert's plan pauses during a detour."""
    random_smoothing: float = 0.8
    """Random source: action_t = s * action_{t-1} + (1 - s) * noise (temporally correlated)."""
    gripper_flip_prob: float = 0.08
    """Random source: per-step probability of toggling the gripper."""


class _PlanRecorder(gym.Wrapper):
    """Records what the planner does: the initial env state and, after every planner step,
    the end-effector target pose implied by the joint-position targets, and the gripper command."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        controller = env.unwrapped.agent.controller
        self._arm = controller.controllers["arm"]
        self._pin = controller.articulation.create_pinocchio_model()
        self.initial_state = None
        self.targets: list = []  # sapien.Pose of the ee target after each planner step
        self.grippers: list[float] = []

    def reset(self, **kwargs):
        out = super().reset(**kwargs)
        self.initial_state = self.env.unwrapped.get_state_dict()
        self.targets, self.grippers = [], []
        return out

    def step(self, action):
        out = super().step(action)
        art = self._arm.articulation
        full_qpos = art.get_qpos().clone()
        full_qpos[:, self._arm.active_joint_indices] = self._arm._target_qpos
        self._pin.compute_forward_kinematics(full_qpos.cpu().numpy()[0])
        ee_index = self.env.unwrapped.agent.tcp.index  # the ee link of pd_ee_delta_pose
        self.targets.append(art.pose.sp * self._pin.get_link_pose(ee_index))
        self.grippers.append(float(np.asarray(action).reshape(-1)[-1]))
        return out


def plan_expert(planner_env: gym.Env, task: str, seed: int) -> tuple[dict, list, list[float], bool]:
    """Run ManiSkill's motion-planning solution for ``task`` in a physics-only env.

    Returns (initial env state, ee target poses per step, gripper command per step, planner ok).
    """
    from mani_skill.examples.motionplanning.panda import solutions

    solve = getattr(solutions, f"solve{task}")
    recorder = _PlanRecorder(planner_env)
    try:
        result = solve(recorder, seed=seed, debug=False, vis=False)
    except Exception:  # the planner raises on rare unreachable poses: a failed plan, not a crash
        result = -1
    ok = not (isinstance(result, int) and result == -1)
    return recorder.initial_state, recorder.targets, recorder.grippers, ok


def tracking_action(env: gym.Env, target_pose) -> np.ndarray:
    """The 6-D arm action (normalised, clipped) moving the ee toward ``target_pose`` (sapien.Pose)."""
    import sapien
    from mani_skill.trajectory.utils.actions.conversion import delta_pose_to_pd_ee_delta

    arm = env.unwrapped.agent.controller.controllers["arm"]
    ee_pose = arm.ee_link.pose
    delta_position = target_pose.p - ee_pose.p.cpu().numpy()[0]
    delta_q = (ee_pose.sp * target_pose.inv()).q
    action = delta_pose_to_pd_ee_delta(arm, sapien.Pose(delta_position, delta_q))
    action[:3] = np.clip(action[:3], -1, 1)
    norm = np.linalg.norm(action[3:])
    if norm > 1:
        action[3:] /= norm
    return action.astype(np.float32)


class ExpertPolicy:
    """Closed-loop tracker of a planned ee trajectory, optionally perturbed.

    ``act(env)`` returns the next 7-D action, or None when the plan is finished.
    """

    def __init__(self, targets: list, grippers: list[float], rng: np.random.Generator,
                 perturb: PerturbConfig | None = None):
        self.targets, self.grippers = targets, grippers
        self.rng, self.perturb = rng, perturb
        self.index = 0
        self.detour_left, self.detour_action = 0, None
        self.noise_std = rng.uniform(*perturb.noise_std) if perturb else 0.0

    def act(self, env: gym.Env) -> np.ndarray | None:
        if self.index >= len(self.targets):
            return None
        gripper = self.grippers[self.index]
        if self.perturb is not None:
            if self.detour_left == 0 and self.rng.random() < self.perturb.detour_prob:
                self.detour_left = int(self.rng.integers(*self.perturb.detour_steps, endpoint=True))
                self.detour_action = self.rng.uniform(-1, 1, 6).astype(np.float32)
                self.detour_action[3:] *= 0.3  # mostly translation: large spins look unnatural
            if self.detour_left > 0:
                self.detour_left -= 1
                return np.append(self.detour_action, gripper).astype(np.float32)
        arm = tracking_action(env, self.targets[self.index])
        if self.noise_std > 0:
            arm = np.clip(arm + self.rng.normal(0, self.noise_std, 6), -1, 1).astype(np.float32)
        self.index += 1
        return np.append(arm, gripper).astype(np.float32)


class RandomPolicy:
    """Temporally correlated random actions with occasional gripper toggles (exploration data)."""

    def __init__(self, rng: np.random.Generator, perturb: PerturbConfig):
        self.rng, self.perturb = rng, perturb
        self.arm = np.zeros(6, np.float32)
        self.gripper = 1.0

    def act(self, env: gym.Env) -> np.ndarray:
        s = self.perturb.random_smoothing
        self.arm = np.clip(s * self.arm + (1 - s) * self.rng.normal(0, 1.5, 6), -1, 1).astype(np.float32)
        if self.rng.random() < self.perturb.gripper_flip_prob:
            self.gripper = -self.gripper
        return np.append(self.arm, self.gripper).astype(np.float32)
