"""Gymnasium environments for policies: the world-model env (observations and rewards from the
world model) and the ManiSkill env (the simulator, for the simulator-reward baseline and
evaluation).

Importing this package registers the world-model ids (`RoboScapeR/WorldModel-v0`,
`RoboScapeR/WorldModelSingle-v0`; see `roboscape_r.envs.registration`); the env classes
themselves are imported only when an env is made.
"""

import roboscape_r.envs.registration  # noqa: F401  (registers the gymnasium ids)
