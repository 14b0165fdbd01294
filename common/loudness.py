"""Speech level: new speech is brought to the loudness of the subject's own audio before its features are computed.

The mouth opens with loudness: the MFCC features' log energy (dim 0) and the mouth-shape regression's amplitude
envelope were learnt on the subject's recording, at its level. The same speech recorded 10 dB quieter would open the
rendered mouth about 40% as far throughout, 20 dB quieter hardly at all (NOTES, 2026-12-07 seventh session). So the
new speech's features are computed at the subject's loudness; the mp4 keeps the file's own audio.

Loudness is ITU-R BS.1770's gated integrated loudness (LUFS), measured by ffmpeg's ebur128 filter on the audio as
load_audio reads it (16 kHz mono), streamed (a ten-minute file costs no memory here): blocks of 400 ms, the silent
ones gated out, so a file with long pauses is not raised more than the same speech without them. The gain is held
within +-MAX_GAIN_DB: a file of faint noise is not raised into speech.
"""
from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import numpy as np

from common.constants import SAMPLE_RATE
from common.errors import PreprocessError
from common.ffmpeg import ffmpeg_exe, last_error

SILENT_LUFS = -70.0  # BS.1770's absolute gate: ffmpeg says -70.0 when every block is gated out (or there is none)
MAX_GAIN_DB = 20.0  # the largest change of level applied to new speech
QUIET_DB = 3.0  # gains below this (a difference hardly heard) are applied without a word


def loudness(path: str | Path) -> float | None:
    """Integrated loudness (LUFS, to 0.1) of a file's audio, downmixed to mono at 16 kHz as load_audio reads it;
    None when it is silent or shorter than one 400 ms block. PreprocessError naming the file if ffmpeg fails."""
    chain = (f"aresample={SAMPLE_RATE}:out_chlayout=mono:rematrix_maxval=1,"  # the mix of -ac 1
             "aformat=sample_fmts=s16,ebur128=framelog=quiet")  # clipped to 16 bits, as load_audio decodes
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-i", str(path), "-vn", "-af", chain,
                           "-f", "null", "-"], capture_output=True)
    if proc.returncode != 0:
        raise PreprocessError(f"{path}: could not measure its loudness: {last_error(proc.stderr)}")
    found = re.findall(r"I:\s+(-?\d+(?:\.\d+)?) LUFS", proc.stderr.decode("utf-8", "replace"))
    if not found:
        raise PreprocessError(f"{path}: could not measure its loudness: ffmpeg's ebur128 printed no summary")
    value = float(found[-1])  # the summary comes last
    return value if value > SILENT_LUFS else None


def subject_loudness(datadir: Path, meta: dict) -> float | None:
    """The loudness of the subject's training audio: aud_meta.json's `loudness_lufs` (step 2 records it), else that
    of the dataset's aud.wav (datasets made before it was recorded), else None (step 2 found none: silence)."""
    if meta.get("loudness_lufs") is not None:
        value = float(meta["loudness_lufs"])
        return value if math.isfinite(value) else None
    wav_path = Path(datadir) / "aud.wav"
    if "loudness_lufs" in meta or not wav_path.is_file():
        return None
    return loudness(wav_path)


def level_gain(measured: float | None, target: float | None) -> float:
    """dB to add to audio of loudness `measured` to reach `target`, within +-MAX_GAIN_DB; 0 when either is None."""
    if measured is None or target is None:
        return 0.0
    return float(np.clip(target - measured, -MAX_GAIN_DB, MAX_GAIN_DB))


def match_note(path: Path, measured: float | None, target: float | None, gain: float) -> str | None:
    """The line that says what a gain of `gain` dB does to the features of `path`; None when there is nothing to say."""
    if target is None:
        return None
    if measured is None:
        return (f"note: {path}: too short or too quiet to measure its loudness; its features are computed at the "
                "level it has")
    if abs(gain) < QUIET_DB:
        return None
    capped = " (the most this changes a level)" if abs(target - measured) > MAX_GAIN_DB else ""
    return (f"note: {path}: speech at {measured:.1f} LUFS, the subject's at {target:.1f}: its features are computed "
            f"{abs(gain):.1f} dB {'louder' if gain > 0 else 'quieter'}{capped}, so the mouth opens as in training "
            "(--loudness keep: as it is)")
