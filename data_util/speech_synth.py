"""Moved to sample_data/speech.py (the speech synthesiser is not a preprocessing step); this name keeps old imports
and `python -m data_util.speech_synth` working."""
from sample_data.speech import *  # noqa: F401,F403
from sample_data.speech import main

if __name__ == "__main__":
    main()
