"""Shots: where the span of a video is cut, found by step 3 before it crops or stabilises anything.

One model is one continuous shot from one camera. A cut to another camera (an edited interview, a talk filmed from
several places), a dissolve or a fade puts frames into training that no head pose or background explains, and the
virtual tripod (data_util.stabilise) would chain the camera's motion across them. The span's frames are read as
THUMB_WIDTH-px thumbnails at 25 fps, and two kinds of transition are found in them:
- a hard cut: the mean absolute change from one frame to the next is at least CUT (per cent of full scale), also
  with the best shift of up to REACH pixels between them (a fast pan is no cut), and none of the COMES_BACK frames
  before it comes back within COMES_BACK frames (a flash, a hand over the lens for half a second);
- a gradual one (a dissolve, a fade): a run of frames each changing by at least RUN, whose ends differ by at least
  CUT (also after the best shift) and whose inner frames are blends of its ends (the worst residual of that fit
  under BLEND of the change); a pan, a shake or someone walking changes as much frame by frame, but is no blend of
  its ends, and a change of brightness alone (exposure, a light) is a blend but not a fade unless one end is flat.
  A dissolve slower than about half a second (frames changing by under RUN each) is not found.
Transitions within MERGE frames of each other are one; the frames changing fast next to one (up to NEAR on each
side: a fade into a cut) belong to it. A span with two shots of MIN_SHOT frames or more stops step 3 with one line
naming the transitions and the --start/--end of the longest shot that shows a face (data_util.video); `--cuts keep`
processes it as it is. Transitions that only cut a few frames off the span's ends (a black first frame, a clip that
fades in) are kept with a warning naming the trim that leaves them out.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import span
from .context import FPS
from .faces import face_sizes
from .stabilise import decoder

THUMB_WIDTH = 64  # pixels: the thumbnails' width (their height keeps the display aspect)
CUT = 8.0  # per cent: a frame-to-frame change this large, that stays, is a cut (a still camera's talker: < 4)
REACH = 4  # pixels of the thumbnail (6% of its width): a frame moved this far from the last is still no cut
COMES_BACK = 15  # frames: a picture from this close before a change seen again this soon after it makes it no cut
#                 (a flash, a hand held over the lens for half a second)
RUN = 1.5  # per cent: frames changing at least this much in a row may be a dissolve or a fade
BLEND = 0.3  # a run whose inner frames are blends of its ends to within this share of the change is one
FLAT = 8.0  # grey levels: a frame whose pixels spread less than this is flat (black, white, one colour)
MERGE = 3  # frames: transitions this close together are one
NEAR = FPS  # frames: fast-changing frames next to a transition, up to this many, belong to it
MIN_SHOT = FPS  # frames: a shorter shot is not suggested, and shorter pieces at the span's ends do not stop it
MIN_FACE = 40  # pixels: a face smaller than this and than MIN_FACE_SHARE of the frame's height (a wide shot)
MIN_FACE_SHARE = 1 / 6  # does not make a shot worth suggesting
FACE_SAMPLES = 3  # frames of a shot looked at for a face


@dataclass
class Shots:
    """The shots and transitions of a span of n frames, each as frames [a, b) from the span's start (25 fps); a
    hard cut with nothing beside it is an empty transition (a == b: frame a starts the next shot)."""
    n: int
    shots: list[tuple[int, int]]
    transitions: list[tuple[int, int]]

    @property
    def several(self) -> bool:
        """Two shots or more of at least MIN_SHOT frames: not one model's footage."""
        return sum(b - a >= MIN_SHOT for a, b in self.shots) >= 2


def thumbnails(video: Path, before: list[str], display_vf: str, width: int, height: int) -> np.ndarray:
    """The span's frames (input options `before`, display_vf: 25 fps, square pixels) as uint8 [N, h, THUMB_WIDTH,
    3] thumbnails (area-averaged; 7 KB a frame)."""
    h = max(2, 2 * round(THUMB_WIDTH * height / width / 2))
    frames = list(decoder(video, before, display_vf, THUMB_WIDTH, h)(f"scale={THUMB_WIDTH}:{h}:flags=area"))
    return np.stack(frames) if frames else np.zeros((0, h, THUMB_WIDTH, 3), np.uint8)


def change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails, per cent of full scale."""
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean() / 2.55)


def moved_change(a: np.ndarray, b: np.ndarray) -> float:
    """change() after the best whole-pixel shift of up to REACH pixels each way (over the two frames' overlap)."""
    h, w = a.shape[:2]
    a, b = a.astype(np.float32), b.astype(np.float32)
    return min(float(np.abs(a[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)]
                            - b[max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)]).mean() / 2.55)
               for dy in range(-REACH, REACH + 1) for dx in range(-REACH, REACH + 1))


