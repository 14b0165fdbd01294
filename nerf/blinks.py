"""Eye openness, the field's blink input: read for training, scheduled for rendering (render.py --blink).

Openness is common/eyes.py's: 1 = the subject's usual open eye, a closed eye near 0.2-0.4. A dataset gives it per
frame as transforms_*.json's `eye` (process_data.sh writes it); an older folder has it estimated here from
landmarks.npy or AD-NeRF's ori_imgs/<id>.lms; without any of these the model trains without the input.
At render time: `natural` (blinks at a human rate, randomised with a seed), `none` (eyes open), or a file with one
openness value per rendered frame (.npy, or text with one number per line).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from common.eyes import MEDIAPIPE_EYES, openness

if TYPE_CHECKING:
    from torch import Tensor

RATE_PER_MIN = (15.0, 20.0)  # natural blinks: a rate drawn in this range
DURATION_S = (0.1, 0.3)  # each blink lasts this long (closing about a third of it, opening the rest)
MIN_GAP_S = 1.0  # at least this long between two blinks
FPS = 25
BLINK_BELOW = 0.75  # closed_level: a run of training frames below this openness is one blink


def eye_region(root: Path) -> Tensor | None:
    """[2,4] (centre xyz, radius) of each eye of the tracked face in the head frame, from track_params.pt's face
    shape (`id`, mediapipe's 478 or 468 points); None when the folder has no such shape (e.g. AD-NeRF's 3DMM). The
    radius is 0.6 of the eye's corner-to-corner width: the lids, lashes and the skin just around them."""
    import torch

    path = root / "track_params.pt"
    if not path.is_file():
        return None
    shape = torch.load(path, map_location="cpu", weights_only=True).get("id")  # plain tensors (tracking.py)
    if not isinstance(shape, torch.Tensor) or tuple(shape.shape) not in ((468, 3), (478, 3)):
        return None
    out = []
    for idx in MEDIAPIPE_EYES:  # (outer corner, upper, upper, inner corner, lower, lower)
        pts = shape[list(idx)].float()
        out.append(torch.cat([pts.mean(0), 0.6 * (pts[0] - pts[3]).norm().view(1)]))
    return torch.stack(out)


def eye_pixels(region: Tensor, c2w: Tensor, focal: float, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    """Where the eyes are in each frame's image: region [2,4] (eye_region), c2w [F,4,4] (OpenGL, head frame) ->
    centres float [F,2,2] (x, y pixels, continuous) and radii [F,2] (pixels)."""
    import torch

    w2c = torch.linalg.inv(c2w.double())  # [F,4,4]
    pts = torch.cat([region[:, :3].double(), torch.ones(2, 1, dtype=torch.float64)], 1)  # [2,4]
    cam = torch.einsum("fij,kj->fki", w2c, pts)[..., :3]  # [F,2,3] OpenGL: looking down -z, y up
    depth = (-cam[..., 2]).clamp_min(1e-6)
    x = cx + focal * cam[..., 0] / depth
    y = cy - focal * cam[..., 1] / depth
    radius = focal * region[:, 3].double() / depth
    return torch.stack([x, y], -1).numpy(), radius.numpy()


def read_eye_openness(root: Path, frames: list[dict], img_ids: np.ndarray) -> tuple[np.ndarray | None, str]:
    """(openness float32 [F] of the split's frames, where it came from) or (None, why there is none)."""
    if frames and all("eye" in f for f in frames):
        return np.array([float(f["eye"]) for f in frames], np.float32), "transforms (eye)"
    lms_path = root / "landmarks.npy"
    if lms_path.is_file():
        lms = np.load(lms_path)
        if lms.ndim == 3 and len(lms) > int(img_ids.max()):
            return openness(lms)[img_ids], f"estimated from {lms_path.name}"
    lms_files = sorted((root / "ori_imgs").glob("*.lms"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
    if lms_files and all(p.stem.isdigit() for p in lms_files):
        by_id = {int(p.stem): k for k, p in enumerate(lms_files)}
        if all(int(i) in by_id for i in img_ids):
            lms = np.stack([np.loadtxt(p)[:, :2] for p in lms_files])
            return openness(lms)[[by_id[int(i)] for i in img_ids]], "estimated from ori_imgs/*.lms"
    return None, "no eye openness (no 'eye' in the transforms, no landmarks.npy, no ori_imgs/*.lms)"


def closed_level(train_eye: np.ndarray | None) -> float:
    """How far a natural blink closes, at most 0.5: the median over the training clip's blinks (runs of frames
    below BLINK_BELOW) of each one's deepest openness; a clip without any: its 2nd-percentile openness; 0.3 when
    there is no openness at all."""
    if train_eye is None or len(train_eye) == 0:
        return 0.3
    eye = np.asarray(train_eye, np.float64)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], (eye < BLINK_BELOW).astype(np.int8), [0]])))
    deepest = [eye[a:b].min() for a, b in zip(edges[::2], edges[1::2])]  # one per run below BLINK_BELOW
    level = np.median(deepest) if deepest else np.percentile(eye, 2)
    return float(min(level, 0.5))


