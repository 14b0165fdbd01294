"""Faces on frames sampled from the video (step 3): mediapipe's face detection, and which face is the subject.

Step 3 finds the subject's face on N_SAMPLES frames spread over the span to place the square it cuts
(data_util.video), and on frames of each shot to suggest one (data_util.shots).
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from common.errors import PreprocessError
from common.ffmpeg import call_ffmpeg
from common.quiet import quiet_native_stderr

N_SAMPLES = 5  # frames sampled for face detection
SAME_FACE = 0.5  # detections overlapping this much (intersection over union) are one face
OTHER_SHARE = 0.25  # another face this large against the subject's counts as a second person (not a hand)


def read_frame(video: Path, t: float, width: int, height: int) -> np.ndarray | None:
    """The frame at time t seconds in square pixels, uint8 [height, width, 3] RGB; None if it cannot be decoded."""
    proc = call_ffmpeg(["-ss", f"{t:.3f}", "-i", str(video), "-frames:v", "1",
                        "-vf", f"scale={width}:{height},setsar=1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
    if len(proc.stdout) != width * height * 3:
        return None
    return np.frombuffer(proc.stdout, np.uint8).reshape(height, width, 3)


def detect_faces(image: np.ndarray, detectors: list) -> list[tuple[float, tuple[float, float, float, float]]]:
    """The distinct faces in an RGB image: [(score, (x0, y0, x1, y1) pixels)], largest first.

    Tries the full frame and, for a wide or tall frame, its square tiles (a small face is easier to find there),
    with each mediapipe detector in turn (full-range, then short-range) until one finds a face; a face found twice
    (in the frame and a tile) is one face, with its best-scored box."""
    h, w = image.shape[:2]
    side = min(h, w)
    tiles = [(0, 0, w, h)]
    if w != h:
        steps = np.linspace(0, max(w, h) - side, num=max(2, int(np.ceil(2 * max(w, h) / side)) - 1))
        tiles += [(int(s), 0, side, side) if w > h else (0, int(s), side, side) for s in steps]
    for det in detectors:
        found = []
        for x, y, tw, th in tiles:
            res = det.process(np.ascontiguousarray(image[y:y + th, x:x + tw]))
            for d in res.detections or []:
                b = d.location_data.relative_bounding_box
                found.append((float(d.score[0]), (x + b.xmin * tw, y + b.ymin * th, x + (b.xmin + b.width) * tw,
                                                  y + (b.ymin + b.height) * th)))
        faces: list[tuple[float, tuple]] = []
        for score, box in sorted(found, key=lambda f: -f[0]):
            if all(overlap(box, kept) < SAME_FACE for _, kept in faces):
                faces.append((score, box))
        if faces:
            return sorted(faces, key=lambda f: -box_area(f[1]))
    return []


def overlap(a: tuple, b: tuple) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / max(box_area(a) + box_area(b) - inter, 1e-9)


def box_area(box: tuple) -> float:
    """Area of a box (x0, y0, x1, y1)."""
    return float((box[2] - box[0]) * (box[3] - box[1]))


def same_place(a: tuple, b: tuple) -> bool:
    """Whether box a's centre lies within one face size (b's larger side) of box b's."""
    dx, dy = (a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2
    return float(np.hypot(dx, dy)) < max(b[2] - b[0], b[3] - b[1])


def choose_subject(per_frame: list[list[tuple]]) -> tuple[list[tuple], int]:
    """The subject among the faces of the sampled frames (each frame's [(score, box)], from detect_faces) ->
    (its box in every frame with a face, how many frames also hold another face at least OTHER_SHARE its size).

    The faces of all frames are grouped by place (a centre within one face size of the group's largest face); the
    subject is the group found in the most frames, the larger on a tie (two people in an interview: the nearer to
    the camera), the same person in every frame. A frame without a face of that group gives its largest face (a
    subject that moved further than a face size between samples)."""
    groups: list[list[tuple]] = []  # [(frame, box)], the largest first
    for i, box in sorted(((i, b) for i, fr in enumerate(per_frame) for _, b in fr), key=lambda f: -box_area(f[1])):
        group = next((g for g in groups if same_place(box, g[0][1])), None)
        if group is None:
            groups.append(group := [])
        group.append((i, box))
    if not groups:
        return [], 0
    subject = max(groups, key=lambda g: (len({i for i, _ in g}), float(np.median([box_area(b) for _, b in g]))))
    boxes, crowded = [], 0
    for i, faces in enumerate(per_frame):
        if not faces:
            continue
        box = next((b for j, b in subject if j == i), faces[0][1])
        boxes.append(box)
        crowded += any(b is not box and box_area(b) >= OTHER_SHARE * box_area(box) for _, b in faces)
    return boxes, crowded


@contextlib.contextmanager
def open_detectors() -> Iterator[Callable[[np.ndarray], list[tuple[float, tuple]]]]:
    """found_in(image): detect_faces with mediapipe's full-range and short-range detectors, open inside the block."""
    import mediapipe as mp

    with quiet_native_stderr():
        fd = mp.solutions.face_detection
        with fd.FaceDetection(model_selection=1, min_detection_confidence=0.5) as far, \
                fd.FaceDetection(model_selection=0, min_detection_confidence=0.5) as near:
            yield lambda image: detect_faces(image, [far, near])


def face_sizes(video: Path, times: list[float], width: int, height: int) -> list[float]:
    """The largest face's side (pixels, square pixels) on the frame at each of `times` seconds; 0 where none is
    found or the frame cannot be decoded."""
    frames = [read_frame(video, t, width, height) for t in times]
    with open_detectors() as found_in:
        faces = [found_in(f) if f is not None else [] for f in frames]
    return [max((max(b[2] - b[0], b[3] - b[1]) for _, b in fr), default=0.0) for fr in faces]


def find_faces(video: Path, start: float, end: float | None, width: int, height: int,
               view: Callable[[np.ndarray, float], np.ndarray] | None = None) -> np.ndarray | None:
    """Face boxes [K,4] (x0, y0, x1, y1) in square pixels on the frames of N_SAMPLES times spread over start..end
    seconds where a face is found (None: on none); view(frame, seconds into the span): the frame as step 3 keeps it
    (stabilised), when given."""
    times = [start] if not end else [start + (end - start) * (k + 0.5) / N_SAMPLES for k in range(N_SAMPLES)]
    frames = [(t, f) for t, f in ((t, read_frame(video, t, width, height)) for t in times) if f is not None]
    if not frames and end:  # a video of a frame or two: the times fall past it
        frames = [(start, f) for f in [read_frame(video, start, width, height)] if f is not None]
    frames = [view(f, t - start) if view else f for t, f in frames]
    if not frames:
        raise PreprocessError(f"{video}: no frame could be decoded (damaged or truncated file?)")
    with open_detectors() as found_in:
        boxes, crowded = choose_subject([found_in(frame) for frame in frames])
    if 2 * crowded >= len(frames):  # in half the samples or more: not a passer-by or a false detection
        x0, y0, x1, y1 = np.median(boxes, axis=0)
        print(f"warning: {video}: more than one person in {crowded} of {len(frames)} sampled frames; the subject is "
              f"the face at x {(x0 + x1) / 2:.0f}, y {(y0 + y1) / 2:.0f} of {width}x{height} (in the most samples, "
              "the largest on a tie): crop the video to the speaker otherwise, and give speech of that person alone "
              "(--audio)", file=sys.stderr)
    return np.array(boxes) if boxes else None
