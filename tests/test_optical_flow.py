"""Optical flow of the landmarks (data_util/optical_flow.py) and its use in the pose fit: expression that a
landmark detector leaks into its points stays out of the pose when the flow sets the frame-to-frame motion."""
import numpy as np
from scipy.spatial.transform import Rotation

from data_util import tracking
from data_util.optical_flow import landmark_flow
from tests.tracking_fixtures import aligned_rotation_error, expression_clip, span_rotation_change


def textured_frames(shift: np.ndarray, size: int = 96, seed: int = 0) -> list[np.ndarray]:
    """Grey frames [size,size]: a smooth random texture translated by shift [n,2] (pixels, x y)."""
    import cv2

    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.uniform(0, 255, (size * 2, size * 2)).astype(np.float32), (0, 0), 2.0)
    out = []
    for dx, dy in shift:
        m = np.float32([[1, 0, dx - size / 2], [0, 1, dy - size / 2]])
        out.append(np.clip(cv2.warpAffine(tex, m, (size, size), flags=cv2.INTER_CUBIC), 0, 255).astype(np.uint8))
    return out


def face_points(n: int, shift: np.ndarray) -> np.ndarray:
    """[n,478,3] landmarks on a 5x5 grid in the middle of the frame (eye corners 36 px apart), moved by shift."""
    grid = np.stack(np.meshgrid(np.linspace(30, 66, 5), np.linspace(30, 66, 5)), -1).reshape(-1, 2)
    pts = np.resize(grid, (478, 2)).astype(np.float64)
    pts[33], pts[263] = (30.0, 40.0), (66.0, 40.0)
    lms = np.zeros((n, 478, 3))
    lms[..., :2] = pts[None] + shift[:, None]
    return lms


def test_flow_measures_the_pixels_motion():
    t = np.arange(12)
    shift = np.stack([2.5 * np.sin(t / 3), 1.5 * np.cos(t / 4)], 1)
    lms = face_points(len(t), shift)
    flow, ok = landmark_flow(iter(textured_frames(shift)), lms)
    true = np.diff(shift, axis=0)[:, None]
    assert ok[1:].mean() > 0.95 and not ok[0].any()
    err = np.linalg.norm(flow[1:] - true, axis=-1)[ok[1:]]
    assert np.median(err) < 0.1 and err.max() < 0.3, (np.median(err), err.max())


def test_flow_of_some_points_equals_their_flow_among_all():
    """`which` flows only those points (each point's Lucas-Kanade is its own): the same numbers as among all 478,
    the others left out (ok False)."""
    t = np.arange(6)
    shift = np.stack([1.5 * np.sin(t / 2), 0.7 * t], 1)
    lms = face_points(len(t), shift)
    which = np.array([0, 7, 33, 263, 400])
    full, ok_full = landmark_flow(iter(textured_frames(shift)), lms)
    some, ok_some = landmark_flow(iter(textured_frames(shift)), lms, which=which)
    assert np.array_equal(some[:, which], full[:, which]) and np.array_equal(ok_some[:, which], ok_full[:, which])
    assert ok_some[:, which].any() and not np.delete(ok_some, which, axis=1).any()


def test_a_hand_or_a_cut_leaves_the_links_out():
    n = 10
    shift = np.zeros((n, 2))
    frames = textured_frames(shift)
    frames[6] = textured_frames(shift, seed=5)[6]  # a cut: another picture
    covered = np.zeros((n, 478), bool)
    covered[3, :10] = True  # a hand over 10 points in frame 3: links 2->3 and 3->4 of those points go
    _, ok = landmark_flow(iter(frames), face_points(n, shift), covered)
    assert not ok[3, :10].any() and not ok[4, :10].any() and ok[3, 10:].all()
    assert ok[6].mean() < 0.5 and ok[7].mean() < 0.5 and ok[5].all()


def test_flow_keeps_a_detector_leak_out_of_the_pose():
    """The head holds still in two spans while the expression rises and the detector moves its points up by up
    to 1.5 px (nose tip most): from the landmarks alone the pose turns > 1 degree there; with the flow less than
    half as much (measured 1.4 -> 0.5-0.6 degrees)."""
    clip = expression_clip(n=150, seed=0)
    ok = np.ones(clip.lms.shape[:2], bool)
    alone = tracking.track(clip.lms, clip.size, clip.size, verbose=False)
    with_flow = tracking.track(clip.lms, clip.size, clip.size, verbose=False, flow=(clip.flow, ok))
    est_alone = Rotation.from_euler("xyz", alone["euler"])
    est = Rotation.from_euler("xyz", with_flow["euler"])
    alone_change, flow_change = span_rotation_change(est_alone, clip.spans), span_rotation_change(est, clip.spans)
    assert min(alone_change) > 1.0, alone_change
    assert max(flow_change) < 0.75 and all(f < a / 2 for f, a in zip(flow_change, alone_change)), (flow_change,
                                                                                                 alone_change)
    err = aligned_rotation_error(est, clip.rot)
    assert np.median(err) < 0.5 and err.max() < 1.0, (np.median(err), err.max())
