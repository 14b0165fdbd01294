"""Shots: where the span of a video is cut, found by step 3 before it crops or stabilises anything.

One model is one continuous shot from one camera. A cut to another camera (an edited interview, a talk filmed from
several places), a dissolve or a fade puts frames into training that no head pose or background explains, and the
virtual tripod (data_util.stabilise) would chain the camera's motion across them. The span's frames are read as
THUMB_WIDTH-px thumbnails at 25 fps, and two kinds of transition are found in them:
- a hard cut: the mean absolute change from one frame to the next is at least CUT (per cent of full scale), also
  with the best shift of up to REACH pixels between them (a fast pan is no cut), and the picture from before it
  does not come back within COMES_BACK frames (a flash, a hand swept past the lens);
- a gradual one (a dissolve, a fade): a run of frames each changing by at least RUN, whose ends differ by at least
  CUT (also after the best shift) and whose inner frames are blends of its ends (the worst residual of that fit under BLEND of the change); a
  pan, a shake or someone walking changes as much frame by frame, but is no blend of its ends.
Transitions within MERGE frames of each other are one; the frames changing fast next to one (up to NEAR on each
side: a fade into a cut) belong to it. A span that is not one shot from end to end stops step 3 with one line
naming the transitions and the --start/--end of the longest shot that shows a face (data_util.video);
`--cuts keep` processes it as it is.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import span
from .context import FPS
from .faces import face_sizes
from common.ffmpeg import FrameStream

THUMB_WIDTH = 64  # pixels: the thumbnails' width (their height keeps the display aspect)
CUT = 8.0  # per cent: a frame-to-frame change this large, that stays, is a cut (a still camera's talker: < 4)
REACH = 4  # pixels of the thumbnail (6% of its width): a frame moved this far from the last is still no cut
COMES_BACK = 5  # frames: a picture that comes back within these was a flash or something swept past, not a cut
RUN = 1.5  # per cent: frames changing at least this much in a row may be a dissolve or a fade
BLEND = 0.3  # a run whose inner frames are blends of its ends to within this share of the change is one
MERGE = 3  # frames: transitions this close together are one
NEAR = FPS  # frames: fast-changing frames next to a transition, up to this many, belong to it
MIN_SHOT = FPS  # frames: a shorter shot is not suggested
MIN_FACE = 40  # pixels: a face smaller than this and than MIN_FACE_SHARE of the frame's height (a wide shot)
MIN_FACE_SHARE = 1 / 6  # does not make a shot worth suggesting
FACE_SAMPLES = 3  # frames of a shot looked at for a face


@dataclass
class Shots:
    """The shots and transitions of a span of n frames, each as frames [a, b) from the span's start (25 fps); a
    hard cut is an empty transition (a == b: frame a starts the next shot)."""
    n: int
    shots: list[tuple[int, int]]
    transitions: list[tuple[int, int]]

    @property
    def one_shot(self) -> bool:
        """No transition (an undecodable span, n = 0, counts as one shot: step 3 says what is wrong with it)."""
        return not self.transitions


def thumbnails(video: Path, before: list[str], display_vf: str, width: int, height: int) -> np.ndarray:
    """The span's frames (input options `before`, display_vf: 25 fps, square pixels) as float32 [N, h, THUMB_WIDTH,
    3] thumbnails (area-averaged)."""
    h = max(2, 2 * round(THUMB_WIDTH * height / width / 2))
    stream = FrameStream([*before, "-i", str(video), "-an", "-vf",
                          f"{display_vf},scale={THUMB_WIDTH}:{h}:flags=area"], THUMB_WIDTH, h)
    frames = [f.astype(np.float32) for f in stream]
    return np.stack(frames) if frames else np.zeros((0, h, THUMB_WIDTH, 3), np.float32)


def change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails, per cent of full scale."""
    return float(np.abs(a - b).mean() / 2.55)


def moved_change(a: np.ndarray, b: np.ndarray) -> float:
    """change() after the best whole-pixel shift of up to REACH pixels each way (over the two frames' overlap)."""
    h, w = a.shape[:2]
    return min(float(np.abs(a[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)]
                            - b[max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)]).mean() / 2.55)
               for dy in range(-REACH, REACH + 1) for dx in range(-REACH, REACH + 1))


def steps(thumbs: np.ndarray) -> np.ndarray:
    """[N] the change into each frame from the one before (0 for the first)."""
    if len(thumbs) < 2:
        return np.zeros(len(thumbs))
    return np.concatenate([[0.0], np.abs(np.diff(thumbs, axis=0)).mean(axis=(1, 2, 3)) / 2.55])


def hard_cuts(thumbs: np.ndarray, step: np.ndarray) -> list[int]:
    """Frames i that start a new picture: step[i] >= CUT, also after the best shift, and the picture from before
    does not come back."""
    return [int(i) for i in np.flatnonzero(step >= CUT)
            if moved_change(thumbs[i], thumbs[i - 1]) >= CUT and not comes_back(thumbs, int(i))]


