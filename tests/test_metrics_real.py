"""evaluate.py's metrics computed on real face frames, with numbers: LMD and sync on the sample clip
(sample_data/clip.py, 96 px, 2 s) used as both render and ground truth, and on copies of it that are shifted in
space, delayed in time or frozen; the mouth-opening vs loudness correlation on the clip and its own speech;
SSIM pinned to hand-computed values.

mediapipe finds no face in the 16-32 px renders of the tiny training tests, so these use the sample clip's frames
directly (nerf.evaluation.lmd_and_sync is what evaluate_run calls on the renders and the ground truth).
"""
from __future__ import annotations

import numpy as np
import pytest

from nerf import evaluation as E
from nerf import metrics

from sample_data import clip as sample_clip

SIZE, SECONDS = 96, 2.0


@pytest.fixture(scope="module")
def clip():
    """The sample clip in memory: frames uint8 [50,96,96,3], audio 16 kHz, ground truth (mouth opening per frame)."""
    c = sample_clip.render_clip(SIZE, SECONDS, seed=3, progress=False)
    return list(c.frames), c.audio, np.array([fr["mouth"] for fr in c.gt["frames"]])


@pytest.fixture(scope="module")
def same(clip):
    frames = clip[0]
    return E.lmd_and_sync(frames, frames)


def test_identical_frames(clip, same):
    """Render = ground truth: LMD 0 px, sync 1, a face on every frame; the mouth opening mediapipe measures follows
    the clip's true jaw opening (r > 0.95; measured 0.995)."""
    frames, _, mouth = clip
    n = len(frames)
    assert same["faces_found"] == {"render": n, "gt": n}
    assert same["lmd"] == pytest.approx(0.0, abs=1e-6)
    assert same["sync"] == pytest.approx(1.0, abs=1e-6)
    assert mouth.std() > 0.2  # the clip talks
    assert E.pearson(np.array(same["opening_gt"], np.float64), mouth) > 0.95


def test_spatial_shift_is_lmd_in_pixels(clip):
    """Every render moved 3 px right: LMD ~3 px (measured 3.00), the timing still in sync (> 0.99)."""
    frames = clip[0]
    res = E.lmd_and_sync([np.roll(f, 3, axis=1) for f in frames], frames)
    assert res["lmd"] == pytest.approx(3.0, abs=0.3)
    assert res["sync"] > 0.99


@pytest.mark.parametrize("kind", ["delayed", "frozen"])
def test_delayed_or_frozen_copy_is_out_of_sync(clip, same, kind):
    """Renders 5 frames (0.2 s) ahead of the ground truth, or one frame held throughout: sync falls by > 0.5
    (measured 0.10 delayed, 0.31 frozen) and LMD rises above 1 px (measured 2.1 and 3.5)."""
    frames = clip[0]
    pred = frames[5:] + frames[-1:] * 5 if kind == "delayed" else frames[:1] * len(frames)
    res = E.lmd_and_sync(pred, frames)
    sync = res["sync"] if isinstance(res["sync"], float) else 0.0  # "skipped: no mouth movement" is out of sync too
    print(f"{kind}: LMD {res['lmd']:.2f} px, sync {sync:.3f}")
    assert sync < same["sync"] - 0.5
    assert res["lmd"] > 1.0


def test_mouth_opening_follows_loudness(clip, same):
    """The README's new-speech check (evaluate.py --aud): Pearson r of the mouth opening measured on the frames
    with the speech's per-frame loudness. The sample clip's jaw follows its voice: r > 0.7 (measured 0.87);
    the same frames in shuffled order: |r| < 0.3 (measured -0.07)."""
    frames, audio, _ = clip
    loud = E.frame_loudness(audio, len(frames))
    opening = np.array(same["opening_gt"], np.float64)
    assert E.pearson(opening, loud) > 0.7
    perm = np.random.default_rng(0).permutation(len(frames))
    assert abs(E.pearson(opening[perm], loud)) < 0.3


# ---------------------------------------------------------------- SSIM pinned
def _ssim_reference(x: np.ndarray, y: np.ndarray, win: int = 7, data_range: float = 1.0) -> float:
    """SSIM written out (Wang et al. 2004 with skimage's defaults: uniform 7x7 windows, sample covariance,
    K1 = 0.01, K2 = 0.03), mean over the windows that fit inside the image, then over the channels."""
    from numpy.lib.stride_tricks import sliding_window_view

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    out = []
    for ch in range(x.shape[-1]):
        a = sliding_window_view(x[..., ch], (win, win))  # [H-6, W-6, 7, 7]
        b = sliding_window_view(y[..., ch], (win, win))
        ma, mb = a.mean((-1, -2)), b.mean((-1, -2))
        n = win * win
        va = ((a - ma[..., None, None]) ** 2).sum((-1, -2)) / (n - 1)
        vb = ((b - mb[..., None, None]) ** 2).sum((-1, -2)) / (n - 1)
        cov = ((a - ma[..., None, None]) * (b - mb[..., None, None])).sum((-1, -2)) / (n - 1)
        s = (2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))
        out.append(s.mean())
    return float(np.mean(out))


def test_ssim_pinned():
    # flat images 0.5 vs 0.4: only the luminance term, (2*0.5*0.4 + C1) / (0.5^2 + 0.4^2 + C1)
    assert metrics.ssim(np.full((16, 16, 3), 0.5), np.full((16, 16, 3), 0.4)) == pytest.approx(
        0.4001 / 0.4101, abs=1e-9)
    rng = np.random.default_rng(0)
    x = rng.random((20, 24, 3))
    y = np.clip(x + 0.1 * rng.normal(size=x.shape), 0, 1)
    assert metrics.ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    ref = _ssim_reference(x, y)
    assert 0.5 < ref < 0.95
    assert metrics.ssim(x, y) == pytest.approx(ref, abs=1e-9)
    assert metrics.ssim(x, 1 - x) < 0  # anti-correlated structure


def test_ssim_on_face_frames(clip):
    """A face frame against itself, against itself 3 px away and against a frame 1.2 s later."""
    frames = [f.astype(np.float64) / 255 for f in clip[0][:31:30]]
    f0, f30 = frames
    assert metrics.ssim(f0, f0) == pytest.approx(1.0, abs=1e-12)
    for other in (np.roll(f0, 3, axis=1), f30):
        assert metrics.ssim(f0, other) == pytest.approx(_ssim_reference(f0, other), abs=1e-9)
        assert metrics.ssim(f0, other) < 0.8  # measured 0.53 for both
