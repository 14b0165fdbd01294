"""Does the camera move? The background's motion between the frames step 6 samples.

A NeRF of one person (AD-NeRF and this project) assumes a still camera: one background image, a torso that moves
only with the person. A panning, zooming or hand-held camera breaks that, and the renders blur where it does (a
TED talk's operator follows the speaker: its held-out frames drew no head at all; benchmarks/NOTES.md, 2026-12-07
sixth session). Corners of each sampled frame's background are tracked (Lucas-Kanade, forward-backward checked)
into a later sampled frame, a similarity transform is fitted to them (RANSAC), and the drift is how far it moves the
frame's corners from where they are in the first frame. Each frame is matched to a reference, the first frame for as
long as its background can be matched, else the last frame placed by a match, else the frame before (a frame matched
to none stays where the frame before it was, and the reference stays); the transforms are composed
over the references only, so a still camera's small errors do not add up over the frames (composed over every pair
of neighbours, a static camera on a low-bitrate clip drifted 8 px, over the warning's 2%). Where the
background has too little texture to track, nothing is claimed.
"""
from __future__ import annotations

import cv2
import numpy as np

MIN_POINTS = 40  # background corners that must track and agree to judge a step
MOVING_SHARE = 0.02  # the background more than this share of the frame size from where it was: the camera moved
STILL_SECONDS = 3.0  # a part of the clip where the camera holds still is suggested when at least this long
FB_PX = 1.0  # forward-backward tracking error allowed, pixels


def _track(a: np.ndarray, b: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corners pts [P,1,2] of gray image a tracked into b -> (their places in b [P,2], ok [P])."""
    lk = dict(winSize=(21, 21), maxLevel=4, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    fwd, st1, _ = cv2.calcOpticalFlowPyrLK(a, b, pts, None, **lk)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(b, a, fwd, None, **lk)
    ok = (st1[:, 0] == 1) & (st2[:, 0] == 1) & (np.linalg.norm(back - pts, axis=2)[:, 0] < FB_PX)
    return fwd[:, 0], ok


def similarity(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """The background's motion from gray image a to gray image b as a similarity [2,3] (RANSAC) fitted to the corners
    of a inside mask (bool [H,W], background in both) tracked into b; None when fewer than MIN_POINTS corners track
    and agree (a plain or noisy background)."""
    h, w = a.shape
    pts = cv2.goodFeaturesToTrack(a, 200, 0.01, max(3, w // 64), mask=mask.astype(np.uint8))
    if pts is None or len(pts) < MIN_POINTS:
        return None
    found, ok = _track(a, b, pts)
    if ok.sum() < MIN_POINTS:
        return None
    m, inliers = cv2.estimateAffinePartial2D(pts[ok, 0], found[ok], method=cv2.RANSAC, ransacReprojThreshold=1.0)
    if m is None or inliers.sum() < max(MIN_POINTS, 0.7 * ok.sum()):
        return None
    return m


def displacement(m: np.ndarray, h: int, w: int) -> float:
    """The largest displacement (pixels) of an h x w frame's corners under the similarity m [2,3]."""
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64)
    return float(np.linalg.norm(corners @ m[:, :2].T + m[:, 2] - corners, axis=1).max())


class MotionChain:
    """The background's motion of frames given one at a time (module docs: each matched to the reference, else the
    last frame placed by a match, else the frame before), holding only those frames: `add` returns where the new
    frame's background lies relative to the first frame's ([3,3]) and whether some frame so far was matched."""

    def __init__(self) -> None:
        self.frames: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # role -> (gray, mask, transform)
        self.seen = False  # some frame so far was matched
        self.matched = True  # the last frame added was (the first frame counts as matched)

    def add(self, gray: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, bool]:
        """gray uint8 [H,W], mask bool [H,W] its background -> (transform [3,3], judged)."""
        if not self.frames:
            self.frames = dict.fromkeys(("ref", "last", "prev"), (gray, mask, np.eye(3)))
            return np.eye(3), True
        m, tried = None, []
        for base in (self.frames["ref"], self.frames["last"], self.frames["prev"]):
            if any(base[0] is t for t in tried):
                continue  # the same frame in two roles
            tried.append(base[0])
            m = similarity(base[0], gray, base[1] & mask)
            if m is not None:
                break
        if m is None:  # matched to none: where the frame before was, and the reference stays
            transform = self.frames["prev"][2]
        else:
            transform = np.vstack([m, [0, 0, 1]]) @ base[2]
            self.frames["ref"], self.frames["last"] = base, (gray, mask, transform)
        self.frames["prev"] = (gray, mask, transform)
        self.matched = m is not None
        self.seen |= self.matched
        return transform, self.seen


