"""Landmarks steadied by their optical flow, so that expression does not move the head pose (used by step 7).

Why: mediapipe's face mesh is one network's guess of the whole face from each frame, with a face prior that ties
its parts together. When the jaw drops or the brows rise, it moves the nose, the eye corners and the temples as
well, by 1-2 px (measured on the sample clip, whose rendered head holds perfectly still in its expression spans;
its median landmark error there is 1.0 px, the flow's 0.06 px). A pose fitted to those points turns that into
rotation: 1.2 / 3.2 degrees of false rotation in the sample's two spans, and the pitch error steps with the mouth
(r = -0.6 frame to frame). The pixels of the nose and the eye corners do not move when the face does, so their
optical flow does not see the expression. Each pose point's track is the least-squares blend

    min over x_1..x_N   sum_i |x_i - m_i|^2  +  FLOW_WEIGHT * sum_i ok_i |x_i - x_{i-1} - f_i|^2

of mediapipe's positions m_i (right on average, wrong in the details) and the point's pyramidal Lucas-Kanade flow
f_i from frame i-1 to i (right in the details, drifts over time): the flow decides the motion over about
sqrt(FLOW_WEIGHT) frames, mediapipe the level beyond. A link whose forward-backward check fails (a hand passing,
a blink over an eye corner, a cut), or where data_util/occlusion.py says a hand covers the point, is left out and
the track falls back on mediapipe there. One banded solve per point and coordinate.
What was tried (benchmarks/NOTES.md): the flow as a residual on the rigid pose increments inside the bundle
adjustment instead (no per-point drift, but 1.1-1.6 degrees in the sample's spans against 0.4-0.7 here).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from scipy.linalg import solve_banded
from tqdm import tqdm

from common.errors import PreprocessError

from .expression import EYE_OUTER

FLOW_WEIGHT = 2000.0  # weight of a flow link against one landmark measurement (time scale ~45 frames)
WINDOW_SHARE = 0.3  # Lucas-Kanade window side as a share of the outer-eye-corner distance (pixels)
MIN_WINDOW = 9  # ... but at least this many pixels
FB_SHARE = 0.01  # forward-backward error limit as a share of the eye distance ...
MIN_FB = 0.5  # ... but at least this many pixels


def lk_params(lms: np.ndarray) -> dict:
    """cv2.calcOpticalFlowPyrLK settings scaled by the face size of landmarks [N,478,>=2] (pixels)."""
    eye = float(np.nanmedian(np.linalg.norm(lms[:, EYE_OUTER[0], :2] - lms[:, EYE_OUTER[1], :2], axis=-1)))
    win = int(max(MIN_WINDOW, round(eye * WINDOW_SHARE))) // 2 * 2 + 1
    return {"winSize": (win, win), "maxLevel": 3,
            "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01), "fb_max": max(MIN_FB, FB_SHARE * eye)}


def flow_links(gray_frames: Iterable[np.ndarray], points: np.ndarray, params: dict, progress: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
    """Flow of points [N,P,2] (pixels) from each frame to the next, over grey frames [H,W] uint8 in order, with
    lk_params(). Returns flow [N,P,2] (row i: frame i-1 -> i; row 0 zero) and ok [N,P] (the link passed the checks)."""
    n, p = points.shape[:2]
    params = dict(params)
    fb_max = params.pop("fb_max")
    flow, ok = np.zeros((n, p, 2)), np.zeros((n, p), bool)
    prev = None
    for i, gray in enumerate(tqdm(gray_frames, total=n, desc="flow", unit="frame", disable=not progress)):
        if i >= n:
            break
        if prev is not None:
            p0 = points[i - 1].astype(np.float32).reshape(-1, 1, 2)
            p1, st, _ = cv2.calcOpticalFlowPyrLK(prev, gray, p0, None, **params)
            back, st_b, _ = cv2.calcOpticalFlowPyrLK(gray, prev, p1, None, **params)
            fb = np.linalg.norm((back - p0).reshape(-1, 2), axis=1)
            ok[i] = (st.ravel() == 1) & (st_b.ravel() == 1) & (fb < fb_max) & np.isfinite(p0).all(-1).ravel()
            flow[i] = np.where(ok[i, :, None], (p1 - p0).reshape(-1, 2), 0.0)
        prev = gray
    return flow, ok


def landmark_flow(gray_frames: Iterable[np.ndarray], lms: np.ndarray, covered: np.ndarray | None = None,
                  progress: bool = False, which: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flow [N,478,2] and ok [N,478] (see flow_links) of landmarks [N,478,>=2] (pixels) over grey frames in order;
    covered [N,478] bool (optional): a hand over the point in either frame leaves the link out. which [K]
    (optional): flow only these points (each point's flow is computed alone; the others get ok False)."""
    lms = np.asarray(lms, np.float64)
    which = np.arange(lms.shape[1]) if which is None else np.asarray(which)
    flow, ok = np.zeros((*lms.shape[:2], 2)), np.zeros(lms.shape[:2], bool)
    flow[:, which], ok[:, which] = flow_links(gray_frames, lms[:, which, :2], lk_params(lms), progress)
    if covered is not None:
        hidden = np.asarray(covered, bool)
        ok[1:] &= ~hidden[1:] & ~hidden[:-1]
    return flow, ok


def blend(measured: np.ndarray, flow: np.ndarray, ok: np.ndarray, weight: float | None = None) -> np.ndarray:
    """Tracks [N,P,2] minimising |x_i - m_i|^2 + weight * ok_i |x_i - x_{i-1} - f_i|^2 per point and coordinate,
    from measured m [N,P,2], flow f [N,P,2] and ok [N,P] (row 0 unused); weight None: FLOW_WEIGHT."""
    weight = FLOW_WEIGHT if weight is None else weight
    n, p = measured.shape[:2]
    out = np.empty(measured.shape, np.float64)
    for j in range(p):
        w = weight * ok[:, j].astype(np.float64)
        w[0] = 0.0  # w[i]: weight of the link from frame i-1 to frame i
        w_next = np.append(w[1:], 0.0)
        bands = np.zeros((3, n))
        bands[0, 1:], bands[1], bands[2, :-1] = -w[1:], 1.0 + w + w_next, -w[1:]
        f = flow[:, j]
        rhs = measured[:, j] + w[:, None] * f - w_next[:, None] * np.vstack([f[1:], np.zeros((1, 2))])
        out[:, j] = solve_banded((1, 1), bands, rhs)
    return out


def steady_points(lms: np.ndarray, flow: tuple[np.ndarray, np.ndarray], which: np.ndarray) -> np.ndarray:
    """landmarks [N,478,3] with the x, y of points `which` [K] replaced by their blends with the flow
    (flow, ok) [N,478,2], [N,478] from landmark_flow()."""
    out = np.array(lms, np.float64, copy=True)
    out[:, which, :2] = blend(out[:, which, :2], flow[0][:, which], flow[1][:, which])
    return out


def read_gray(paths: Iterable[Path]) -> Iterable[np.ndarray]:
    """Grey uint8 frames from image files, one at a time."""
    for path in paths:
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise PreprocessError(f"{path}: not a readable image")
        yield img
