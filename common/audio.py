"""Reading audio: any audio or video file -> float32 16 kHz mono (ffmpeg), our own aud.wav directly; how many
25 fps frames some audio covers. Used by preprocessing (data_util.audio) and by render.py for new speech."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from scipy.io import wavfile

from common.constants import HOP, SAMPLE_RATE
from common.errors import PreprocessError
from common.ffmpeg import call_ffmpeg, last_error, probe


def n_frames_for(n_samples: int) -> int:
    """Video frames (25 fps) covered by n_samples of 16 kHz audio: ceil(T / 640)."""
    return max(1, math.ceil(n_samples / HOP))


SYNC_FILTER = "aresample=async=1:first_pts=0"  # place the audio on its timestamps: silence before a late start
LATE_S = 0.5  # say so when the audio starts this much after the file's time 0 (preprocessing: the span's start)
NO_TRACK_HINT = "pass --audio speech.wav"  # process_data.sh's way out of a video without sound


def _check_audio_file(path: Path, hint: str = NO_TRACK_HINT) -> dict:
    """probe() the file and make sure it has an audio stream; PreprocessError naming the file (and, for a video
    without sound, what to do: `hint`) if not."""
    info = probe(path)  # raises for a missing file or one ffmpeg cannot read
    if not info["has_audio"]:
        if info["has_video"]:
            raise PreprocessError(f"{path}: no audio track ({hint})")
        raise PreprocessError(f"{path}: no audio stream")
    return info


def decode_pcm(path: Path, before: list[str] | None = None, audio_filter: str | None = None) -> np.ndarray:
    """The audio of a file as int16 [T] 16 kHz mono; `before`: ffmpeg input options (a span). A damaged file gives
    the samples that could be decoded; PreprocessError naming the file if none could."""
    args = [*(before or []), "-i", str(path), "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE)]
    proc = call_ffmpeg([*args, *(["-af", audio_filter] if audio_filter else []), "-f", "s16le", "-"])
    if proc.returncode != 0 and not proc.stdout:
        raise PreprocessError(f"{path}: could not decode its audio: {last_error(proc.stderr)}")
    return np.frombuffer(proc.stdout, np.int16)


def load_audio(path: str | Path, hint: str = NO_TRACK_HINT) -> np.ndarray:
    """Any audio or video file (any rate, channels, container) -> float32 [T] in [-1, 1], 16 kHz mono, sample 0 at
    the file's time 0 (an audio stream that starts late is preceded by silence, so that frames rendered from it
    stay in sync with the file's own audio muxed beside them); `hint`: what the error for a video without sound
    tells the user to do."""
    path = Path(path)
    info = _check_audio_file(path, hint)
    wav = decode_pcm(path, audio_filter=SYNC_FILTER).astype(np.float32)  # on the file's clock, as a player plays it
    if info["audio_start"] > LATE_S:
        print(f"warning: {path}: its audio starts at {info['audio_start']:.2f} s: the first "
              f"{info['audio_start']:.2f} s are silence", file=sys.stderr)
    wav /= 32768.0  # in place: a long file is not held twice
    if wav.size == 0:
        raise PreprocessError(f"{path}: the audio track is empty")
    return wav


def read_wav(path: str | Path) -> np.ndarray:
    """Read our own aud.wav (16 kHz mono PCM16) -> float32 [T] in [-1, 1]; other files go through load_audio."""
    path = Path(path)
    try:
        rate, data = wavfile.read(path)
    except (ValueError, OSError):
        return load_audio(path)
    if rate != SAMPLE_RATE or data.ndim != 1 or data.dtype != np.int16:
        return load_audio(path)
    return data.astype(np.float32) / 32768.0
