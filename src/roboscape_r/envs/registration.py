"""Gymnasium ids of the world-model envs, so that any client can make them by name.

    import roboscape_r.envs  # registers the ids; or name the module: gym.make("roboscape_r.envs:<id>", ...)
    envs = gym.make("RoboScapeR/WorldModel-v0", num_envs=64, reward="general")   # WorldModelVectorEnv
    envs = gym.make_vec("RoboScapeR/WorldModel-v0", 64, vectorization_mode="custom",
                        vector_kwargs={"reward": "general"})                    # the same, via make_vec
    env = gym.make("RoboScapeR/WorldModelSingle-v0", dataset="data/train")      # WorldModelEnv

Keyword arguments are `WorldModelEnvConfig` fields (or `config=`), plus `text_encoder=` and
`components=`. The vector id is returned unwrapped (no env checker or order wrapper: those
are single-env wrappers). Episode length is the config's `max_steps_per_episode`: do not pass
gym.make's own `max_episode_steps`, which gym.make consumes to add a TimeLimit wrapper (wrong
for a vector env, whose episodes all reset together). Importing this module is cheap: entry
points are strings, loaded on make.
"""

from __future__ import annotations

from typing import Any

from gymnasium.envs.registration import register, registry

VECTOR_ENV_ID = "RoboScapeR/WorldModel-v0"
"""`WorldModelVectorEnv`: num_envs world-model episodes in lockstep."""
SINGLE_ENV_ID = "RoboScapeR/WorldModelSingle-v0"
"""`WorldModelEnv`: one world-model episode, a plain gymnasium.Env."""


def make_vector_env(num_envs: int = 1, max_episode_steps: int | None = None, **kwargs: Any):
    """`gym.make_vec(..., vectorization_mode="custom")` entry point; returns a WorldModelVectorEnv.

    make_vec passes the spec's `max_episode_steps` (None for these ids); a number given here
    becomes the config's `max_steps_per_episode`.
    """
    from roboscape_r.envs.world_model import WorldModelVectorEnv

    if max_episode_steps is not None:
        kwargs["max_steps_per_episode"] = max_episode_steps
    return WorldModelVectorEnv(num_envs=num_envs, **kwargs)


def register_world_model_envs() -> None:
    """Register both ids (idempotent)."""
    if VECTOR_ENV_ID not in registry:
        register(
            VECTOR_ENV_ID,
            entry_point="roboscape_r.envs.world_model:WorldModelVectorEnv",
            vector_entry_point="roboscape_r.envs.registration:make_vector_env",
            disable_env_checker=True,
            order_enforce=False,
        )
    if SINGLE_ENV_ID not in registry:
        register(SINGLE_ENV_ID, entry_point="roboscape_r.envs.world_model_single:WorldModelEnv")


SIM_ENV_ID = "RoboScapeR/ManiSkill-v0"
"""`ManiSkillVectorEnv`: the simulator training env of the physics baseline."""


def register_sim_env() -> None:
    """Register the simulator env's id (idempotent); ManiSkill itself is only imported on make."""
    if SIM_ENV_ID not in registry:
        register(SIM_ENV_ID, entry_point="roboscape_r.envs.maniskill:make_maniskill_vector_env",
                 vector_entry_point="roboscape_r.envs.maniskill:make_maniskill_vector_env",
                 order_enforce=False, disable_env_checker=True)


register_world_model_envs()
register_sim_env()
