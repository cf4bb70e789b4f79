"""RoboScape-R: unified reward-observation world models for robot RL."""
__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so that `import roboscape_r` stays light (no torch) until a policy is loaded.
    if name == "load_policy":
        from roboscape_r.policy.api import load_policy

        return load_policy
    raise AttributeError(f"module 'roboscape_r' has no attribute {name!r}")