def steps(thumbs: np.ndarray) -> np.ndarray:
    """[N] the change into each frame from the one before (0 for the first)."""
    return np.array([0.0] + [change(thumbs[i], thumbs[i - 1]) for i in range(1, len(thumbs))])[:len(thumbs)]


def comes_back(thumbs: np.ndarray, a: int, b: int) -> bool:
    """Whether a picture of the COMES_BACK frames before frame a is seen again (within CUT / 2, after the best
    shift) in the COMES_BACK frames from b on, every other frame compared: the change over a..b was a flash, or
    something held over the lens a moment (its coming or its going)."""
    before, after = range(a - 1, max(-1, a - 1 - COMES_BACK), -2), range(b, min(len(thumbs), b + COMES_BACK), 2)
    return any(change(thumbs[j], thumbs[k]) < CUT / 2 or moved_change(thumbs[j], thumbs[k]) < CUT / 2
               for j in after for k in before)


def hard_cuts(thumbs: np.ndarray, step: np.ndarray) -> list[int]:
    """Frames i that start a new picture: step[i] >= CUT, also after the best shift, and the picture from before
    does not come back."""
    return [int(i) for i in np.flatnonzero(step >= CUT)
            if moved_change(thumbs[i], thumbs[i - 1]) >= CUT and not comes_back(thumbs, int(i), int(i))]


def blend_residual(thumbs: np.ndarray, a: int, b: int) -> float:
    """How far frames a+1..b-1 are from blends (1-w) f_a + w f_b, w in [0, 1] fitted per frame: the worst mean
    absolute residual over the change from f_a to f_b."""
    start = thumbs[a].astype(np.float32).ravel()
    delta = thumbs[b].astype(np.float32).ravel() - start
    norm = max(float(delta @ delta), 1e-9)
    worst = 0.0
    for i in range(a + 1, b):
        x = thumbs[i].astype(np.float32).ravel() - start
        w = float(np.clip(x @ delta / norm, 0.0, 1.0))
        worst = max(worst, float(np.abs(x - w * delta).mean()))
    return worst / max(float(np.abs(delta).mean()), 1e-9)


