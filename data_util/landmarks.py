"""Step 4: dense face landmarks -> `landmarks.npy` [N,478,3] and AD-NeRF's 68-point `ori_imgs/<i>.lms`.

Also `occlusion.npy` [N,478] bool: the points a hand covers (data_util/occlusion.py, mediapipe's hand tracker).

Default back-end: mediapipe 0.10.14 face mesh (shipped inside the wheel, no download), in video mode with
tracking on and iris refinement (478 points). Points are in pixels: x, y and z*w (mediapipe's relative depth,
scaled like x). A frame where the tracker loses the face is retried on its own (static mode); short gaps that
remain are filled by linear interpolation over time. More than MAX_MISSING of the frames without a face, or more
than MAX_GAP in a row, is an error that names the video, the seconds without a face, and a --start/--end that
keeps the longest part with one.

The 68-point layout (iBUG: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67) is taken from fixed
mesh vertices (MESH_TO_68); the jaw points are the mesh's face-oval points nearest to the iBUG jaw line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from tqdm import tqdm

from . import span
from .context import FPS, StepContext
from common.errors import PreprocessError
from common.fileio import save_npy, save_text
from common.quiet import quiet_native_stderr

N_POINTS = 478
MAX_MISSING = 0.05  # fraction of frames allowed without a face (filled by interpolation)
MAX_GAP = 25  # longest run of frames without a face that is interpolated (1 s at 25 fps)

# mesh vertex for each of the 68 iBUG points
MESH_TO_68 = np.array([
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,  # jaw 0-16
    71, 63, 105, 66, 107, 336, 296, 334, 293, 301,  # brows 17-26
    168, 197, 5, 4, 75, 97, 2, 326, 305,  # nose 27-35
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,  # eyes 36-47
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips 48-59
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips 60-67
])
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
MOUTH_LEFT, MOUTH_RIGHT = 61, 291


def to_68(lms: np.ndarray) -> np.ndarray:
    """[..., 478, 3] mesh points -> [..., 68, 2] iBUG points (pixels)."""
    return lms[..., MESH_TO_68, :2]


def mouth_opening(lms: np.ndarray) -> np.ndarray:
    """[..., 478, 3] -> [...] inner-lip gap divided by mouth width (0 closed, ~0.5 wide open)."""
    gap = np.linalg.norm(lms[..., UPPER_INNER_LIP, :2] - lms[..., LOWER_INNER_LIP, :2], axis=-1)
    width = np.linalg.norm(lms[..., MOUTH_LEFT, :2] - lms[..., MOUTH_RIGHT, :2], axis=-1)
    return gap / np.maximum(width, 1e-6)


def mouth_shape(lms: np.ndarray) -> dict[str, np.ndarray]:
    """[..., 478, 3] -> {"width": corner-to-corner distance, "opening": inner-lip gap}, each [...] over the
    outer eye-corner distance, in 3D (they do not shrink when the head turns)."""
    eyes = np.maximum(np.linalg.norm(lms[..., 33, :] - lms[..., 263, :], axis=-1), 1e-6)
    return {"width": np.linalg.norm(lms[..., MOUTH_LEFT, :] - lms[..., MOUTH_RIGHT, :], axis=-1) / eyes,
            "opening": np.linalg.norm(lms[..., UPPER_INNER_LIP, :] - lms[..., LOWER_INNER_LIP, :], axis=-1) / eyes}


MOUTH_OPENING = mouth_opening  # the older name (docs/DESIGN.md section 12 uses mouth_opening)


def _face_mesh(static: bool):
    import mediapipe as mp

    return mp.solutions.face_mesh.FaceMesh(static_image_mode=static, max_num_faces=1, refine_landmarks=True,
                                           min_detection_confidence=0.5, min_tracking_confidence=0.5)


def _points(result, h: int, w: int) -> np.ndarray | None:
    """[478,3] pixels of the first face of a mediapipe result, or None."""
    if not result.multi_face_landmarks:
        return None
    lm = result.multi_face_landmarks[0].landmark
    pts = np.array([(p.x, p.y, p.z) for p in lm], np.float32)
    return pts * np.array([w, h, w], np.float32)


def detect_landmarks(frames: Iterable[np.ndarray], progress: bool = False, total: int | None = None) -> np.ndarray:
    """float32 [N,478,3] (x, y, z*w pixels) for RGB uint8 frames [H,W,3], a video in order; NaN rows where no
    face was found (after a static-mode retry of that frame)."""
    out = []
    with quiet_native_stderr() as stderr, _face_mesh(static=False) as video_mesh, _face_mesh(static=True) as still_mesh:
        for frame in tqdm(frames, total=total, desc="landmarks", unit="frame", disable=not progress, file=stderr):
            h, w = frame.shape[:2]
            rgb = np.ascontiguousarray(frame)
            pts = _points(video_mesh.process(rgb), h, w)
            if pts is None:
                pts = _points(still_mesh.process(rgb), h, w)
            out.append(np.full((N_POINTS, 3), np.nan, np.float32) if pts is None else pts)
    if not out:
        return np.zeros((0, N_POINTS, 3), np.float32)
    return np.stack(out)


def missing_runs(missing: np.ndarray) -> list[tuple[int, int]]:
    """[(start, stop)] runs of True in a [N] bool array."""
    edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def face_part(missing: np.ndarray, max_missing: float = MAX_MISSING, max_gap: int = MAX_GAP) -> tuple[int, int] | None:
    """The longest run of frames [a, b) that fill_gaps would accept, from a frame with a face to one with a face,
    between the stretches without a face longer than max_gap; None if there is none."""
    long = [run for run in missing_runs(missing) if run[1] - run[0] > max_gap]
    bounds = [0, *[int(x) for run in long for x in run], len(missing)]
    best = None
    for lo, hi in zip(bounds[::2], bounds[1::2]):
        found = np.flatnonzero(~missing[lo:hi])
        if len(found) < 2:
            continue
        a, b = lo + int(found[0]), lo + int(found[-1]) + 1
        if missing[a:b].sum() <= max_missing * (b - a) and (best is None or b - a > best[1] - best[0]):
            best = (a, b)
    return best


def runs_text(runs: list[tuple[int, int]], start: float) -> str:
    """'2.4-6.4 s (frames 60-159)' for each run of frames [a, b) (the first three), in seconds of the video."""
    parts = [f"{start + a / FPS:.1f}-{start + b / FPS:.1f} s (frames {a}-{b - 1})" for a, b in runs[:3]]
    return ", ".join(parts) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")


def trim_hint(part: tuple[int, int], start: float) -> str:
    """The --start/--end that keep frames [a, b): rounded inwards to 0.1 s, a frame of margin at the end."""
    lo, hi = span.inward(*part, start)
    return f"process the part with a face: --start {lo:g} --end {hi:g}"


def no_face_error(missing: np.ndarray, source: str | Path, start: float, max_missing: float, max_gap: int
                  ) -> PreprocessError:
    """The one-line error: where the face is missing (seconds of the video, frames) and which span would work."""
    n, bad = len(missing), int(missing.sum())
    long = [run for run in missing_runs(missing) if run[1] - run[0] > max_gap]
    if long and bad < n:
        what = f"no face in {runs_text(long, start)} of {source}"
    else:
        what = f"no face found in {bad} of {n} frames of {source}"
    part = face_part(missing, max_missing, max_gap)
    if part is not None:
        return PreprocessError(f"{what}; {trim_hint(part, start)}")
    if bad < n:
        return PreprocessError(f"{what}; no part of it shows a face steadily enough (--start/--end pick one)")
    return PreprocessError(what)


def fill_gaps(lms: np.ndarray, source: str | Path, max_missing: float = MAX_MISSING, max_gap: int = MAX_GAP,
              start: float = 0.0) -> np.ndarray:
    """Interpolate the NaN frames of [N,478,3] linearly over time (held constant at the ends).
    Raises PreprocessError naming `source` if too many frames, or too long a run, lack a face; frame 0 is at
    `start` seconds of `source` (the error names the spans without a face and suggests a --start/--end)."""
    missing = np.isnan(lms).any(axis=(1, 2))
    n, bad = len(lms), int(missing.sum())
    if bad == 0:
        return lms
    if bad > max_missing * n or max(b - a for a, b in missing_runs(missing)) > max_gap:
        raise no_face_error(missing, source, start, max_missing, max_gap)
    good = np.flatnonzero(~missing)
    flat = lms.reshape(n, -1)
    filled = np.stack([np.interp(np.arange(n), good, flat[good, k]) for k in range(flat.shape[1])], axis=1)
    return filled.reshape(lms.shape).astype(np.float32)


def read_rgb(path: Path) -> np.ndarray:
    """RGB uint8 [H,W,3] of an image file; PreprocessError naming it when it cannot be read."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise PreprocessError(f"{path}: cannot be read as an image (damaged file?); rerun step 3 with --force")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def lms_text(points68: np.ndarray) -> str:
    """AD-NeRF's .lms format: `x y` per line."""
    return "".join(f"{x:.2f} {y:.2f}\n" for x, y in points68)


