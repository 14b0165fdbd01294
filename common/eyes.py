"""Eye openness from face landmarks: the input that lets the field blink (render.py --blink).

Per eye, the eye aspect ratio (Soukupova and Cech 2016): the mean of two lid-to-lid distances over the corner-to-
corner distance; both eyes averaged. `openness` divides it by the subject's median over the clip (so 1 is the
subject's usual open eye and a closed eye is near 0.2-0.4 of it) and smooths it lightly over 3 frames.
Landmark layouts: mediapipe's face mesh (468 or 478 points) and the 68-point iBUG layout (AD-NeRF's .lms files).
"""
from __future__ import annotations

import numpy as np

# (outer corner, upper 1, upper 2, inner corner, lower 2, lower 1) per eye
MEDIAPIPE_EYES = ((33, 160, 158, 133, 153, 144), (263, 387, 385, 362, 380, 373))
IBUG68_EYES = ((36, 37, 38, 39, 40, 41), (45, 44, 43, 42, 47, 46))
SMOOTH = np.array([0.25, 0.5, 0.25])  # 3-frame smoothing (a blink lasts 3-8 frames at 25 fps)


def eye_indices(n_points: int) -> tuple[tuple[int, ...], ...]:
    if n_points in (468, 478):
        return MEDIAPIPE_EYES
    if n_points == 68:
        return IBUG68_EYES
    raise ValueError(f"eye openness: unknown landmark layout with {n_points} points (need 468/478 or 68)")


def eye_aspect_ratio(lms: np.ndarray) -> np.ndarray:
    """lms [N,P,2+] pixel landmarks -> [N] mean eye aspect ratio of both eyes (NaN where a landmark is NaN)."""
    pts = np.asarray(lms, np.float64)[..., :2]
    ratios = []
    for c0, u1, u2, c1, l2, l1 in eye_indices(pts.shape[1]):
        lids = np.linalg.norm(pts[:, u1] - pts[:, l1], axis=-1) + np.linalg.norm(pts[:, u2] - pts[:, l2], axis=-1)
        width = np.linalg.norm(pts[:, c0] - pts[:, c1], axis=-1)
        ratios.append(lids / (2 * np.maximum(width, 1e-9)))
    return np.mean(ratios, axis=0)


def smooth(x: np.ndarray) -> np.ndarray:
    """The 3-frame smoothing, edges repeated."""
    if len(x) < 3:
        return x.copy()
    padded = np.concatenate([x[:1], x, x[-1:]])
    return np.convolve(padded, SMOOTH, mode="valid")


def fill_gaps(x: np.ndarray) -> np.ndarray:
    """NaN entries of [N] replaced by linear interpolation (the nearest value at the ends); all-NaN -> ones."""
    ok = np.isfinite(x)
    if not ok.any():
        return np.ones_like(x)
    idx = np.arange(len(x))
    return np.interp(idx, idx[ok], x[ok])


def openness(lms: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """lms [N,P,2+] -> float32 [N]: eye aspect ratio over its median on the `valid` frames (bool [N], default
    all), gaps filled, smoothed. 1 = the subject's usual open eye."""
    ear = eye_aspect_ratio(lms)
    if valid is not None:
        ear = np.where(valid, ear, np.nan)
    ear = fill_gaps(ear)
    scale = np.median(ear)
    return smooth(ear / max(scale, 1e-9)).astype(np.float32)
