"""Moved to common/ffmpeg.py (both packages use it); this name keeps old imports working."""
from common.ffmpeg import *  # noqa: F401,F403
