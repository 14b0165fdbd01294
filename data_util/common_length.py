"""One length for the audio and the frames: aud.npy has exactly one row per frame of ori_imgs.

When the audio and the video differ in length, the common part is kept: the longer one loses its end (feature row i
goes with frame i, both at i / 25 s). Steps 2 (audio_features) and 3 (video) each cut their own output to the
other's length, so the result is the same whichever runs last:
- video keeps min(decoded frames, audio frames) frames, the audio's count being --aud_npy's rows or
  ceil(samples / 640) of aud.wav, and cuts an existing aud.npy that has more rows (`aud.npy[:n]`);
- audio_features keeps min(its rows, the video's decoded frames) rows once step 3 is current.
Features are always computed on the whole audio and then cut, so their normalisation does not depend on the order.
The step that cuts says so in one line. If the other step's output cannot be cut to fit (new audio longer than frames
cut for an older one, or an aud.npy cut for fewer frames than there are now), that step is marked to run again.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.io import wavfile

from .context import FPS, SAMPLE_RATE, StepContext
from common.audio import n_frames_for  # noqa: F401  (the steps import it from here)
from common.fileio import save_json, save_npy
from .markers import invalidate, is_current



def audio_length(ctx: StepContext) -> tuple[int, float, str] | None:
    """(frames, seconds, name) of the audio: --aud_npy's rows, else aud.wav's; None while neither can be read."""
    try:
        if ctx.aud_npy is not None:
            rows = int(np.load(ctx.aud_npy, mmap_mode="r").shape[0])
            return (rows, rows / FPS, f"audio features ({Path(ctx.aud_npy).name})") if rows > 0 else None
        if ctx.wav.is_file():
            samples = len(wavfile.read(ctx.wav, mmap=True)[1])
            return n_frames_for(samples), samples / SAMPLE_RATE, "audio"
    except (OSError, ValueError, IndexError):
        pass
    return None


def plural(n: int) -> str:
    return f"{n} frame" if n == 1 else f"{n} frames"


def say_dropped(longer: str, seconds: float, frames: int, shorter: str) -> None:
    """The one line that says what the common length drops."""
    print(f"  {longer}: {max(seconds, 0):.2f} s ({plural(frames)}) longer than the {shorter}; its end is dropped")


def frames_to_keep(ctx: StepContext, decoded: int) -> int:
    """Step 3: how many of its decoded frames to keep: all of them, or as many as the audio covers."""
    audio = audio_length(ctx)
    if audio is None or audio[0] >= decoded:
        return decoded
    frames, seconds, name = audio
    say_dropped("video", decoded / FPS - seconds, decoded - frames, name)
    return frames


def fit_saved_features(ctx: StepContext, n_frames: int) -> None:
    """Step 3: cut an existing aud.npy to n_frames rows; if it has fewer, mark step 2 to compute it again."""
    if not ctx.aud_npy_out.is_file():
        return
    feats = np.load(ctx.aud_npy_out)
    if len(feats) < n_frames:
        invalidate(ctx, {"audio_features"}, f"aud.npy has {len(feats)} rows for {n_frames} frames")
    elif len(feats) > n_frames:
        announce_cut(ctx, len(feats), n_frames)
        save_npy(ctx.aud_npy_out, feats[:n_frames])
        set_meta_frames(ctx, n_frames)


def announce_cut(ctx: StepContext, rows: int, n_frames: int) -> None:
    audio = audio_length(ctx)
    seconds = audio[1] - n_frames / FPS if audio else (rows - n_frames) / FPS
    say_dropped(audio[2] if audio else "audio", seconds, rows - n_frames, "video")


def set_meta_frames(ctx: StepContext, n_frames: int) -> None:
    path = ctx.out_dir / "aud_meta.json"
    if path.is_file():
        save_json(path, {**json.loads(path.read_text()), "n_frames": n_frames})


def rows_to_keep(ctx: StepContext, rows: int) -> int:
    """Step 2: how many of its rows to keep: all until step 3 is current, then min(rows, decoded frames). Marks
    step 3 to run again when its frames were cut for audio of another length."""
    if not is_current(ctx, "video"):
        return rows
    frames = len(ctx.frame_paths())
    try:
        decoded = int(json.loads((ctx.out_dir / "video_meta.json").read_text()).get("decoded_frames", frames))
    except (OSError, ValueError):
        decoded = frames
    keep = min(rows, decoded)
    if keep != frames:
        invalidate(ctx, {"video"}, f"its {frames} frames were cut for audio of another length; this one covers {keep}")
    elif rows > keep:
        announce_cut(ctx, rows, keep)
    return keep
