"""Moved to sample_data/motion.py; this name keeps old imports working."""
from sample_data.motion import *  # noqa: F401,F403
