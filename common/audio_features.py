"""Audio features [N_frames, 16, D] (the extractors; data_util.audio_features is the preprocessing step).

Layout (AD-NeRF's): feature steps at 50 Hz (step k centred at k * 20 ms); video frame i (at i * 40 ms, 25 fps) gets
the 16 steps 2i-8 .. 2i+7, the ends padded by repeating the first/last step. ceil(T / 640) rows, then cut to the
number of frames when the video is shorter (data_util.common_length: one row per frame of ori_imgs).

Extractors:
- `mfcc` (default, offline): log frame energy + MFCC c1..c12 (25 ms Hamming windows, 26 mel bands) and their
  deltas -> D = 26; each dim normalised with the subject's own mean/std (kept in aud_meta.json).
- `deepspeech`: AD-NeRF's frozen DeepSpeech graph (.pb, needs tensorflow) -> D = 29 character logits, not
  normalised (so they match AD-NeRF's own aud.npy).
- `hubert`: a local HuggingFace HuBERT / wav2vec2 folder (needs transformers) -> last hidden state, resampled to
  50 Hz, normalised like mfcc.
- `given`: `--aud_npy` an existing [N, 16, D] array (AD-NeRF's DeepSpeech features), copied as is.

`extract_features(wav, meta)` applies the extractor and normalisation recorded in aud_meta.json to any 16 kHz audio;
its first rows on the training audio reproduce aud.npy exactly (render.py uses it for new speech).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import python_speech_features as psf
from numpy.lib.stride_tricks import sliding_window_view
from scipy.fft import dct, idct

from common.audio import n_frames_for
from common.constants import SAMPLE_RATE
from common.errors import PreprocessError

HOP = SAMPLE_RATE // 50  # 320 samples = 20 ms between feature steps
WINDOW = 16  # feature steps per video frame
SPEECH_LOW_HZ = 80.0  # band_readout: below this, hum and rumble, no speech
MFCC_SETTINGS = {"winlen_s": 0.025, "hop_s": 0.02, "nfilt": 26, "nfft": 512, "numcep": 13, "preemph": 0.97,
                 "ceplifter": 22, "delta_n": 2, "power_floor": 1e-8, "window": "hamming"}
STD_FLOOR = 1e-3  # a dim that never changes is divided by this, not by ~0


# ---------------------------------------------------------------- windowing
def window_frames(steps: np.ndarray, n_frames: int) -> np.ndarray:
    """steps [M, D] at 50 Hz (M >= 2 * n_frames) -> [n_frames, 16, D]: frame i gets steps 2i-8 .. 2i+7 (edge-padded)."""
    half = WINDOW // 2
    steps = steps[: 2 * n_frames]
    if len(steps) < 2 * n_frames:  # extractors always give enough; this keeps the layout for short inputs
        steps = np.pad(steps, ((0, 2 * n_frames - len(steps)), (0, 0)), mode="edge")
    padded = np.pad(steps, ((half, half), (0, 0)), mode="edge")  # [M + 16, D]
    win = sliding_window_view(padded, WINDOW, axis=0)[::2][:n_frames]  # [N, D, 16]
    return np.ascontiguousarray(win.transpose(0, 2, 1))


def resample_steps(times: np.ndarray, feats: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Linear interpolation of feats [n, D] at times [n] (increasing) onto targets [M] (held at the ends) -> [M, D]."""
    idx = np.clip(np.searchsorted(times, targets) - 1, 0, len(times) - 2) if len(times) > 1 else None
    if idx is None:
        return np.repeat(feats[:1], len(targets), axis=0)
    t0, t1 = times[idx], times[idx + 1]
    w = np.clip((targets - t0) / np.maximum(t1 - t0, 1e-12), 0.0, 1.0)[:, None]
    return feats[idx] * (1 - w) + feats[idx + 1] * w


