"""Step 2: audio features `aud.npy` float32 [N_frames, 16, D] + `aud_meta.json` from aud.wav (or --aud_npy copied).

The layout and the extractors are in common/audio_features.py (render.py converts new speech with them too).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from common.audio import read_wav
from common.audio_features import (STD_FLOOR, WINDOW, add_stats, check_model_path, extract_features,  # noqa: F401
                                   finish, make_meta, raw_steps, validate_given, window_frames)
from common.errors import PreprocessError
from common.fileio import atomic_path, save_json, save_npy
from common.loudness import loudness

from .common_length import n_frames_for, rows_to_keep
from .context import StepContext


def copy_given(ctx: StepContext, src: Path, arr: np.ndarray) -> None:
    """--aud_npy: copy the file as is (or its first rows, cut to the frames) and write aud_meta.json."""
    keep = rows_to_keep(ctx, len(arr))
    if keep == len(arr):
        with atomic_path(ctx.aud_npy_out) as tmp:
            shutil.copyfile(src, tmp)
    else:
        save_npy(ctx.aud_npy_out, arr[:keep])
    meta = {"extractor": "given", "source": str(src.resolve()), "dim": int(arr.shape[2]),
            "n_frames": keep, "dtype": str(arr.dtype), "window": WINDOW, "mean": None, "std": None}
    save_json(ctx.out_dir / "aud_meta.json", meta)
    print(f"  aud.npy: {[keep, *arr.shape[1:]]} copied from {src}")


def run(ctx: StepContext) -> None:
    """Write aud.npy and aud_meta.json from aud.wav (or copy --aud_npy), one row per frame (data_util.common_length)."""
    if ctx.aud_npy is not None:
        src = Path(ctx.aud_npy)
        copy_given(ctx, src, validate_given(src))
        return
    if not ctx.wav.is_file():
        raise PreprocessError(f"{ctx.wav}: not found; run step 1 (audio) first")
    backend = ctx.aud_backend
    model = check_model_path(backend, ctx.aud_model) if backend != "mfcc" else None
    wav = read_wav(ctx.wav)
    meta = make_meta(backend, model)
    steps = raw_steps(wav, meta, 2 * n_frames_for(len(wav)))
    add_stats(meta, steps)  # on the whole audio, so that a later cut to the frames changes no row
    level = loudness(ctx.wav)  # render.py brings new speech to it (common/loudness.py)
    meta["loudness_lufs"] = None if level is None else round(level, 2)
    feats = finish(steps, meta)
    feats = feats[:rows_to_keep(ctx, len(feats))]
    meta["n_frames"] = len(feats)
    save_npy(ctx.aud_npy_out, feats)
    save_json(ctx.out_dir / "aud_meta.json", meta)
    print(f"  aud.npy: {list(feats.shape)} ({backend})")
