"""New speech -> audio features [N,16,D] with the extractor the subject was preprocessed with (aud_meta.json)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def load_features(aud: str | Path, datadir: str | Path, aud_dim: int) -> tuple[np.ndarray, np.ndarray | None]:
    """New speech -> (features float32 [N,16,D], wav float32 [T] 16 kHz or None for a .npy).

    A .wav (or any audio/video file) goes through common.audio.load_audio and the extractor that the subject's
    aud_meta.json records; a .npy must already be [N,16,D] with the model's D."""
    from common.audio_features import validate_given

    aud = Path(aud)
    if aud.suffix.lower() == ".npy":
        feats = validate_given(aud)
        wav = None
    else:
        from common.audio import load_audio
        from common.audio_features import extract_features

        wav = load_audio(aud)
        meta_path = Path(datadir) / "aud_meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: missing, so new audio cannot be converted like the training "
                                    "audio; pass its features as a .npy [N,16,D]")
        meta = json.loads(meta_path.read_text())
        if "extractor" not in meta:
            raise ValueError(f"{meta_path}: no 'extractor' recorded; pass the new audio's features as a .npy [N,16,D]")
        feats = extract_features(wav, meta)
    if feats.shape[2] != aud_dim:
        raise ValueError(f"{aud}: audio features have D = {feats.shape[2]} but the model was trained on D = {aud_dim} "
                         "(use the extractor of the subject's aud_meta.json)")
    return feats.astype(np.float32), wav
