"""Moved to common/fileio.py (both packages use it); this name keeps old imports working."""
from common.fileio import *  # noqa: F401,F403
