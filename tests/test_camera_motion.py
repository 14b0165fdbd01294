"""data_util/camera_motion.py: the background's drift between sampled frames, measured on synthetic frames whose
camera motion is known."""
from __future__ import annotations

import cv2
import numpy as np

from data_util.camera_motion import background_motion, camera_note, camera_warning, drift, still_part

SIZE = 128


def texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured wall, uint8 [size,size,3]: blurred blobs of noise."""
    noise = rng.random((size // 4, size // 4, 3)).astype(np.float32)
    return (cv2.GaussianBlur(cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC), (0, 0), 1.0)
            * 255).clip(0, 255).astype(np.uint8)


def background_shifts(frames: list, masks: list) -> np.ndarray:
    """[K] the background's drift from the first frame's."""
    return drift(*background_motion(frames, masks), SIZE, SIZE)


def clip_frames(step_px: int, n: int = 12, plain: bool = False, still: int = 0) -> tuple[list, list]:
    """n frames of a SIZE x SIZE camera over a wall, a grey 'person' in the middle (not background): `still` frames
    at rest, then panning step_px pixels a frame; plain: a flat wall with fresh sensor noise in every frame."""
    rng = np.random.default_rng(0)
    wall = texture(rng, SIZE + step_px * n + 8)
    mask = np.ones((SIZE, SIZE), bool)
    mask[40:, 40:88] = False
    frames = []
    for k in range(n):
        x = 4 + max(0, k - still) * step_px
        f = np.full((SIZE, SIZE, 3), 120, np.uint8) if plain else wall[4:4 + SIZE, x:x + SIZE].copy()
        if plain:
            f = (f + rng.normal(0, 3, f.shape)).clip(0, 255).astype(np.uint8)
        f[~mask] = 90
        frames.append(f)
    return frames, [mask] * n


def test_a_panning_camera_is_named_with_its_drift():
    frames, masks = clip_frames(step_px=2)
    shifts = background_shifts(frames, masks)
    assert abs(shifts[-1] - 2 * 11) < 1.5, shifts  # 11 steps of 2 px
    note = camera_note(shifts, SIZE)
    assert note is not None and note.startswith("warning: the camera moves: the background drifts by up to 22 px")


def test_a_still_camera_and_an_untrackable_wall_say_nothing():
    frames, masks = clip_frames(step_px=0)
    shifts = background_shifts(frames, masks)
    assert np.nanmax(shifts) < 0.5 and camera_note(shifts, SIZE) is None
    frames, masks = clip_frames(step_px=0, plain=True)
    shifts = background_shifts(frames, masks)
    assert np.isnan(shifts[1:]).all() and camera_note(shifts, SIZE) is None


def test_the_part_where_the_camera_holds_still():
    """A camera still for 8 frames, then panning 3 px a frame: the still part is those 8 frames, and the warning
    names it in seconds when given."""
    frames, masks = clip_frames(step_px=3, n=13, still=7)  # frames 0-7 at rest, then 3, 6, ... px
    transforms, judged = background_motion(frames, masks)
    assert still_part(transforms, SIZE, SIZE, 0.02 * SIZE) == (0, 7)
    note = camera_note(drift(transforms, judged, SIZE, SIZE), SIZE, (0.0, 0.28))
    assert note.endswith("the part from 0.0 s to 0.3 s, where it holds still (--start 0.0 --end 0.3)")
    seconds = 10.0 + np.arange(13) * 0.5  # sampled every 0.5 s from second 10 of the video: still for 3.5 s
    assert camera_warning(frames, masks, seconds).endswith("(--start 10.0 --end 13.5)")
    assert camera_warning(frames, masks, seconds / 2).endswith("or a part where it is still (--start/--end)")  # 1.75 s


def test_a_still_camera_on_a_noisy_low_quality_clip_does_not_drift():
    """64 frames of one still view, each with fresh sensor noise and JPEG blocking: every frame is matched to the
    first, so the small errors of each match do not add up (composed over neighbouring pairs they reached 0.60 px)."""
    rng = np.random.default_rng(1)
    wall = cv2.GaussianBlur(texture(rng, SIZE + 8), (0, 0), 2.0)
    mask = np.ones((SIZE, SIZE), bool)
    mask[40:, 40:88] = False
    frames = []
    for _ in range(64):
        f = (wall[4:4 + SIZE, 4:4 + SIZE] + rng.normal(0, 10, (SIZE, SIZE, 3))).clip(0, 255).astype(np.uint8)
        f = cv2.imdecode(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 20])[1], cv2.IMREAD_COLOR)
        f[~mask] = 90
        frames.append(f)
    shifts = background_shifts(frames, [mask] * 64)
    assert np.isfinite(shifts).all() and shifts.max() < 0.35


def test_a_pan_through_blurred_frames_keeps_its_place():
    """A pan of 1 px a frame on a noisy, blocky clip, with pairs of frames too blurred to match: each blurred frame
    holds the last place, and the next sharp frame is matched to the last frame placed by a match, not to a guess."""
    rng = np.random.default_rng(1)
    n = 64
    wall = cv2.GaussianBlur(texture(rng, SIZE + n + 8), (0, 0), 1.0)
    mask = np.ones((SIZE, SIZE), bool)
    mask[40:, 40:88] = False
    frames = []
    for k in range(n):
        f = (wall[4:4 + SIZE, 4 + k:4 + k + SIZE] + rng.normal(0, 6, (SIZE, SIZE, 3))).clip(0, 255).astype(np.uint8)
        f = cv2.imdecode(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 25])[1], cv2.IMREAD_COLOR)
        if k in (10, 11, 25, 26, 40, 41, 55, 56):
            f = cv2.GaussianBlur(f, (0, 0), 6)
        f[~mask] = 90
        frames.append(f)
    shifts = background_shifts(frames, [mask] * n)
    assert np.abs(shifts - np.arange(n)).max() < 3  # a stale reference put frame 12 at 9 px and the last at 51