def comes_back(thumbs: np.ndarray, i: int) -> bool:
    """Whether one of the COMES_BACK frames before frame i is seen again (within CUT / 2, after the best shift) in
    the COMES_BACK frames from i on: the change into i was a flash or something swept past the lens."""
    after = range(i, min(len(thumbs), i + COMES_BACK))
    return any(moved_change(thumbs[j], thumbs[k]) < CUT / 2 for j in after for k in range(max(0, i - COMES_BACK), i))


def blend_residual(thumbs: np.ndarray, a: int, b: int) -> float:
    """How far frames a+1..b-1 are from blends (1-w) f_a + w f_b, w in [0, 1] fitted per frame: the worst mean
    absolute residual over the change from f_a to f_b."""
    start, delta = thumbs[a].ravel(), (thumbs[b] - thumbs[a]).ravel()
    norm = max(float(delta @ delta), 1e-9)
    worst = 0.0
    for i in range(a + 1, b):
        x = thumbs[i].ravel() - start
        w = float(np.clip(x @ delta / norm, 0.0, 1.0))
        worst = max(worst, float(np.abs(x - w * delta).mean()))
    return worst / max(float(np.abs(delta).mean()), 1e-9)


def gradual(thumbs: np.ndarray, step: np.ndarray) -> list[tuple[int, int]]:
    """Dissolves and fades: frames [a, b) of a run of steps >= RUN (a repeated frame, as 25 fps repeats a slower
    video's, does not end it) at least two long, whose ends (frames a-1 and b-1) differ by CUT or more, also after
    the best shift (a small motion's middle looks like a blend of its ends), and whose inner frames are blends of
    them."""
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
        if (j - i >= 2 and moved_change(thumbs[i - 1], thumbs[j - 1]) >= CUT
                and blend_residual(thumbs, i - 1, j - 1) < BLEND):
            found.append((i, j - 1))
        i = j
    return found


def widen(span: tuple[int, int], step: np.ndarray) -> tuple[int, int]:
    """A transition [a, b) with the fast-changing frames beside it (steps >= RUN, up to NEAR on each side)."""
    a, b = span
    lo = a
    while lo > max(0, a - NEAR) and (step[lo - 1] >= RUN or lo == 1):  # (frame 0 beside a fast frame 1: in it)
        lo -= 1
    hi = b
    while hi < min(len(step) - 1, b + NEAR) and step[hi + 1] >= RUN:
        hi += 1
    return lo, hi


def find_transitions(thumbs: np.ndarray) -> list[tuple[int, int]]:
    """Frames [a, b) that belong to no shot, sorted; a hard cut gives (i, i)."""
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


def best(shots: Shots, video: Path, start: float, width: int, height: int) -> tuple[tuple[int, int], bool] | None:
    """The shot to suggest (the longest of at least MIN_SHOT frames that shows a face of MIN_FACE px, or
    MIN_FACE_SHARE of the frame's height, in every one of FACE_SAMPLES frames, else the longest) and whether it shows
    one; None if none is long enough."""
    long = sorted((s for s in shots.shots if s[1] - s[0] >= MIN_SHOT), key=lambda s: s[0] - s[1])
    for a, b in long:
        times = [start + (a + (b - a) * (k + 0.5) / FACE_SAMPLES) / FPS for k in range(FACE_SAMPLES)]
        if min(face_sizes(video, times, width, height)) >= min(MIN_FACE, MIN_FACE_SHARE * height):
            return (a, b), True
    return (long[0], False) if long else None


def message(shots: Shots, video: Path, start: float, width: int, height: int) -> str:
    """The one line step 3 stops with when the span is not one shot."""
    cuts = [seconds(t, start) for t in shots.transitions]
    where = ", ".join(cuts[:4]) + (f" and {len(cuts) - 4} more" if len(cuts) > 4 else "")
    kind = ("a cut or transition (a dissolve, a fade)" if len(cuts) == 1 else
            f"{len(cuts)} cuts or transitions (dissolves, fades)")
    what = f"{video}: {kind} at {where} s; one model needs one continuous shot from one camera"
    choice = best(shots, video, start, width, height)
    if choice is None:
        return f"{what}, and no shot is {MIN_SHOT / FPS:g} s long (--cuts keep processes it as it is)"
    (a, b), face = choice
    lo, hi = span.inward(a + (a > 0), b, start)  # (a frame of margin after a transition, too)
    which = "the longest shot with a face" if face else "no shot shows a face steadily; the longest"
    return (f"{what}: {which} is {lo:g}-{hi:g} s ({(b - a) / FPS:.1f} s): add --start {lo:g} --end {hi:g} "
            "(or --cuts keep to process the span as it is)")