def background_motion(frames: list[np.ndarray], masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """frames: RGB uint8 [K,H,W,3] in clip order, masks: bool [K,H,W] their background -> (transforms
    [K,3,3]: where each frame's background lies relative to the first's, its similarity to its reference composed
    with the reference's (module docs), a frame that cannot be matched counting as no motion; judged [K] bool: some
    frame up to that one was matched)."""
    chain = MotionChain()
    steps = [chain.add(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), m) for f, m in zip(frames, masks)]
    return np.array([t for t, _ in steps]), np.array([j for _, j in steps])


def drift(transforms: np.ndarray, judged: np.ndarray, h: int, w: int) -> np.ndarray:
    """[K] how far (pixels) the background of each h x w frame lies from the first's (transforms [K,3,3], judged [K]
    from background_motion); NaN where no step so far could be judged."""
    return np.array([displacement(t[:2], h, w) if ok else np.nan for t, ok in zip(transforms, judged)])


def still_part(transforms: np.ndarray, h: int, w: int, limit: float) -> tuple[int, int]:
    """The longest run (first, last) of the frames [K] whose background stays within limit pixels of where it is
    in the run's first frame (transforms [K,3,3] from background_motion)."""
    best = (0, 0)
    for i in range(len(transforms)):
        inv, j = np.linalg.inv(transforms[i]), i
        while j + 1 < len(transforms) and displacement((transforms[j + 1] @ inv)[:2], h, w) <= limit:
            j += 1
        if j - i > best[1] - best[0]:
            best = (i, j)
    return best


def camera_note(shifts: np.ndarray, size: int, still: tuple[float, float] | None = None) -> str | None:
    """One warning line when the background drifts from the first sampled frame's by more than MOVING_SHARE of the
    frame size (shifts [K] from background_shifts); None for a still camera or a background that could not be
    tracked. still: the seconds (start, end) of the longest part where the camera holds still, suggested when given."""
    judged = shifts[np.isfinite(shifts)]
    if len(judged) < max(2, len(shifts) // 4) or judged.max() <= MOVING_SHARE * size:
        return None
    where = (f"the part from {still[0]:.1f} s to {still[1]:.1f} s, where it holds still (--start {still[0]:.1f} --end "
             f"{still[1]:.1f})" if still else "a part where it is still (--start/--end)")
    return (f"warning: the camera moves: the background drifts by up to {judged.max():.0f} px ({judged.max() / size:.0%} "
            "of the frame) from where it is in the first frame; the model assumes a still camera (one background, a "
            "torso that moves only with the person), so renders blur where it moved: use a clip from a camera on a "
            f"stand, or {where}")


def camera_warning(frames: list[np.ndarray], masks: list[np.ndarray], seconds: np.ndarray) -> str | None:
    """frames: RGB uint8 [K,H,W,3] sampled in clip order at seconds [K] of the video, masks: bool [K,H,W] their
    background -> camera_note's warning (naming the longest still part when it lasts STILL_SECONDS), or None."""
    transforms, judged = background_motion(frames, masks)
    h, w = frames[0].shape[:2]
    first, last = still_part(transforms, h, w, MOVING_SHARE * max(h, w))
    still = (seconds[first], seconds[last]) if seconds[last] - seconds[first] >= STILL_SECONDS else None
    return camera_note(drift(transforms, judged, h, w), max(h, w), still)
