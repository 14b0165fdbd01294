"""A synthetic, vowel-like voice for the sample clip and for render tests (nothing downloaded).

A glottal pulse train at a wandering pitch goes through formant resonators whose frequencies change per
syllable, under a syllable envelope: 3-5 syllables a second, words split by short pauses, sentences by longer
silences. About a third of the syllables start with a bilabial (a quiet nasal murmur, "m"), during which the lips
are shut. Different `voice` numbers give a different pitch and rhythm, so tests can drive a model with speech
it was not trained on. `visemes` turns the syllables into per-frame mouth shapes: the lips spread on i / e and
round on o / u (`VOWEL_WIDTH`), and close on the bilabials: the sample clip's mouth follows what is said.

    python -m sample_data.speech --out speech.wav --seconds 5 --voice 1
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
from scipy import signal

from common.constants import FPS, SAMPLE_RATE

# Vowel formants (F1, F2, F3) in Hz and an "openness" gain (open vowels are louder).
VOWELS = {
    "a": ((750, 1200, 2500), 1.0),
    "e": ((500, 1800, 2500), 0.8),
    "i": ((300, 2200, 2900), 0.55),
    "o": ((500, 900, 2400), 0.85),
    "u": ((330, 800, 2300), 0.6),
}


VOWEL_WIDTH = {"a": 0.2, "e": 0.6, "i": 1.0, "o": -0.7, "u": -1.0}  # lip spread (+1) or rounding (-1) per vowel
BILABIAL_SHARE = 0.35  # share of syllables that start with lips shut (a nasal murmur)
BILABIAL_SECONDS = (0.06, 0.1)  # how long the lips stay shut at such a syllable's start
MURMUR_GAIN = 0.12  # the murmur's level relative to the vowel's


@dataclass(frozen=True)
class Syllable:
    start: float  # s
    dur: float  # s, the bilabial included
    vowel: str  # one of VOWELS
    closed: float  # s of lips shut at the start (0: the syllable starts on its vowel)


@dataclass(frozen=True)
class Voice:
    f0: float            # mean pitch, Hz
    syl_rate: float      # syllables per second while speaking
    word_pause: float    # mean pause between words, s
    sentence_pause: float  # mean silence between sentences, s


VOICES = [
    Voice(f0=190.0, syl_rate=4.0, word_pause=0.10, sentence_pause=0.55),
    Voice(f0=115.0, syl_rate=3.2, word_pause=0.16, sentence_pause=0.8),
    Voice(f0=240.0, syl_rate=4.8, word_pause=0.07, sentence_pause=0.4),
]


def _schedule(seconds: float, rng: np.random.Generator, voice: Voice) -> list[tuple[float, float, str]]:
    """Syllables as (start s, duration s, vowel). Starts and ends with a short silence."""
    sylls = []
    t = 0.25 + 0.2 * rng.random()
    end = seconds - 0.3
    while t < end:
        n_words = rng.integers(3, 8)                       # one sentence
        for _ in range(n_words):
            for _ in range(rng.integers(1, 4)):            # one word
                dur = rng.uniform(0.7, 1.3) / voice.syl_rate
                if t + dur > end:
                    return sylls
                sylls.append((t, dur, "aeiou"[rng.integers(5)]))
                t += dur
            t += voice.word_pause * rng.uniform(0.6, 1.5)
        t += voice.sentence_pause * rng.uniform(0.7, 1.6)
    return sylls


def _glottal_source(n: int, sr: int, f0: np.ndarray) -> np.ndarray:
    """Glottal flow derivative-like pulse train at per-sample pitch f0 [n] (Hz)."""
    phase = np.cumsum(f0 / sr) % 1.0                       # [n] in [0, 1)
    open_q = 0.6                                           # open quotient (Rosenberg pulse)
    flow = np.where(phase < open_q, 0.5 * (1 - np.cos(np.pi * phase / open_q)),
                    np.cos(0.5 * np.pi * (phase - open_q) / (1 - open_q)))
    return np.diff(flow, prepend=flow[0]).astype(np.float64) * sr / 200.0


def _resonator(freq: float, bw: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Second-order all-pole resonator (b, a) with unit gain at DC."""
    r = np.exp(-np.pi * bw / sr)
    a = np.array([1.0, -2 * r * np.cos(2 * np.pi * freq / sr), r * r])
    return np.array([a.sum()]), a


