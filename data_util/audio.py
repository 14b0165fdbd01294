"""Step 1: the audio track -> `aud.wav` (16 kHz mono PCM16); `load_audio` reads any audio for render.py too."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.io import wavfile

from .context import SAMPLE_RATE, StepContext
from .errors import PreprocessError
from .ffmpeg import call_ffmpeg, last_error, probe, run_ffmpeg
from .fileio import atomic_path

MISMATCH_S = 0.5  # warn when the audio and the video differ in length by more than this


def _check_audio_file(path: Path) -> dict:
    """probe() the file and make sure it has an audio stream; PreprocessError naming the file if not."""
    info = probe(path)  # raises for a missing file or one ffmpeg cannot read
    if not info["has_audio"]:
        if info["has_video"]:
            raise PreprocessError(f"{path}: no audio track (pass --audio speech.wav)")
        raise PreprocessError(f"{path}: no audio stream")
    return info


def load_audio(path: str | Path) -> np.ndarray:
    """Any audio or video file (any rate, channels, container) -> float32 [T] in [-1, 1], 16 kHz mono."""
    path = Path(path)
    _check_audio_file(path)
    proc = call_ffmpeg(["-i", str(path), "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le", "-"])
    if proc.returncode != 0 and not proc.stdout:
        raise PreprocessError(f"{path}: could not decode its audio: {last_error(proc.stderr)}")
    wav = np.frombuffer(proc.stdout, np.int16).astype(np.float32) / 32768.0
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


def run(ctx: StepContext) -> None:
    """Write dataset/<name>/aud.wav from --audio if given, else from the video's audio track."""
    source = Path(ctx.audio) if ctx.audio is not None else Path(ctx.video)
    info = _check_audio_file(source)
    with atomic_path(ctx.wav) as tmp:
        args = ["-i", str(source), "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "wav"]
        run_ffmpeg([*args, str(tmp)], what=str(source))
        rate, data = wavfile.read(tmp)
        if data.size == 0:
            raise PreprocessError(f"{source}: the audio track is empty (damaged file?)")
    seconds = data.size / rate
    print(f"  aud.wav: {seconds:.2f} s at {rate} Hz from {source}")
    expected = info["duration"]
    if ctx.audio is not None and ctx.video.is_file():
        expected = probe(ctx.video)["duration"]
    if expected and abs(seconds - expected) > MISMATCH_S:
        print(f"warning: {source}: decoded {seconds:.2f} s of audio but the "
              f"{'video' if ctx.audio is not None else 'file'} lasts {expected:.2f} s "
              "(truncated file, or audio of another length)", file=sys.stderr)
