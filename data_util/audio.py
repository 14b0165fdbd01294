"""Step 1: the audio track -> `aud.wav` (16 kHz mono PCM16) (reading audio: common/audio.py).

aud.wav holds the --start/--end span (data_util.span) of the video's audio track, or of --audio, taken as aligned
with the video. Its length is not cut to the video's here: steps 2 and 3 keep their common part (common_length)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.io import wavfile

from . import span
from .context import SAMPLE_RATE, StepContext
from common.audio import LATE_S, SYNC_FILTER, _check_audio_file, decode_pcm
from common.audio import load_audio, read_wav  # noqa: F401  (old imports)
from common.errors import PreprocessError
from common.ffmpeg import probe
from common.fileio import atomic_path


def span_audio(source: Path, info: dict, ctx: StepContext, start: float, end: float | None) -> np.ndarray:
    """int16 samples of the span, on the video's clock: an audio track that starts late (a file whose sound begins
    after its picture) is preceded by silence, so that sample 0 plays with the span's first frame."""
    pcm = decode_pcm(source, span.input_args(ctx, start, end), SYNC_FILTER)
    n_span = None if end is None else int(round((end - start) * SAMPLE_RATE))  # samples in the span
    if ctx.end is not None and n_span is not None:  # ffmpeg's -t without -ss counts from the audio's first sample
        pcm = pcm[:n_span]
    lead = info["audio_start"] - start
    if lead > LATE_S:
        if end is not None and info["audio_start"] >= end:
            print(f"warning: {source}: its audio starts at {info['audio_start']:.2f} s, after {span.text(start, end)}: "
                  "aud.wav is silence (--audio takes the speech from another file)", file=sys.stderr)
            return np.zeros(n_span, np.int16)
        print(f"warning: {source}: its audio starts at {info['audio_start']:.2f} s: the first {lead:.2f} s of aud.wav "
              "are silence", file=sys.stderr)
    if pcm.size == 0:
        if ctx.start is None and ctx.end is None:
            raise PreprocessError(f"{source}: the audio track is empty (damaged file?)")
        raise PreprocessError(f"{source}: no audio in {span.text(start, end)} (it has none there)")
    return pcm


def run(ctx: StepContext) -> None:
    """Write dataset/<name>/aud.wav from --audio if given, else from the video's audio track; --start/--end cut it."""
    source = Path(ctx.audio) if ctx.audio is not None else Path(ctx.video)
    info = _check_audio_file(source)
    has_span = ctx.start is not None or ctx.end is not None
    duration = probe(ctx.video)["duration"] if ctx.audio is not None and has_span else info["duration"]
    start, end = span.resolve(ctx, duration)
    if ctx.audio is not None:
        info = {**info, "audio_start": 0.0}  # --audio plays from the video's start: taken as aligned with it
    pcm = span_audio(source, info, ctx, start, end)
    with atomic_path(ctx.wav) as tmp:
        wavfile.write(tmp, SAMPLE_RATE, pcm)
    where = f" ({span.text(start, end)})" if has_span else ""
    print(f"  aud.wav: {pcm.size / SAMPLE_RATE:.2f} s at {SAMPLE_RATE} Hz from {source}{where}")
