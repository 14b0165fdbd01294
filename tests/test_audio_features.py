"""Step 2 (data_util.audio_features): [N, 16, D] windows at 25 fps, normalisation, loudness and vowel content,
exact reproduction by extract_features, --aud_npy, and the optional back-ends' errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile
from scipy.signal import lfilter

from data_util import audio_features as af
from data_util.context import StepContext
from common.errors import PreprocessError

SR = 16000


def write_wav(path: Path, wav: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, SR, (np.clip(wav, -1, 1) * 32767).astype(np.int16))
    return path


def vowel(formants: tuple, seconds: float, f0: float = 120.0, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    """A glottal pulse train through second-order resonators at the formant frequencies (a crude vowel)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    src = np.zeros(n)
    period = SR / f0
    src[(np.arange(0, n, period) + rng.normal(0, 2, len(np.arange(0, n, period)))).astype(int).clip(0, n - 1)] = 1
    out = src
    for f in formants:
        r = math.exp(-math.pi * 80 / SR)
        out = lfilter([1 - r], [1, -2 * r * math.cos(2 * math.pi * f / SR), r * r], out)
    return (amp * out / np.abs(out).max()).astype(np.float32)


def mfcc_features(wav: np.ndarray) -> tuple[np.ndarray, dict]:
    meta = af.make_meta("mfcc")
    steps = af.raw_steps(wav, meta, 2 * af.n_frames_for(len(wav)))
    af.add_stats(meta, steps)
    return af.finish(steps, meta), meta


@pytest.mark.parametrize("n_samples,n_frames", [(16000, 25), (16001, 26), (640 * 3, 3), (100, 1)])
def test_shape_one_row_per_frame(n_samples, n_frames):
    wav = np.random.default_rng(0).normal(0, 0.1, n_samples).astype(np.float32)
    feats, meta = mfcc_features(wav)
    assert feats.shape == (n_frames, 16, 26) and feats.dtype == np.float32 and meta["dim"] == 26
    assert np.isfinite(feats).all()


def test_window_layout_matches_adnerf():
    steps = np.arange(20, dtype=float)[:, None]  # 10 frames' worth of 50 Hz steps, value = step index
    win = af.window_frames(steps, 10)[..., 0]
    assert win.shape == (10, 16)
    np.testing.assert_array_equal(win[5], np.arange(2, 18))  # frame i: steps 2i-8 .. 2i+7
    np.testing.assert_array_equal(win[0], [0] * 8 + list(range(8)))  # edge-padded at the start
    np.testing.assert_array_equal(win[9], list(range(10, 20)) + [19] * 6)  # and at the end


def test_click_lands_on_its_frame():
    """A 10 ms burst at t = 1.00 s peaks in frame 25 at window position 8 (the step at i * 40 ms)."""
    wav = np.zeros(2 * SR, np.float32)
    wav[SR - 80:SR + 80] = np.random.default_rng(1).normal(0, 0.3, 160)
    feats, _ = mfcc_features(wav)
    energy = feats[:, 8, 0]
    assert int(np.argmax(energy)) == 25
    assert int(np.argmax(feats[25, :, 0])) == 8


def test_normalised_with_subjects_own_stats():
    wav = np.concatenate([vowel((700, 1200), 1.0), vowel((300, 2300), 1.0, amp=0.05)])
    feats, meta = mfcc_features(wav)
    centre = feats[:, 8, :]  # one row per frame, every step of the clip once per two frames
    assert np.abs(centre.mean(axis=0)).max() < 0.15
    assert np.all((centre.std(axis=0) > 0.7) & (centre.std(axis=0) < 1.3))
    assert len(meta["mean"]) == len(meta["std"]) == 26 and min(meta["std"]) >= af.STD_FLOOR


