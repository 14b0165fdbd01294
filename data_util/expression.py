"""Expression measures from face-mesh landmarks, independent of the head pose, and how much a pose follows them.

Both measures use distances between mediapipe's 3D points (x, y, z*w pixels), divided by the outer-eye-corner
distance, so they do not change when the head turns: a tracked rotation that correlates with them is (on footage
where the head does not really nod with the expression) expression leaking into the pose.

- mouth opening: inner-lip gap / mouth width (0 closed, ~0.5 wide open), as data_util.landmarks.mouth_opening.
- brow height: distance from the brows' middle points to the eyes' centres (midpoint of the corners), per side, averaged.
"""
from __future__ import annotations

import numpy as np

EYE_OUTER = (33, 263)
BROW_MID = (105, 334)  # upper brow contour above each eye's middle (left, right in the image)
EYE_CORNERS = ((33, 133), (263, 362))  # outer and inner corner of each eye (they stay put when the lids close)
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
MOUTH_CORNERS = (61, 291)


def _dist(lms: np.ndarray, a: int, b: int) -> np.ndarray:
    return np.linalg.norm(lms[..., a, :] - lms[..., b, :], axis=-1)


def mouth_opening_3d(lms: np.ndarray) -> np.ndarray:
    """[..., 478, 3] -> [...] inner-lip gap / mouth width, from the 3D points."""
    return _dist(lms, UPPER_INNER_LIP, LOWER_INNER_LIP) / np.maximum(_dist(lms, *MOUTH_CORNERS), 1e-9)


def brow_height(lms: np.ndarray) -> np.ndarray:
    """[..., 478, 3] -> [...] brow-to-eye-centre distance / outer-eye-corner distance, both sides averaged."""
    eye_dist = np.maximum(_dist(lms, *EYE_OUTER), 1e-9)
    heights = []
    for brow, (top, bottom) in zip(BROW_MID, EYE_CORNERS):
        centre = (lms[..., top, :] + lms[..., bottom, :]) / 2
        heights.append(np.linalg.norm(lms[..., brow, :] - centre, axis=-1))
    return (heights[0] + heights[1]) / 2 / eye_dist


def expression_curves(lms: np.ndarray) -> dict[str, np.ndarray]:
    """{"mouth": [N], "brow": [N]} from landmarks [N,478,3]."""
    lms = np.asarray(lms, np.float64)
    return {"mouth": mouth_opening_3d(lms), "brow": brow_height(lms)}


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two [N] curves; 0.0 when either is constant."""
    a, b = np.asarray(a, np.float64) - np.mean(a), np.asarray(b, np.float64) - np.mean(b)
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 1e-12 else 0.0


def leak_report(euler: np.ndarray, lms: np.ndarray) -> dict[str, float]:
    """How much the rotation follows the expression: correlations of pitch / yaw / roll (euler [N,3] radians,
    X-Y-Z) with mouth opening and brow height, of the frame-to-frame pitch change with the frame-to-frame change
    of each (`r_dpitch_dmouth`: a pose that jumps when the mouth opens), and the largest frame-to-frame rotation
    (degrees)."""
    from scipy.spatial.transform import Rotation

    curves = expression_curves(lms)
    out: dict[str, float] = {}
    for k, axis in enumerate(("pitch", "yaw", "roll")):
        for name, curve in curves.items():
            out[f"r_{axis}_{name}"] = round(pearson(euler[:, k], curve), 4)
    for name, curve in curves.items():  # frame-to-frame: a leak shows here even where the head really nods slowly
        out[f"r_dpitch_d{name}"] = round(pearson(np.diff(euler[:, 0]), np.diff(curve)), 4)
    rots = Rotation.from_euler("xyz", euler)
    steps = np.degrees((rots[1:] * rots[:-1].inv()).magnitude()) if len(euler) > 1 else np.zeros(1)
    out["max_step_deg"] = round(float(steps.max()), 3)
    out["p99_step_deg"] = round(float(np.percentile(steps, 99)), 3)
    return out


def aligned_rotation_error(est, true) -> np.ndarray:
    """[N] degrees between est and true (scipy Rotations [N]) after one global rotation of the head frame (est's
    canonical frame differs from the truth's by a constant rotation Q: true_i ~ est_i * Q)."""
    q = (est.inv() * true).mean()
    return np.degrees((est * q * true.inv()).magnitude())


def span_rotation_change(est, spans: list[tuple[int, int]]) -> list[float]:
    """Largest rotation (degrees) of est (scipy Rotations [N]) inside each span (first, last) relative to its
    first frame: on a clip whose head holds still there, all of it is expression leaking into the pose."""
    return [float(np.degrees((est[a:b + 1] * est[a].inv()).magnitude()).max()) for a, b in spans]