# ---------------------------------------------------------------- extractors: wav [T] -> steps [2N, D] at 50 Hz
def mfcc_steps(wav: np.ndarray, settings: dict, n_steps: int) -> np.ndarray:
    """Log energy, MFCC c1..c(numcep-1) and their deltas, one row per 20 ms step centred on k * 20 ms -> [n_steps, 2 * numcep]."""
    win = int(round(settings["winlen_s"] * SAMPLE_RATE))
    hop = int(round(settings["hop_s"] * SAMPLE_RATE))
    x = psf.sigproc.preemphasis(wav.astype(np.float64), settings["preemph"])
    need = (n_steps - 1) * hop + win
    x = np.pad(x, (win // 2, max(0, need - win // 2 - len(x))))  # step k covers samples [k*hop - win/2, k*hop + win/2)
    frames = sliding_window_view(x, win)[::hop][:n_steps] * np.hamming(win)  # [n_steps, win]
    pspec = psf.sigproc.powspec(frames, settings["nfft"])  # [n_steps, nfft/2 + 1]
    fb = psf.get_filterbanks(settings["nfilt"], settings["nfft"], SAMPLE_RATE)  # [nfilt, nfft/2 + 1]
    floor = settings["power_floor"]
    log_mel = np.log(np.maximum(pspec @ fb.T, floor))  # [n_steps, nfilt]
    ceps = dct(log_mel, type=2, axis=1, norm="ortho")[:, : settings["numcep"]]
    ceps = psf.base.lifter(ceps, settings["ceplifter"])
    ceps[:, 0] = np.log(np.maximum(pspec.sum(axis=1), floor))  # c0 -> log frame energy (loudness)
    deltas = psf.delta(ceps, settings["delta_n"])
    return np.concatenate([ceps, deltas], axis=1)


def deepspeech_steps(wav: np.ndarray, model: Path, n_steps: int) -> np.ndarray:
    """AD-NeRF's DeepSpeech features: 29 character logits at 50 Hz from its frozen graph -> [n_steps, 29]."""
    try:
        import tensorflow as tf
    except ImportError:
        raise PreprocessError(f"{model}: deepspeech features need tensorflow (pip install tensorflow), "
                              "or use the default --aud_backend mfcc") from None
    # MFCC input exactly as AD-NeRF's deepspeech_features.py: 26 ceps at 100 Hz, every 2nd, +-9 frames of context.
    audio = (np.clip(wav, -1, 1) * 32767).astype(np.int16)
    feats = psf.mfcc(audio, samplerate=SAMPLE_RATE, numcep=26)[::2]
    ctx = np.zeros((9, 26), feats.dtype)
    padded = np.concatenate([ctx, feats, ctx])
    inputs = sliding_window_view(padded, 19, axis=0)[: len(feats)].transpose(0, 2, 1).reshape(len(feats), -1)
    inputs = (inputs - inputs.mean()) / inputs.std()
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(Path(model).read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="deepspeech")
    with tf.compat.v1.Session(graph=graph) as sess:
        logits = sess.run(graph.get_tensor_by_name("deepspeech/logits:0"), feed_dict={
            graph.get_tensor_by_name("deepspeech/input_node:0"): inputs[np.newaxis],
            graph.get_tensor_by_name("deepspeech/input_lengths:0"): [len(inputs)]})
    logits = np.asarray(logits)[:, 0].astype(np.float64)  # [n, 29], step j at j * 20 ms (AD-NeRF's timing)
    return resample_steps(np.arange(len(logits)) * 0.02, logits, np.arange(n_steps) * 0.02)


def hubert_steps(wav: np.ndarray, model: Path, n_steps: int, chunk_s: float = 20.0, context_s: float = 1.0) -> np.ndarray:
    """Last hidden state of a local HuBERT / wav2vec2 folder, resampled onto 50 Hz steps -> [n_steps, hidden]."""
    try:
        import torch
        from transformers import AutoConfig, AutoModel
    except ImportError:
        raise PreprocessError(f"{model}: hubert features need the transformers package (pip install transformers), "
                              "or use the default --aud_backend mfcc") from None
    config = AutoConfig.from_pretrained(model, local_files_only=True)
    net = AutoModel.from_pretrained(model, local_files_only=True).eval()
    strides, kernels = list(config.conv_stride), list(config.conv_kernel)
    stride = int(np.prod(strides))
    field = 1 + sum((k - 1) * int(np.prod(strides[:i])) for i, k in enumerate(kernels))  # receptive field, samples
    prep = Path(model) / "preprocessor_config.json"  # HuggingFace's feature-extractor settings, if any
    normalise_input = prep.is_file() and bool(json.loads(prep.read_text()).get("do_normalize", False))
    x = wav.astype(np.float32)
    if normalise_input:
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    chunk, ctx = int(chunk_s * SAMPLE_RATE), int(context_s * SAMPLE_RATE)
    times, feats = [], []
    for start in range(0, max(len(x), 1), chunk):
        lo, hi = max(0, start - ctx), min(len(x), start + chunk + ctx)
        seg = x[lo:hi]
        if len(seg) < field:
            seg = np.pad(seg, (0, field - len(seg)))
        with torch.no_grad():
            out = net(torch.from_numpy(seg)[None]).last_hidden_state[0].double().numpy()  # [n, hidden]
        centres = (lo + np.arange(len(out)) * stride + (field - 1) / 2) / SAMPLE_RATE  # seconds
        keep = (centres >= start / SAMPLE_RATE) & (centres < (start + chunk) / SAMPLE_RATE)
        times.append(centres[keep])
        feats.append(out[keep])
    times_all, feats_all = np.concatenate(times), np.concatenate(feats)
    if len(times_all) == 0:  # audio shorter than one receptive field: take the one output there is
        times_all, feats_all = centres[:1], out[:1]
    return resample_steps(times_all, feats_all, np.arange(n_steps) * HOP / SAMPLE_RATE)


# ---------------------------------------------------------------- the public functions
def check_model_path(backend: str, model: Path | None) -> Path:
    """The --aud_model path for deepspeech/hubert, or a one-line PreprocessError saying what to pass."""
    what = {"deepspeech": "AD-NeRF's frozen DeepSpeech graph (deepspeech-0_1_0-b90017e8.pb)",
            "hubert": "a local HuggingFace HuBERT/wav2vec2 model folder (e.g. hubert-large-ls960-ft)"}[backend]
    if model is None:
        raise PreprocessError(f"--aud_backend {backend} needs --aud_model: {what}; nothing is downloaded")
    model = Path(model)
    if backend == "deepspeech" and not model.is_file():
        raise PreprocessError(f"{model}: file not found (--aud_model must be {what})")
    if backend == "hubert" and not (model / "config.json").is_file():
        raise PreprocessError(f"{model}: no config.json there (--aud_model must be {what})")
    return model


def raw_steps(wav: np.ndarray, meta: dict, n_steps: int) -> np.ndarray:
    """The un-normalised 50 Hz features [n_steps, D] of the extractor that meta names."""
    extractor = meta["extractor"]
    if extractor == "mfcc":
        return mfcc_steps(wav, meta["settings"], n_steps)
    if extractor in ("deepspeech", "hubert"):
        model = check_model_path(extractor, meta.get("model"))
        fn = deepspeech_steps if extractor == "deepspeech" else hubert_steps
        return fn(wav, model, n_steps)
    if extractor == "given":
        raise ValueError("aud_meta.json: the training features were given as a file (--aud_npy), so new audio "
                         "cannot be converted here: pass its features as a .npy made by the same extractor")
    raise ValueError(f"aud_meta.json: unknown audio feature extractor {extractor!r}")


def finish(steps: np.ndarray, meta: dict) -> np.ndarray:
    """Raw 50 Hz steps [2N, D] -> normalised (if meta has stats) and windowed float32 [N, 16, D]."""
    if meta.get("mean") is not None:
        steps = (steps - np.asarray(meta["mean"])) / np.asarray(meta["std"])
    return window_frames(steps, len(steps) // 2).astype(np.float32)


def band_readout(meta: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """How to read each 50 Hz step's spectrum back from the normalised `mfcc` features, to undo the pre-emphasis:
    (W [numcep-1, nfilt], b [nfilt], gain [nfilt]) with log mel-band energy, up to a constant per step, ~= feats[...,
    1:numcep] @ W + b (c1.. un-normalised, un-liftered, inverse DCT; the DCT's c0 is not kept, dim 0 is the log
    energy), and gain = 1 / |1 - preemph e^(-i w)|^2 at each band's centre, so that the frame energy without the
    pre-emphasis is the log energy's exp times sum(softmax(log bands) * gain). Bands centred below SPEECH_LOW_HZ
    (hum, rumble) get gain 0: the pre-emphasis had all but removed them, and undone they would open the mouth in
    a pause. None for other extractors, or without the normalisation in aud_meta.json."""
    if meta.get("extractor") != "mfcc" or meta.get("mean") is None or meta.get("std") is None:
        return None
    st = {**MFCC_SETTINGS, **(meta.get("settings") or {})}
    n_cep, n_filt = int(st["numcep"]), int(st["nfilt"])
    mean, std = np.asarray(meta["mean"], np.float64)[1:n_cep], np.asarray(meta["std"], np.float64)[1:n_cep]
    lift = psf.base.lifter(np.ones((1, n_cep)), st["ceplifter"])[0, 1:]  # the extractor's own lifter (none at 0)
    basis = idct(np.eye(n_filt)[1:n_cep], type=2, axis=1, norm="ortho")  # [numcep-1, nfilt]: c_k -> log bands
    w = (std / lift)[:, None] * basis
    b = (mean / lift) @ basis
    fb = psf.get_filterbanks(n_filt, st["nfft"], SAMPLE_RATE)  # [nfilt, nfft/2 + 1]
    freqs = np.linspace(0, SAMPLE_RATE / 2, fb.shape[1])
    centre = (fb @ freqs) / fb.sum(1)  # [nfilt] Hz, filter-weighted
    omega = 2 * np.pi * centre / SAMPLE_RATE
    gain = 1 / (1 + st["preemph"] ** 2 - 2 * st["preemph"] * np.cos(omega))
    return w, b, np.where(centre < SPEECH_LOW_HZ, 0.0, gain)


def extract_features(wav: np.ndarray, meta: dict) -> np.ndarray:
    """wav float32 [T] 16 kHz -> float32 [ceil(T/640), 16, D] with aud_meta.json's extractor and normalisation."""
    wav = np.asarray(wav, np.float32).reshape(-1)
    return finish(raw_steps(wav, meta, 2 * n_frames_for(len(wav))), meta)


def make_meta(extractor: str, model: Path | None = None) -> dict:
    """aud_meta.json for this extractor, without the statistics yet (add_stats adds them)."""
    meta: dict = {"extractor": extractor, "sample_rate": SAMPLE_RATE, "fps": 25, "steps_per_second": 50,
                  "window": WINDOW, "window_steps": "frame i: steps 2i-8 .. 2i+7, edge-padded"}
    if extractor == "mfcc":
        meta["settings"] = dict(MFCC_SETTINGS)
        meta["features"] = "log energy, mfcc c1-c12, deltas of all 13"
    else:
        meta["model"] = str(Path(model).resolve())
    return meta


def add_stats(meta: dict, steps: np.ndarray) -> None:
    """Record D, N_frames and the per-dim mean/std of the subject's own raw steps [2N, D] (none for deepspeech)."""
    meta["dim"] = int(steps.shape[1])
    meta["n_frames"] = len(steps) // 2
    if meta["extractor"] == "deepspeech":  # raw logits, like AD-NeRF's aud.npy
        meta["mean"] = meta["std"] = None
    else:
        meta["mean"] = steps.mean(axis=0).tolist()
        meta["std"] = np.maximum(steps.std(axis=0), STD_FLOOR).tolist()


def validate_given(path: Path) -> np.ndarray:
    """Load an existing aud.npy and check it is a finite [N, 16, D] array; PreprocessError naming it if not."""
    if not path.is_file():
        raise PreprocessError(f"{path}: file not found (--aud_npy)")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise PreprocessError(f"{path}: not a .npy array ({err})") from None
    if arr.ndim != 3 or arr.shape[1] != WINDOW or arr.shape[0] == 0:
        raise PreprocessError(f"{path}: shape {list(arr.shape)}, expected [N_frames, 16, D] (AD-NeRF: [N, 16, 29])")
    if not np.issubdtype(arr.dtype, np.floating) or not np.isfinite(arr).all():
        raise PreprocessError(f"{path}: must hold finite floating-point values (dtype {arr.dtype})")
    return arr
