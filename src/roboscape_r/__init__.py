"""RoboScape-R: unified reward-observation world models for robot RL."""
__version__ = "0.1.0"
