"""Synthetic tracked clips for the tracking / transforms / debug tests: a rigid 3D face (mediapipe's face mesh on
scikit-image's astronaut photo, in head units) seen by a pinhole camera of known focal under smooth known poses."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from data_util.expression import aligned_rotation_error, span_rotation_change  # noqa: F401 (the tests' names)
from data_util.tracking import BROWS

LIPS_AND_JAW_Y = 0.005  # points below the upper lip (head y down) move with the "expression"


@functools.lru_cache(maxsize=1)
def face_shape() -> np.ndarray:
    """[478,3] head-unit face (outer eye corners 0.1 apart, centred), from mediapipe on the astronaut photo."""
    import mediapipe as mp
    from skimage import data

    from data_util.tracking import normalise_shape

    img = data.astronaut()
    h, w = img.shape[:2]
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True) as fm:
        res = fm.process(img)
    pts = np.array([[p.x * w, p.y * h, p.z * w] for p in res.multi_face_landmarks[0].landmark], np.float64)
    return normalise_shape(pts)


@dataclass
class Clip:
    lms: np.ndarray  # [N,478,3] pixels x, y and a mediapipe-like z*w
    rot: Rotation  # [N] true head rotations, X_cam = R @ (X + expression) + trans
    trans: np.ndarray  # [N,3]
    focal: float
    size: int
    head: np.ndarray  # [478,3] rest shape, head frame
    moving: np.ndarray  # indices of the points that the expression moves


def smooth_angles(n: int, rng: np.random.Generator, max_deg: float = 15.0) -> np.ndarray:
    """[N,3] degrees: sums of slow sines per axis, within +-max_deg."""
    t = np.arange(n) / 25.0
    ang = np.zeros((n, 3))
    for j, amp in enumerate((0.6, 0.9, 0.5)):
        for _ in range(3):
            ang[:, j] += amp * max_deg / 3 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * np.pi))
    return np.clip(ang, -max_deg, max_deg)


def synth_clip(n: int = 200, size: int = 256, focal_per_size: float = 1.5, seed: int = 0, noise: float = 0.5,
               expression: bool = True) -> Clip:
    """Project the face under smooth random poses (+-15 deg), 0.5 px noise; the mouth/jaw opens and the lips
    widen over time (an expression the tracker must not take for head motion)."""
    rng = np.random.default_rng(seed)
    head = face_shape()
    t = np.arange(n) / 25.0
    rot = Rotation.from_euler("xyz", smooth_angles(n, rng), degrees=True)
    focal = focal_per_size * size
    z = focal * 0.2 / (0.45 * size)  # face ~45% of the frame
    trans = np.stack([0.01 * np.sin(t), 0.01 * np.cos(0.7 * t), z + 0.02 * np.sin(0.3 * t)], 1)
    moving = np.nonzero(head[:468, 1] > head[13, 1] - LIPS_AND_JAW_Y)[0]
    pts = np.repeat(head[None], n, 0)
    if expression:
        pts[:, moving, 1] += 0.03 * np.abs(np.sin(2 * np.pi * 1.3 * t))[:, None]
        pts[:, moving, 0] *= (1 + 0.15 * np.sin(2 * np.pi * 0.7 * t))[:, None]
    cam = np.matmul(pts, rot.as_matrix().transpose(0, 2, 1)) + trans[:, None]
    uv = focal * cam[..., :2] / cam[..., 2:3] + size / 2 + rng.normal(0, noise, (n, 478, 2))
    zc = cam[..., 2]
    zw = (zc - zc.mean(1, keepdims=True)) * focal / zc.mean(1, keepdims=True)  # z*w in pixels, like mediapipe
    return Clip(lms=np.concatenate([uv, zw[..., None]], -1), rot=rot, trans=trans, focal=focal, size=size,
                head=head, moving=moving)


def write_frames(folder: Path, n: int, size: int, seed: int = 0) -> None:
    """ori_imgs/<i>.jpg noise frames and parsing/<i>.png class maps (a face disc over a torso band)."""
    import imageio.v3 as iio

    rng = np.random.default_rng(seed)
    (folder / "ori_imgs").mkdir(parents=True, exist_ok=True)
    (folder / "parsing").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        iio.imwrite(folder / "ori_imgs" / f"{i}.jpg", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        par = np.zeros((size, size), np.uint8)
        par[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2] = 1
        par[yy > 0.8 * size] = 9
        iio.imwrite(folder / "parsing" / f"{i}.png", par)


UPPER_LIDS = [157, 158, 159, 160, 161, 384, 385, 386, 387, 388]


@dataclass
class ExpressionClip:
    lms: np.ndarray  # [N,478,3] what a landmark detector reports: true points + its expression leak + noise
    flow: np.ndarray  # [N,478,2] the true image motion of each point from frame i-1 to i (+ 0.05 px noise)
    rot: Rotation  # [N] true head rotations
    spans: list[tuple[int, int]]  # frames (first, last) where the head holds still and the expression peaks
    expression: np.ndarray  # [N] 0..1
    focal: float
    size: int


def expression_clip(n: int = 150, size: int = 256, seed: int = 0, leak_px: float = 1.5) -> ExpressionClip:
    """A face that moves its upper face as a real one does and a detector that leaks expression into its points.

    The head turns smoothly (+-15 deg) except in two spans where it holds still while an expression rises and
    falls: the jaw drops and the lips widen, the brows, forehead and upper lids lift, the cheeks drop. The
    reported landmarks also carry a detector leak, as mediapipe's do on real faces: with the expression, every
    point above the mouth moves up in the image by up to leak_px times its protrusion (nose tip most), which a
    pose fit reads as pitch. The flow is the points' true image motion, which has no leak."""
    rng = np.random.default_rng(seed)
    head = face_shape()
    t = np.arange(n) / 25.0
    spans = [(int(0.2 * n), int(0.2 * n) + 30), (int(0.65 * n), int(0.65 * n) + 30)]
    ang = smooth_angles(n, rng)
    expr = np.zeros(n)
    for a, b in spans:
        ang[a:b + 1] = ang[a]
        u = np.linspace(0, 1, b - a + 1)
        expr[a:b + 1] = np.sin(np.pi * u) ** 2
    rot = Rotation.from_euler("xyz", ang, degrees=True)
    focal = 1.5 * size
    z = focal * 0.2 / (0.45 * size)
    trans = np.stack([0.01 * np.sin(t), 0.01 * np.cos(0.7 * t), z + 0.02 * np.sin(0.3 * t)], 1)
    y = head[:468, 1]
    mouth = np.nonzero(y > head[13, 1] - LIPS_AND_JAW_Y)[0]
    forehead = np.nonzero(y < head[BROWS, 1].min())[0]
    cheeks = np.nonzero((y > head[2, 1]) & (y < head[13, 1]) & (np.abs(head[:468, 0]) > 0.03))[0]
    pts = np.repeat(head[None], n, 0)
    e = expr[:, None]
    pts[:, mouth, 1] += 0.03 * e
    pts[:, mouth, 0] *= 1 + 0.1 * e
    pts[:, BROWS + UPPER_LIDS, 1] -= 0.012 * e
    pts[:, forehead, 1] -= 0.006 * e
    pts[:, cheeks, 1] += 0.004 * e
    cam = np.matmul(pts, rot.as_matrix().transpose(0, 2, 1)) + trans[:, None]
    uv = focal * cam[..., :2] / cam[..., 2:3] + size / 2
    flow = np.diff(uv, axis=0, prepend=uv[:1]) + rng.normal(0, 0.05, uv.shape)
    protrusion = (head[:, 2].max() - head[:, 2]) / np.ptp(head[:468, 2])  # 1 at the nose tip (z points away)
    upper = np.zeros(478, bool)
    upper[np.nonzero(y < head[13, 1] - LIPS_AND_JAW_Y)[0]] = True
    leak = np.zeros((n, 478, 2))
    leak[:, upper, 1] = -leak_px * e * protrusion[upper]
    obs = uv + leak + rng.normal(0, 0.3, uv.shape)
    zc = cam[..., 2]
    zw = (zc - zc.mean(1, keepdims=True)) * focal / zc.mean(1, keepdims=True)
    return ExpressionClip(lms=np.concatenate([obs, zw[..., None]], -1), flow=flow, rot=rot, spans=spans,
                          expression=expr, focal=focal, size=size)
