"""Moved to common/errors.py (both packages use it); this name keeps old imports working."""
from common.errors import *  # noqa: F401,F403
