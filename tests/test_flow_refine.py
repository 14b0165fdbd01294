"""Flow-steadied landmarks (data_util/flow_refine.py): expression-like offsets of mediapipe's points are removed
where the pixels do not move, and a hand (failed flow links) leaves the track on the measurements."""
import numpy as np

from data_util.flow_refine import blend, steady_landmarks


def textured_frames(n: int, size: int, shift: np.ndarray, seed: int = 0) -> list[np.ndarray]:
    """Grey frames [size,size]: smooth random texture translated by shift [n,2] (pixels, x y)."""
    import cv2

    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.uniform(0, 255, (size * 2, size * 2)).astype(np.float32), (0, 0), 2.0)
    frames = []
    for dx, dy in shift:
        m = np.float32([[1, 0, dx - size / 2], [0, 1, dy - size / 2]])
        frames.append(np.clip(cv2.warpAffine(tex, m, (size, size), flags=cv2.INTER_CUBIC), 0, 255).astype(np.uint8))
    return frames


def test_blend_follows_flow_and_keeps_the_mean_of_the_measurements():
    n = 60
    truth = np.cumsum(np.full((n, 1, 2), 0.3), 0)
    bias = np.zeros((n, 1, 2))
    bias[20:35] = 2.0  # a 2 px "expression" offset for 15 frames
    flow = np.diff(truth, axis=0, prepend=truth[:1])
    out = blend(truth + bias, flow, np.ones((n, 1), bool), weight=1e5)
    err = out - truth
    assert np.ptp(err) < 0.02  # the offset's step is gone: a constant shift is left ...
    assert abs(err.mean() - bias.mean()) < 1e-3  # ... equal to the mean offset (the measurements set the level)
    raw = blend(truth + bias, flow, np.zeros((n, 1), bool))
    assert np.allclose(raw, truth + bias)  # no flow link: the measurements as they are


def test_steadied_points_lose_an_offset_the_pixels_do_not_show():
    n, size = 40, 96
    t = np.arange(n)
    shift = np.stack([3 * np.sin(t / 7), 2 * np.cos(t / 9)], 1)  # the "head" moves smoothly
    frames = textured_frames(n, size, shift)
    base = np.array([[30.0, 30.0], [60.0, 35.0], [45.0, 60.0]] + [[48.0, 48.0]] * 475)  # [478,2]; 33/263 unused here
    base[33], base[263] = (30.0, 40.0), (66.0, 40.0)  # eye corners: sets the window size
    truth = base[None] + shift[:, None]  # [n,478,2]
    lms = np.concatenate([truth, np.zeros((n, 478, 1))], -1)
    lms[15:25, :3, 1] += 1.5  # mediapipe-like offset: the points move, the pixels do not
    which = np.array([0, 1, 2])
    out, used = steady_landmarks(iter(frames), lms, which)
    err_raw = np.abs(lms[:, which, :2] - truth[:, which]).max()
    steady = out[:, which, :2] - truth[:, which]
    steady = steady - steady.mean(0)  # the level comes from the measurements' mean: look at the step
    assert used > 0.9
    assert err_raw >= 1.5 and np.abs(steady).max() < 0.4, np.abs(steady).max()
    assert np.array_equal(out[:, 3:], lms[:, 3:])  # other points untouched


def test_covered_points_fall_back_on_the_measurements():
    n, size = 20, 96
    frames = textured_frames(n, size, np.zeros((n, 2)))
    lms = np.zeros((n, 478, 3))
    lms[:, :, :2] = 48.0
    lms[:, 33, :2], lms[:, 263, :2] = (30.0, 40.0), (66.0, 40.0)
    lms[10:, 0, 0] += 3.0  # a jump the pixels do not show
    covered = np.zeros((n, 478), bool)
    covered[:, 0] = True  # a hand over point 0 in every frame: no flow link for it
    out, _ = steady_landmarks(iter(frames), lms, np.array([0]), covered)
    assert np.allclose(out[:, 0, :2], lms[:, 0, :2])