def synth_speech(seconds: float, seed: int = 0, sr: int = SAMPLE_RATE, voice: int = 0) -> np.ndarray:
    """Vowel-like speech, float32 [round(seconds*sr)] in [-1, 1]. Deterministic for (seconds, seed, sr, voice)."""
    return synth_speech_syllables(seconds, seed, sr, voice)[0]


def synth_speech_syllables(seconds: float, seed: int = 0, sr: int = SAMPLE_RATE, voice: int = 0,
                           held: tuple[tuple[float, float], ...] = ()) -> tuple[np.ndarray, list[Syllable]]:
    """`synth_speech` and the syllables it says (their timing, vowel and bilabial onset).

    held: (start s, end s) spans said as one sustained open "a" (the sample clip's expression spans, where the jaw
    drops fully: "aah" with the brows up), in place of the syllables that overlap them. The other syllables keep
    their timing, vowels and onsets (their random draws are made as without `held`)."""
    if seconds <= 0:
        raise ValueError(f"synth_speech: seconds must be > 0, got {seconds}")
    v = VOICES[voice % len(VOICES)]
    rng = np.random.default_rng([seed, voice])
    n = int(round(seconds * sr))
    t = np.arange(n) / sr

    # Pitch: slow drift + per-sentence declination-like wobble + a little jitter.
    f0 = v.f0 * (1 + 0.12 * np.sin(2 * np.pi * 0.23 * t + rng.uniform(0, 6.3))
                 + 0.06 * np.sin(2 * np.pi * 1.1 * t + rng.uniform(0, 6.3)))
    f0 *= 1 + 0.01 * signal.lfilter([0.05], [1, -0.95], rng.standard_normal(n))
    source = _glottal_source(n, sr, f0)
    voiced = source + 0.02 * rng.standard_normal(n)  # vowels: the voice and a little breath

    out = np.zeros(n)
    onset_rng = np.random.default_rng([seed, voice, 1])  # its own stream: the syllable timing and pitch draws stay
    sylls = []
    for start, dur, vowel in _schedule(seconds, rng, v):
        closed = onset_rng.uniform(*BILABIAL_SECONDS) if onset_rng.random() < BILABIAL_SHARE else 0.0
        jitter, gain = rng.uniform(0.93, 1.07, 3), rng.uniform(0.75, 1.0)  # drawn for every syllable, said or not
        if any(start < h1 and start + dur > h0 for h0, h1 in held):
            continue
        sylls.append(Syllable(start, dur, vowel, closed))
        if closed:  # the murmur: the voice through one low nasal resonance, quiet
            j0, j1 = int(start * sr), min(n, int((start + closed) * sr))
            b, a = _resonator(250.0, 80.0, sr)
            hum = signal.lfilter(b, a, source[j0:j1])
            out[j0:j1] += hum / (np.abs(hum).max() + 1e-9) * MURMUR_GAIN * VOWELS[vowel][1]
            start, dur = start + closed, dur - closed
        _add_vowel(out, voiced, vowel, int(start * sr), min(n, int((start + dur) * sr)), jitter, gain, sr)
    for h0, h1 in held:
        i0, i1 = max(0, int(h0 * sr)), min(n, int(h1 * sr))
        if i1 > i0:
            sylls.append(Syllable(i0 / sr, (i1 - i0) / sr, "a", 0.0))
            _add_vowel(out, voiced, "a", i0, i1, np.ones(3), 1.0, sr)
    sylls.sort(key=lambda syl: syl.start)
    out = out / (np.abs(out).max() + 1e-9) * 0.8
    return out.astype(np.float32), sylls


