"""Hands over the face: which face-mesh points a hand covers in each frame -> `occlusion.npy` [N,478] bool.

People touch their faces (a hand over the mouth, fingers at the nose). Mediapipe's face mesh still returns all 478
points there, but the covered ones are guesses, and a pose fitted on them jumps (on a real clip: 7 degrees of
pitch in one frame when a hand rose over the nose). Mediapipe's hand tracker (shipped in the same wheel, no
download) finds the hands; a face point is covered when it lies inside the convex hull of a hand's 21 landmarks,
grown by HULL_MARGIN of the hand's size (the landmarks sit on the bones, the skin is wider).

Uses: tracking (step 7) leaves covered points out of each frame's pose fit (a frame whose pose points are mostly
covered takes its pose from its neighbours through the smoothness term); transforms (step 8) leaves frames whose
face is more than MAX_COVERED covered out of training and validation (the field has no input for a hand).
"""
from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np
from tqdm import tqdm

N_HAND = 21  # mediapipe hand landmarks
HULL_MARGIN = 0.12  # the hull grows by this share of the hand's size (its bounding-box diagonal)
MAX_COVERED = 0.05  # frames with more of the 468 mesh points covered are left out of training
N_MESH = 468


def detect_hands(frames: Iterable[np.ndarray], total: int | None = None, progress: bool = False) -> np.ndarray:
    """Hand landmarks float32 [N,2,21,2] (pixels x, y; NaN where there is no hand) for RGB uint8 frames [H,W,3]
    of one video in order (mediapipe Hands in video mode, up to two hands)."""
    import mediapipe as mp

    from common.quiet import quiet_native_stderr

    out = []
    with quiet_native_stderr() as stderr, mp.solutions.hands.Hands(
            static_image_mode=False, max_num_hands=2, model_complexity=1, min_detection_confidence=0.5) as hands:
        for frame in tqdm(frames, total=total, desc="hands", unit="frame", disable=not progress, file=stderr):
            h, w = frame.shape[:2]
            pts = np.full((2, N_HAND, 2), np.nan, np.float32)
            res = hands.process(np.ascontiguousarray(frame))
            for k, hand in enumerate((res.multi_hand_landmarks or [])[:2]):
                pts[k] = [(p.x * w, p.y * h) for p in hand.landmark]
            out.append(pts)
    return np.stack(out) if out else np.zeros((0, 2, N_HAND, 2), np.float32)


def covered_points(lms: np.ndarray, hands: np.ndarray) -> np.ndarray:
    """bool [N,478]: face points lms [N,478,>=2] (pixels) inside a grown hull of a hand of hands [N,2,21,2]."""
    covered = np.zeros(lms.shape[:2], bool)
    for i in range(len(lms)):
        for hand in hands[i]:
            if not np.isfinite(hand).all():
                continue
            covered[i] |= inside_grown_hull(lms[i, :, :2], hand)
    return covered


def inside_grown_hull(points: np.ndarray, hand: np.ndarray) -> np.ndarray:
    """bool [P]: points [P,2] inside the convex hull of hand [21,2] grown by HULL_MARGIN of its size."""
    hull, margin = grown_hull(hand)
    return np.array([cv2.pointPolygonTest(hull, (float(x), float(y)), True) >= -margin for x, y in points])


def grown_hull(hand: np.ndarray) -> tuple[np.ndarray, float]:
    """(the convex hull [K,2] of hand [21,2], the margin it grows by: HULL_MARGIN of the hand's bounding-box
    diagonal, in pixels)."""
    hull = cv2.convexHull(hand.astype(np.float32)).reshape(-1, 2)
    return hull, HULL_MARGIN * float(np.linalg.norm(hand.max(0) - hand.min(0)))


def hand_mask(hands: np.ndarray, h: int, w: int) -> np.ndarray:
    """bool [h, w]: the pixels of the hands [2,21,2] (NaN: none) of one frame, their convex hulls grown by
    HULL_MARGIN of each hand's size (step 5 labels them `hands`)."""
    mask = np.zeros((h, w), np.uint8)
    for hand in hands:
        if not np.isfinite(hand).all():
            continue
        hull, margin = grown_hull(hand)
        filled = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(filled, np.round(hull).astype(np.int32), 1)
        grow = max(1, int(round(margin)))
        mask |= cv2.dilate(filled, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    return mask > 0


def covered_share(covered: np.ndarray) -> np.ndarray:
    """[N] share of the 468 mesh points covered in each frame."""
    return covered[:, :N_MESH].mean(1)


def frame_runs(frames: np.ndarray) -> str:
    """'69-240, 300' for sorted frame indices [K]."""
    if len(frames) == 0:
        return "none"
    cuts = np.nonzero(np.diff(frames) > 1)[0]
    starts, ends = np.r_[frames[0], frames[cuts + 1]], np.r_[frames[cuts], frames[-1]]
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in zip(starts, ends))