def test_loudness_is_represented():
    """Log energy (dim 0) follows the loudness: correlation with the frame's log RMS > 0.95."""
    rng = np.random.default_rng(2)
    levels = np.repeat(rng.uniform(0.005, 0.5, 20), SR // 10)  # 20 segments of 100 ms, random levels
    wav = (vowel((700, 1200), 2.0) / 0.3 * levels).astype(np.float32)
    feats, _ = mfcc_features(wav)
    frames = wav[: len(feats) * 640].reshape(-1, 640)
    log_rms = np.log(np.sqrt((frames ** 2).mean(axis=1)) + 1e-6)
    assert np.corrcoef(feats[:, 8, 0], log_rms)[0, 1] > 0.95


def test_vowels_are_told_apart_at_equal_loudness():
    """/a/ (F1 700, F2 1200) and /i/ (F1 300, F2 2300): class means of MFCC c1..c12 far apart (> 3 spreads)."""
    a, i = vowel((700, 1200), 1.0, seed=3), vowel((300, 2300), 1.0, seed=4)
    feats, _ = mfcc_features(np.concatenate([a, i]))
    ceps = feats[:, 8, 1:13]
    fa, fi = ceps[3:22], ceps[28:47]  # frames well inside each vowel
    gap = np.linalg.norm(fa.mean(0) - fi.mean(0))
    spread = np.sqrt(((fa - fa.mean(0)) ** 2).sum(1).mean()) + np.sqrt(((fi - fi.mean(0)) ** 2).sum(1).mean())
    assert gap > 3 * spread / 2


def ctx_for(tmp_path: Path, **kw) -> StepContext:
    return StepContext(name="x", video=tmp_path / "v.mp4", out_dir=tmp_path / "out", **kw)


def test_run_and_extract_features_reproduce_aud_npy_exactly(tmp_path):
    ctx = ctx_for(tmp_path)
    wav = np.concatenate([vowel((700, 1200), 0.7), np.zeros(SR // 3, np.float32), vowel((300, 2300), 0.9)])
    write_wav(ctx.wav, wav)
    af.run(ctx)
    aud = np.load(ctx.aud_npy_out)
    meta = json.loads((ctx.out_dir / "aud_meta.json").read_text())
    assert aud.shape == (math.ceil(len(wav) / 640), 16, 26) and aud.dtype == np.float32
    assert meta["extractor"] == "mfcc" and meta["dim"] == 26 and meta["settings"]["hop_s"] == 0.02
    from data_util.audio import read_wav
    from common.loudness import loudness
    assert meta["loudness_lufs"] == loudness(ctx.wav) and -40 < meta["loudness_lufs"] < -5  # what new speech is brought to
    np.testing.assert_array_equal(af.extract_features(read_wav(ctx.wav), meta), aud)
    new = af.extract_features(vowel((500, 1500), 0.5), meta)  # new speech: same settings and stats
    assert new.shape == (13, 16, 26) and np.isfinite(new).all()


def test_run_needs_aud_wav(tmp_path):
    with pytest.raises(PreprocessError, match=r"aud\.wav: not found; run step 1"):
        af.run(ctx_for(tmp_path))


def test_given_aud_npy_copied_as_is(tmp_path):
    src = tmp_path / "adnerf_aud.npy"
    arr = np.random.default_rng(0).normal(size=(30, 16, 29)).astype(np.float32)
    np.save(src, arr)
    ctx = ctx_for(tmp_path, aud_npy=src)
    af.run(ctx)
    assert ctx.aud_npy_out.read_bytes() == src.read_bytes()
    meta = json.loads((ctx.out_dir / "aud_meta.json").read_text())
    assert meta["extractor"] == "given" and meta["dim"] == 29 and meta["n_frames"] == 30
    with pytest.raises(ValueError, match="--aud_npy"):
        af.extract_features(np.zeros(SR, np.float32), meta)


@pytest.mark.parametrize("content,message", [
    (np.zeros((30, 29), np.float32), r"shape \[30, 29\], expected \[N_frames, 16, D\]"),
    (np.full((4, 16, 29), np.nan, np.float32), "must hold finite"),
    (None, "file not found"),
])
def test_given_aud_npy_validated(tmp_path, content, message):
    src = tmp_path / "bad.npy"
    if content is not None:
        np.save(src, content)
    with pytest.raises(PreprocessError, match=r"bad\.npy: " + message):
        af.run(ctx_for(tmp_path, aud_npy=src))
    assert not (tmp_path / "out" / "aud.npy").exists()


@pytest.mark.parametrize("backend", ["deepspeech", "hubert"])
def test_optional_backends_need_a_model_path(tmp_path, backend):
    ctx = ctx_for(tmp_path, aud_backend=backend)
    write_wav(ctx.wav, vowel((700, 1200), 0.5))
    with pytest.raises(PreprocessError, match=f"--aud_backend {backend} needs --aud_model"):
        af.run(ctx)
    ctx.aud_model = tmp_path / "missing_model"
    with pytest.raises(PreprocessError, match=r"missing_model: (file not found|no config\.json there)"):
        af.run(ctx)
    assert not ctx.aud_npy_out.exists()


def test_deepspeech_without_tensorflow_says_what_to_install(tmp_path):
    try:
        import tensorflow  # noqa: F401
        pytest.skip("tensorflow is installed: the missing-tensorflow message cannot be tested")
    except ImportError:
        pass
    graph = tmp_path / "deepspeech-0_1_0-b90017e8.pb"
    graph.write_bytes(b"\0" * 16)
    ctx = ctx_for(tmp_path, aud_backend="deepspeech", aud_model=graph)
    write_wav(ctx.wav, vowel((700, 1200), 0.5))
    with pytest.raises(PreprocessError, match=r"need tensorflow \(pip install tensorflow\)"):
        af.run(ctx)


def test_hubert_tiny_local_model(tmp_path):
    transformers = pytest.importorskip(
        "transformers", reason="transformers is not installed: the optional hubert back-end is not tested")
    import torch

    torch.manual_seed(0)
    cfg = transformers.HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                                    num_conv_pos_embedding_groups=2)
    transformers.HubertModel(cfg).save_pretrained(tmp_path / "tiny_hubert")
    ctx = ctx_for(tmp_path, aud_backend="hubert", aud_model=tmp_path / "tiny_hubert")
    wav = np.concatenate([vowel((700, 1200), 0.8), vowel((300, 2300), 0.7)])
    write_wav(ctx.wav, wav)
    af.run(ctx)
    aud = np.load(ctx.aud_npy_out)
    meta = json.loads((ctx.out_dir / "aud_meta.json").read_text())
    assert aud.shape == (math.ceil(len(wav) / 640), 16, 32) and meta["extractor"] == "hubert"
    from data_util.audio import read_wav
    np.testing.assert_allclose(af.extract_features(read_wav(ctx.wav), meta), aud, atol=1e-5)
