"""New speech -> audio features [N,16,D] with the extractor the subject was preprocessed with (aud_meta.json),
computed chunk by chunk so that a long file renders in the memory of a short one."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from common.constants import HOP

CONTEXT_FRAMES = 25  # 1 s either side of a chunk: more than the extractors' windows and the attention's reach


class SpeechFeatures:
    """The features of new speech, read by frame ranges: `n` frames (ceil(duration * 25) for audio);
    `chunk(a, b) -> (feats float32 [b1 - a0, 16, D], a0)` covers frames [a0, b1) ⊇ [a - 25, b + 25) within [0, n).

    A .wav (or any audio/video file) goes through common.audio.load_audio and, per chunk, the extractor of the
    subject's aud_meta.json (on the chunk's samples plus 1 s of context, so each frame's features are those of the
    whole file; the network extractors, deepspeech and hubert, run once over the file); a .npy must already be
    [N,16,D] with the model's D (memory-mapped). loudness "match": the audio's features are computed at the loudness
    of the subject's own audio (common/loudness.py; `gain_db` says by how much), "keep": at the file's own level."""

    def __init__(self, aud: str | Path, datadir: str | Path, aud_dim: int, loudness: str = "match"):
        from common.audio_features import validate_given

        if loudness not in ("match", "keep"):
            raise ValueError(f"loudness must be match or keep, got {loudness!r}")
        self.path, self.wav, self.meta, self.gain_db = Path(aud), None, None, 0.0
        if self.path.suffix.lower() == ".npy":
            validate_given(self.path)
            self.given = np.load(self.path, mmap_mode="r", allow_pickle=False)
            self.n, dim = self.given.shape[0], self.given.shape[2]
        else:
            from common.audio import load_audio, n_frames_for

            self.meta = self._meta(Path(datadir) / "aud_meta.json")
            self.wav = load_audio(self.path, hint="give --aud a file with speech")
            self.n = n_frames_for(len(self.wav))
            if loudness == "match":
                self._match_level(Path(datadir))
            self.given = None
            if self.meta["extractor"] != "mfcc":  # network extractors: one pass (their model loads once)
                from common.audio_features import extract_features

                self.given = extract_features(self.wav, self.meta)
            dim = (self._extract(0, 1) if self.given is None else self.given).shape[2]
        if dim != aud_dim:
            raise ValueError(f"{aud}: audio features have D = {dim} but the model was trained on D = {aud_dim} "
                             "(use the extractor of the subject's aud_meta.json)")

    @staticmethod
    def _meta(meta_path: Path) -> dict:
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: missing, so new audio cannot be converted like the training "
                                    "audio; pass its features as a .npy [N,16,D]")
        meta = json.loads(meta_path.read_text())
        if "extractor" not in meta:
            raise ValueError(f"{meta_path}: no 'extractor' recorded; pass the new audio's features as a .npy [N,16,D]")
        return meta

    def _match_level(self, datadir: Path) -> None:
        """Scale self.wav (in place) to the subject's loudness, saying so in one line; self.gain_db: the dB added.
        MFCC features only: HuBERT normalises its input's level itself, DeepSpeech's input is clipped at full scale
        and its features normalised per file."""
        from common.loudness import level_gain, loudness, match_note, subject_loudness

        if self.meta["extractor"] != "mfcc":
            return
        target = subject_loudness(datadir, self.meta)
        if target is None:
            if "loudness_lufs" not in self.meta:  # a dataset from before step 2 recorded it, without its aud.wav
                print(f"note: {datadir}: the subject's loudness is unknown (no aud.wav); {self.path} is used at "
                      "its own level")
            return
        measured = loudness(self.path)
        self.gain_db = level_gain(measured, target)
        note = match_note(self.path, measured, target, self.gain_db)
        if note:
            print(note)
        if self.gain_db:
            self.wav *= np.float32(10 ** (self.gain_db / 20))

    def _extract(self, a0: int, b1: int) -> np.ndarray:
        """Features of frames [a0, b1) from the samples of those frames (the extractor pads at the ends)."""
        from common.audio_features import extract_features

        return extract_features(self.wav[a0 * HOP: b1 * HOP], self.meta)[: b1 - a0]

    def chunk(self, a: int, b: int) -> tuple[np.ndarray, int]:
        a0, b1 = max(0, a - CONTEXT_FRAMES), min(self.n, b + CONTEXT_FRAMES)
        if self.given is not None:
            return np.array(self.given[a0:b1], np.float32), a0  # a writable copy (the file may be mapped)
        return self._extract(a0, b1).astype(np.float32), a0

    @property
    def audio_seconds(self) -> float | None:
        from common.constants import SAMPLE_RATE

        return None if self.wav is None else len(self.wav) / SAMPLE_RATE


def load_features(aud: str | Path, datadir: str | Path, aud_dim: int,
                  loudness: str = "match") -> tuple[np.ndarray, np.ndarray | None]:
    """New speech -> (features float32 [N,16,D] of the whole file, wav float32 [T] 16 kHz (at the level its features
    were computed at) or None for a .npy)."""
    sf = SpeechFeatures(aud, datadir, aud_dim, loudness)
    return sf.chunk(0, sf.n)[0], sf.wav