def _add_vowel(out: np.ndarray, source: np.ndarray, vowel: str, i0: int, i1: int, jitter: np.ndarray, gain: float,
               sr: int) -> None:
    """Add source[i0:i1] through the vowel's formant cascade (frequencies times jitter [3]) under the syllable
    envelope (raised-cosine attack and decay over 30% each) to out[i0:i1], scaled to peak gain x the vowel's own."""
    formants, vowel_gain = VOWELS[vowel]
    seg = source[i0:i1]
    for k, f in enumerate(formants):  # cascade of formant resonators
        b, a = _resonator(f * jitter[k], 60 + 40 * k, sr)
        seg = signal.lfilter(b, a, seg)
    m = i1 - i0
    ramp = max(1, int(0.3 * m))
    e = np.ones(m)
    e[:ramp] = 0.5 * (1 - np.cos(np.pi * np.arange(ramp) / ramp))
    e[m - ramp:] = e[:ramp][::-1]
    out[i0:i1] += seg / (np.abs(seg).max() + 1e-9) * e * vowel_gain * gain


def visemes(sylls: list[Syllable], n_frames: int, fps: int = FPS) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per video frame: lip width [n] in [-1, 1] (spread +, rounded -; 0 at rest), lips shut [n] in [0, 1], and
    the viseme's name ('a'..'u', 'm' for shut lips, '-' for silence). Frame i is the sound at (i + 0.5) / fps;
    width and shut are smoothed over ~40 ms (the lips move between shapes, not in steps)."""
    t = (np.arange(n_frames) + 0.5) / fps
    width, shut, names = np.zeros(n_frames), np.zeros(n_frames), ["-"] * n_frames
    for syl in sylls:
        in_syl = (t >= syl.start) & (t < syl.start + syl.dur)
        lips = in_syl & (t < syl.start + syl.closed)
        vowel = in_syl & ~lips
        width[vowel], shut[lips] = VOWEL_WIDTH[syl.vowel], 1.0
        for i in np.flatnonzero(in_syl):
            names[i] = "m" if lips[i] else syl.vowel
    kernel = np.array([0.25, 0.5, 0.25])
    smooth = lambda x: np.convolve(np.pad(x, 1, mode="edge"), kernel, mode="valid")  # noqa: E731
    return smooth(width).astype(np.float32), np.maximum(shut, smooth(shut)).astype(np.float32), names


def loudness_envelope(wav: np.ndarray, sr: int = SAMPLE_RATE, fps: int = FPS) -> np.ndarray:
    """RMS per video frame, float32 [ceil(T * fps / sr)] (frame i covers samples [i*sr/fps, (i+1)*sr/fps))."""
    hop = sr // fps
    n = -(-len(wav) // hop)
    padded = np.zeros(n * hop, np.float64)
    padded[: len(wav)] = wav
    return np.sqrt((padded.reshape(n, hop) ** 2).mean(1)).astype(np.float32)


def mouth_opening(wav: np.ndarray, sr: int = SAMPLE_RATE, fps: int = FPS) -> np.ndarray:
    """Mouth opening per frame in [0, 1], float32 [N]: smoothed loudness, 0 in silence, ~1 on loud vowels."""
    rms = loudness_envelope(wav, sr, fps)
    ref = np.percentile(rms[rms > 0], 95) if np.any(rms > 0) else 1.0
    level = np.clip(rms / (ref + 1e-9), 0, None)
    # Smooth a little (the jaw is slower than the voice), then squash into [0, 1].
    level = np.convolve(np.pad(level, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")
    opening = np.clip((level - 0.08) / 0.8, 0.0, 1.0)
    return opening.astype(np.float32)


def main(argv: list[str] | None = None) -> None:
    from scipy.io import wavfile

    from common.fileio import atomic_path

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output .wav (16-bit PCM, mono)")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--voice", type=int, default=1, help=f"0..{len(VOICES) - 1}: pitch and rhythm")
    p.add_argument("--sr", type=int, default=SAMPLE_RATE)
    a = p.parse_args(argv)
    wav = synth_speech(a.seconds, a.seed, a.sr, a.voice)
    with atomic_path(a.out) as tmp:
        wavfile.write(tmp, a.sr, (wav * 32767).astype(np.int16))
    print(a.out)


if __name__ == "__main__":
    main()