def run(ctx: StepContext) -> None:
    if ctx.landmark_backend != "mediapipe":
        raise PreprocessError(f"landmark back-end {ctx.landmark_backend!r} is not built in this version; "
                              "use --landmark_backend mediapipe")
    paths = ctx.frame_paths()
    if not paths:
        raise PreprocessError(f"{ctx.img_dir}: no frames; run step 3 (video) first")
    raw = detect_landmarks((read_rgb(p) for p in paths), progress=True, total=len(paths))
    lms = fill_gaps(raw, ctx.video, start=span.clip_start(ctx))
    found = int((~np.isnan(raw).any(axis=(1, 2))).sum())
    for path, pts in zip(paths, to_68(lms)):
        save_text(path.with_suffix(".lms"), lms_text(pts))
    save_npy(ctx.out_dir / "landmarks.npy", lms)
    print(f"landmarks: face found in {found} of {len(paths)} frames; {len(paths) - found} interpolated")
    save_occlusion(ctx, paths, lms)


def save_occlusion(ctx: StepContext, paths: list[Path], lms: np.ndarray) -> None:
    """occlusion.npy [N,478] bool: the face points a hand covers in each frame (data_util/occlusion.py); hands.npy
    [N,2,21,2] the hands' landmarks (pixels, NaN: no hand), which step 5 labels."""
    from .occlusion import MAX_COVERED, covered_points, covered_share, detect_hands, frame_runs

    hands = detect_hands((read_rgb(p) for p in paths), total=len(paths), progress=True)
    save_npy(ctx.out_dir / "hands.npy", hands)
    covered = covered_points(lms, hands)
    save_npy(ctx.out_dir / "occlusion.npy", covered)
    over = np.flatnonzero(covered_share(covered) > MAX_COVERED)
    print(f"landmarks: a hand covers more than {MAX_COVERED:.0%} of the face in {len(over)} frames"
          + (f" ({frame_runs(over)})" if len(over) else ""))