def natural_blinks(n: int, closed: float, seed: int = 0, open_level: float = 1.0) -> np.ndarray:
    """[n] openness at 25 fps: open_level, with blinks down to `closed` at 15-20 a minute, 100-300 ms each."""
    rng = np.random.default_rng(seed)
    rate = rng.uniform(*RATE_PER_MIN) / 60.0  # blinks per second
    out = np.full(n, open_level, np.float64)
    mean_dur = sum(DURATION_S) / 2
    t = rng.uniform(0.3, 1.0 / rate)  # the first blink
    while t * FPS < n:
        dur = rng.uniform(*DURATION_S)
        out = np.minimum(out, blink_curve(n, t, dur, closed, open_level))
        t += dur + MIN_GAP_S + rng.exponential(1.0 / rate - MIN_GAP_S - mean_dur)  # mean period 1 / rate
    return out.astype(np.float32)


def blink_curve(n: int, start: float, dur: float, closed: float, open_level: float) -> np.ndarray:
    """[n]: one blink starting at `start` seconds: a cosine close over a third of `dur`, open over the rest,
    sampled at the frame times (frames inside a short blink get the curve's value there)."""
    t = np.arange(n) / FPS - start
    close_s = dur / 3
    depth = np.zeros(n)
    closing = (t >= 0) & (t < close_s)
    opening = (t >= close_s) & (t < dur)
    depth[closing] = 0.5 - 0.5 * np.cos(np.pi * t[closing] / close_s)
    depth[opening] = 0.5 + 0.5 * np.cos(np.pi * (t[opening] - close_s) / (dur - close_s))
    nearest = int(round((start + close_s) * FPS))  # the fully closed moment lands on its nearest frame
    if 0 <= nearest < n:
        depth[nearest] = max(depth[nearest], 1.0 if dur * FPS >= 2 else 0.8)
    return open_level - (open_level - closed) * depth


def read_blink_file(path: Path, n: int) -> np.ndarray:
    """A file of per-frame openness -> float32 [n]; ValueError naming the file if it is unreadable or not n long."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: blink file not found")
    try:
        values = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, delimiter="," if path.suffix == ".csv"
                                                                         else None, ndmin=1)
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: not a list of numbers ({' '.join(str(e).split())[:80]})") from None
    values = np.asarray(values, np.float32).reshape(-1)
    if len(values) != n:
        raise ValueError(f"{path}: {len(values)} openness values, but the audio gives {n} frames (one per 1/25 s)")
    if not np.isfinite(values).all():
        raise ValueError(f"{path}: contains NaN or inf")
    return values


def blink_schedule(mode: str, n: int, closed: float, seed: int = 0) -> np.ndarray:
    """The openness of each of n rendered frames [n]: `natural` (blinks down to `closed`), `none` or a file (see
    the module doc)."""
    if mode == "none":
        return np.ones(n, np.float32)
    if mode == "natural":
        return natural_blinks(n, closed, seed)
    return read_blink_file(Path(mode), n)
