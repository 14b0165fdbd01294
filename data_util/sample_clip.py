"""Moved to sample_data/clip.py (the sample clip is not a preprocessing step); this name keeps old imports and
`python -m data_util.sample_clip` working."""
from sample_data.clip import *  # noqa: F401,F403
from sample_data.clip import main

if __name__ == "__main__":
    main()