def brightness_only(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether thumbnail b is thumbnail a brighter or darker (b ~ gain a + offset per colour, to within BLEND of
    their difference) and neither is flat: an exposure or a light that changed, not a fade to or from black."""
    x, y = a.reshape(-1, 3).astype(np.float64), b.reshape(-1, 3).astype(np.float64)
    if min(x.std(0).max(), y.std(0).max()) < FLAT:
        return False
    fit = np.stack([np.polyval(np.polyfit(x[:, c], y[:, c], 1), x[:, c]) for c in range(3)], 1)
    return float(np.abs(y - fit).mean()) < BLEND * max(float(np.abs(y - x).mean()), 1e-9)


def gradual(thumbs: np.ndarray, step: np.ndarray) -> list[tuple[int, int]]:
    """Dissolves and fades: the transition frames [a, b) of a run of steps >= RUN (a repeated frame, as 25 fps
    repeats a slower video's, does not end it) at least two long whose ends, frames a-1 and b, differ by CUT or
    more, also after the best shift (a small motion's middle looks like a blend of its ends), by more than
    brightness, and not for a moment only, and whose inner frames are blends of them."""
    n, found, i = len(thumbs), [], 1
    fast = step >= RUN
    moving = fast | ((step == 0) & np.append(fast[1:], False))  # a repeat between two fast frames
    while i < n:
        if not fast[i]:
            i += 1
            continue
        j = i
        while j < n and moving[j]:
            j += 1
        a, b = i - 1, j - 1  # the run's ends
        if (j - i >= 2 and moved_change(thumbs[a], thumbs[b]) >= CUT and not brightness_only(thumbs[a], thumbs[b])
                and blend_residual(thumbs, a, b) < BLEND and not comes_back(thumbs, i, b)):
            found.append((i, b))
        i = j
    return found


def widen(transition: tuple[int, int], step: np.ndarray) -> tuple[int, int]:
    """A transition [a, b) with the fast-changing frames beside it (steps >= RUN, up to NEAR on each side; a first
    or last frame beside it joins it too)."""
    a, b = transition
    lo = a
    while lo > max(0, a - NEAR) and (step[lo - 1] >= RUN or lo == 1):  # (frame 0 has no step of its own)
        lo -= 1
    hi = b
    while hi < min(len(step) - 1, b + NEAR) and step[hi + 1] >= RUN:
        hi += 1
    return lo, (len(step) if hi == len(step) - 1 else hi)


def find_transitions(thumbs: np.ndarray) -> list[tuple[int, int]]:
    """Frames [a, b) that belong to no shot, sorted (a hard cut alone gives (i, i): frame i starts a shot)."""
    step = steps(thumbs)
    found = sorted([(i, i) for i in hard_cuts(thumbs, step)] + gradual(thumbs, step))
    merged: list[tuple[int, int]] = []
    for a, b in found:
        if merged and a - merged[-1][1] <= MERGE:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return [widen(t, step) for t in merged]


def split(n: int, transitions: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The shots [a, b) of n frames between the transitions."""
    shots, start = [], 0
    for a, b in transitions:
        if a > start:
            shots.append((start, a))
        start = max(start, b)
    if start < n:
        shots.append((start, n))
    return shots


def find(video: Path, before: list[str], display_vf: str, width: int, height: int) -> Shots:
    """The shots of the span (input options `before`) of `video`."""
    thumbs = thumbnails(video, before, display_vf, width, height)
    transitions = find_transitions(thumbs)
    return Shots(len(thumbs), split(len(thumbs), transitions), transitions)


def seconds(frames: tuple[int, int], start: float) -> str:
    """'12.0-12.6' (a span's frames [a, b) in seconds of the video) or '22.6' for a hard cut."""
    lo, hi = (f"{start + f / FPS:.1f}" for f in frames)
    return lo if lo == hi else f"{lo}-{hi}"


def where(shots: Shots, start: float) -> str:
    """'4.6-5.0, 12.0-12.6, 22.6, 29.2 and 3 more' (the transitions in seconds of the video)."""
    cuts = [seconds(t, start) for t in shots.transitions]
    return ", ".join(cuts[:4]) + (f" and {len(cuts) - 4} more" if len(cuts) > 4 else "")


def trim(shot: tuple[int, int], start: float) -> tuple[float, float]:
    """The --start/--end that keep the shot [a, b), a frame of margin after a transition before it (span.inward
    keeps one at its end)."""
    return span.inward(shot[0] + (shot[0] > 0), shot[1], start)


def best(shots: Shots, video: Path, start: float, width: int, height: int) -> tuple[tuple[int, int], bool] | None:
    """The shot to suggest (the longest of at least MIN_SHOT frames that shows a face of MIN_FACE px, or
    MIN_FACE_SHARE of the frame's height, in every one of FACE_SAMPLES frames, else the longest) and whether it shows
    one; None if none is long enough."""
    long = sorted((s for s in shots.shots if s[1] - s[0] >= MIN_SHOT), key=lambda s: s[0] - s[1])
    times = [start + (a + (b - a) * (k + 0.5) / FACE_SAMPLES) / FPS for a, b in long for k in range(FACE_SAMPLES)]
    sizes = np.array(face_sizes(video, times, width, height)).reshape(len(long), FACE_SAMPLES)
    for shot, size in zip(long, sizes):
        if size.min() >= min(MIN_FACE, MIN_FACE_SHARE * height):
            return shot, True
    return (long[0], False) if long else None


def message(shots: Shots, video: Path, start: float, width: int, height: int) -> str:
    """The one line step 3 stops with when the span holds several shots."""
    k = len(shots.transitions)
    kind = "a cut or transition (a dissolve, a fade)" if k == 1 else f"{k} cuts or transitions (dissolves, fades)"
    what = f"{video}: {kind} at {where(shots, start)} s; one model needs one continuous shot from one camera"
    choice = best(shots, video, start, width, height)
    if choice is None:
        return f"{what}, and no shot is {MIN_SHOT / FPS:g} s long (--cuts keep processes it as it is)"
    (a, b), face = choice
    lo, hi = trim((a, b), start)
    which = "the longest shot with a face" if face else "no shot shows a face steadily; the longest"
    return (f"{what}: {which} is {lo:g}-{hi:g} s ({(b - a) / FPS:.1f} s): add --start {lo:g} --end {hi:g} "
            "(or --cuts keep to process the span as it is)")


def edge_warning(shots: Shots, video: Path, start: float) -> str:
    """The warning for transitions that only cut a few frames off the span's ends (kept, and trained on)."""
    longest = max(shots.shots, key=lambda s: s[1] - s[0], default=(0, shots.n))
    lo, hi = trim(longest, start)
    return (f"warning: {video}: frames of a transition (a fade, a dissolve, a flash) at {where(shots, start)} s, at "
            f"the span's ends, are kept; --start {lo:g} --end {hi:g} leaves them out")
