"""Step 3's virtual tripod: the frames of a hand-held or drifting camera brought into one frame's view.

The model assumes a still camera (one background image, a torso that moves only with the person); a camera held in
the hand breaks that, and the renders blur where it moved. When the background moves (data_util.camera_motion's
chain of background similarities, at MOTION_WIDTH with mediapipe's selfie segmentation keeping the person out) by
more than camera_motion.MOVING_SHARE of the square step 3 cuts from the first frame's place (step 6's measure, which
warns above it), each frame is warped by the inverse of its camera's motion into the view of the reference frame
(the one nearest the middle of the camera's path, so no frame is warped further than half the path); a frame whose
background matched no other takes the motion interpolated between its matched neighbours. The edges a moved frame
leaves empty take what other frames show there (the median over FILL_FRAMES stabilised frames). A view that moves by
more than MAX_SHIFT of the frame (a pan after someone walking), or whose background matches in fewer than
MIN_MATCHED of the frames, is not held still: step 6 warns about it as before.
`camera_path.npy` [N,3,3] (display pixels, where the reference's background lies in each frame) is kept.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np
from tqdm import tqdm

from .median import background_mask, fill_unseen, median_background
from .camera_motion import MOVING_SHARE, MotionChain, displacement
from .context import FPS
from .person import person_probability
from common.errors import PreprocessError
from common.ffmpeg import FrameStream
from common.fileio import read_json, save_npy
from common.quiet import quiet_native_stderr

MOTION_WIDTH = 480  # the motion pass decodes at this width (pixels): corners and their flow at this size
MAX_SHIFT = 0.25  # a camera whose view moves further than this share of the frame is not held still
MIN_MATCHED = 0.5  # nor one whose background matches in fewer of the frames than this (a plain wall, a crowd)
FILL_FRAMES = 48  # stabilised frames whose median fills the edges a moved frame leaves empty
PERSON_MARGIN = 0.03  # the person mask grows by this share of the width before corners are taken outside it
JPEG_QUALITY = 95  # about ffmpeg's -q:v 2, what the unstabilised frames are written with
PROBE_EVERY = 10  # a still camera is told by every 10th frame (2.5 a second) before every frame is measured
BAR_FRAMES = 250  # the passes show a progress bar from this many frames on (10 s; a short clip takes seconds)
SEEN_SHARE = 0.98  # the square is kept inside what this share of the frames sees, in the reference's view,
MIN_KEEP = 0.85  # shrunk to no less than this share of its side for that; else it keeps its size, its edges filled
SEEN_CELLS = 160  # the seen region is measured on a grid this many cells wide
EDGE_PX = 1.5  # a cell is seen when it lies this far inside a frame (warp_frame's valid pixels: off its edge)


@dataclass
class CameraPath:
    transforms: np.ndarray  # [N,3,3] display pixels: where the reference frame's background lies in frame k
    reference: int  # the frame the others are brought to
    shift_px: float  # the largest displacement of a frame's corners from the reference's view

    def to_reference(self, k: int) -> np.ndarray:
        """[3,3]: frame k's pixels -> the reference frame's view (k clipped to the path)."""
        return np.linalg.inv(self.transforms[int(np.clip(k, 0, len(self.transforms) - 1))])


def motion_size(width: int, height: int) -> tuple[int, int]:
    """The motion pass's frame size: the display size scaled to at most MOTION_WIDTH wide, even numbers."""
    scale = min(1.0, MOTION_WIDTH / width)
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


def scale_transform(t: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """A transform [3,3] between frames measured at one size, expressed at a size sx, sy times larger."""
    d = np.diag([sx, sy, 1.0])
    return d @ t @ np.linalg.inv(d)


def measure_motion(frames: Iterable[np.ndarray], total: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 frames [H,W,3] of a video in order -> (transforms [N,3,3]: where the first frame's background lies
    in each (MotionChain; a frame matched to none holds the one before's), matched [N] bool)."""
    a, b = itertools.tee(frames)
    margin = max(1, int(round(PERSON_MARGIN * MOTION_WIDTH)))
    chain, out, matched = MotionChain(), [], []
    with quiet_native_stderr() as stderr, contextlib.closing(person_probability(b)) as people:
        for frame, person in tqdm(zip(a, people), total=total, desc="camera motion", unit="frame", file=stderr,
                                  disable=(total or 0) < BAR_FRAMES):  # (closing: its own quiet ends inside ours)
            mask = background_mask((person >= 0.5).astype(np.uint8), margin)
            out.append(chain.add(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), mask)[0])
            matched.append(chain.matched)
    return (np.array(out), np.array(matched)) if out else (np.zeros((0, 3, 3)), np.zeros(0, bool))


def interpolate_unmatched(transforms: np.ndarray, matched: np.ndarray) -> np.ndarray:
    """Each unmatched frame's transform [3,3] linearly between its matched neighbours' (held beyond the first and
    the last matched frame): a blurred frame in a sway moves with the sway, not with the frame before it."""
    if matched.all() or not matched.any():
        return transforms
    k, known = np.arange(len(transforms)), np.flatnonzero(matched)
    out = transforms.copy()
    for i in range(2):
        for j in range(3):
            out[:, i, j] = np.interp(k, known, transforms[known, i, j])
    return out


def middle_frame(transforms: np.ndarray, width: int, height: int) -> int:
    """The frame whose view's centre lies nearest the middle of the range the centres cover."""
    centre = np.array([width / 2, height / 2, 1.0])
    at = (np.linalg.inv(transforms) @ centre)[:, :2]  # each frame's centre in the first frame's view
    mid = (at.min(0) + at.max(0)) / 2
    return int(np.argmin(np.linalg.norm(at - mid, axis=1)))


def largest_shift(transforms: np.ndarray, width: int, height: int) -> float:
    """The largest displacement (pixels) of a width x height frame's corners under transforms [N,3,3]."""
    return max(displacement(t[:2], height, width) for t in transforms)


def camera_path(video: Path, before: list[str], display_vf: str, width: int, height: int, limit_px: float,
                total: int | None = None) -> CameraPath | None:
    """The camera's path over the span (input options `before`, frames through `display_vf` as step 3 takes them),
    or None with a line saying why when the frames are left as they are: a camera whose view stays within limit_px
    of the first frame's (nothing said; judged first on every PROBE_EVERY-th frame, which costs little more than
    decoding), one that moves further than MAX_SHIFT of the frame, or a background that rarely matches."""
    w, h = motion_size(width, height)
    sx, sy = width / w, height / h
    frames = decoder(video, before, f"{display_vf},scale={w}:{h}", w, h)
    probe, matched = measure_motion(frames(every_nth(PROBE_EVERY)))
    if len(probe) < 2 or (matched.mean() >= MIN_MATCHED and largest_shift(probe, w, h) * sx <= limit_px):
        return None  # (a probe whose frames mostly do not match, a fast pan or a plain wall, does not decide)
    small, matched = measure_motion(frames(""), total)
    small = np.array([scale_transform(t, sx, sy) for t in interpolate_unmatched(small, matched)])
    if largest_shift(small, width, height) <= limit_px:
        return None
    size, seen = max(width, height), f"{matched.mean():.0%} of the frames"
    ref = middle_frame(small, width, height)
    transforms = small @ np.linalg.inv(small[ref])
    shift = largest_shift(transforms, width, height)
    if shift > MAX_SHIFT * size or matched.mean() < MIN_MATCHED:
        why = (f"its view moves by up to {shift:.0f} px ({shift / size:.0%} of the frame): too far to hold still (a "
               "pan?)" if shift > MAX_SHIFT * size else f"its background matched in only {seen}")
        print(f"  the camera moves, but {why}; frames left as they are", file=sys.stderr)
        return None
    print(f"  the camera moves (its view by up to {shift:.0f} px, {shift / size:.0%} of the frame; the background "
          f"matched in {seen}): frames stabilised to the view of frame {ref} ({ref / FPS:.1f} s into the span)")
    return CameraPath(transforms, ref, shift)


def seen_region(path: CameraPath, width: int, height: int) -> tuple[np.ndarray, float]:
    """(bool [h, w]: the cells of a grid over the reference's view that SEEN_SHARE of the frames see whole, with
    EDGE_PX to spare (warp_frame's valid pixels); the cells' side in display pixels). The grid is SEEN_CELLS cells
    wide; its last row and column may reach past the frame (their corners are taken at its edge)."""
    cell = max(1.0, width / SEEN_CELLS)
    w, h = int(np.ceil(width / cell - 1e-9)), int(np.ceil(height / cell - 1e-9))
    rim = EDGE_PX + 0.5  # (a pixel on the frame's edge is seen while its source lies within half a pixel of it)
    gx, gy = np.meshgrid(np.clip(np.arange(w + 1) * cell, rim, width - rim),  # [h+1, w+1] the cells' corners
                         np.clip(np.arange(h + 1) * cell, rim, height - rim))
    corners = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]], float).T  # [3,4]
    count = np.zeros((h, w), np.int32)
    for k in range(len(path.transforms)):
        quad = (path.to_reference(k) @ corners)[:2].T  # [4,2] frame k's corners in the reference's view
        inside, mid = np.ones(gx.shape, bool), quad.mean(0)
        for a, b in zip(quad, np.roll(quad, -1, axis=0)):
            edge = b - a
            towards = np.sign(edge[0] * (mid[1] - a[1]) - edge[1] * (mid[0] - a[0]))  # the inside's sign
            inside &= towards * (edge[0] * (gy - a[1]) - edge[1] * (gx - a[0])) / np.hypot(*edge) >= EDGE_PX
        count += inside[:-1, :-1] & inside[1:, :-1] & inside[:-1, 1:] & inside[1:, 1:]
    return count >= SEEN_SHARE * len(path.transforms), cell


def inside_seen(path: CameraPath, crop: tuple[int, int, int], width: int, height: int,
                faces: np.ndarray | None = None) -> tuple[int, int, int]:
    """The square (x, y, side) nearest `crop`, as large as it, else down to MIN_KEEP of it in steps of 2 px, that
    lies in cells SEEN_SHARE of the frames see in the reference's view and holds the face boxes faces [K,4] (when
    given; within the frame): its edges need no filling. `crop` itself when there is none (its empty edges are
    filled, write_stabilised)."""
    seen, cell = seen_region(path, width, height)
    outside = np.pad(np.cumsum(np.cumsum(~seen, 0), 1), ((1, 0), (1, 0)))  # integral image [h+1, w+1]
    x0, y0, side = crop
    box = None if faces is None or not len(faces) else np.clip(  # (a close-up's box may run past the frame)
        (*faces[:, :2].min(0), *faces[:, 2:].max(0)), 0, (width, height, width, height))
    for size in range(side, int(np.ceil(MIN_KEEP * side)) - 1, -2):
        y, x = (a.ravel() for a in np.mgrid[0:height - size + 1, 0:width - size + 1])
        r0, c0 = np.floor(y / cell).astype(int), np.floor(x / cell).astype(int)  # the cells the square touches
        r1, c1 = np.ceil((y + size) / cell - 1e-9).astype(int), np.ceil((x + size) / cell - 1e-9).astype(int)
        fits = outside[r1, c1] - outside[r0, c1] - outside[r1, c0] + outside[r0, c0] == 0
        if box is not None:
            fits &= (x <= box[0]) & (y <= box[1]) & (x + size >= box[2]) & (y + size >= box[3])
        if fits.any():
            x, y = x[fits], y[fits]
            best = int(np.argmin((2 * x + size - 2 * x0 - side) ** 2 + (2 * y + size - 2 * y0 - side) ** 2))
            return int(x[best]), int(y[best]), size
    return crop


def crop_warp(path: CameraPath, k: int, crop: tuple[int, int, int]) -> np.ndarray:
    """[2,3]: frame k's display pixels -> the stabilised crop's pixels (crop (x, y, side) in the reference's view)."""
    x, y, _ = crop
    return (np.array([[1.0, 0, -x], [0, 1.0, -y], [0, 0, 1]]) @ path.to_reference(k))[:2]


def warp_frame(frame: np.ndarray, m: np.ndarray, size: tuple[int, int], out: tuple[int, int] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """frame uint8 [H,W,3] warped by m [2,3] into an image of size (w, h), resized to out (w, h) when given ->
    (image uint8 [h,w,3], valid bool [h,w]: pixels inside the source frame)."""
    image = cv2.warpAffine(frame, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    if out is not None and out != size:
        image = cv2.resize(image, out, interpolation=cv2.INTER_AREA)
    return image, valid_pixels(frame.shape[:2], m, size, out)


def valid_pixels(shape: tuple[int, int], m: np.ndarray, size: tuple[int, int], out: tuple[int, int] | None = None
                 ) -> np.ndarray:
    """bool [h,w]: the pixels of a frame of `shape` (h, w) warped by m [2,3] into size (w, h), resized to out, that
    lie inside the frame (a pixel off its blended edge)."""
    inside = cv2.warpAffine(np.full(shape, 255, np.uint8), m, size, flags=cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if out is not None and out != size:
        inside = cv2.resize(inside, out, interpolation=cv2.INTER_AREA)
    return cv2.erode((inside == 255).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0


def seen_masks(out_dir: Path, n: int) -> Iterator[np.ndarray | None]:
    """Per frame of step 3's output in out_dir: bool [S,S], the pixels its source frame saw (the rest was filled
    from other frames), or None where nothing was filled (frames not stabilised: no camera_path.npy)."""
    transforms = load_path(out_dir / "camera_path.npy")
    if transforms is None:
        yield from itertools.repeat(None, n)
        return
    meta = read_json(out_dir / "video_meta.json")  # (a broken file: one line naming it)
    width, height = meta["display_size"]
    crop = (meta["crop"]["x"], meta["crop"]["y"], meta["crop"]["side"]) if meta.get("crop") else \
        (0, 0, min(width, height))
    path, out = CameraPath(transforms.astype(np.float64), 0, 0.0), (meta["size"], meta["size"])
    for k in range(n):
        yield valid_pixels((height, width), crop_warp(path, k, crop), crop[2:] * 2, out)


def spread(n: int, most: int) -> int:
    """Every how many of n frames to take so that at most `most` are taken."""
    return max(1, math.ceil(n / most))


def fill_image(path: CameraPath, frames: Iterable[np.ndarray], crop: tuple[int, int, int], out_size: int,
               every: int) -> np.ndarray:
    """What the stabilised crop's empty edges show (uint8 [S,S,3]): the median over frames 0, every, 2 every, ...
    (given in that order) of their pixels inside the source frame, the rest from the nearest such pixel. The person is
    not left out: an edge cut through the shoulders takes their usual colour, not the wall's."""
    side, images, masks = crop[2], [], []
    for i, frame in enumerate(frames):
        if i * every >= len(path.transforms):
            break
        image, valid = warp_frame(frame, crop_warp(path, i * every, crop), (side, side), (out_size, out_size))
        images.append(image)
        masks.append(valid)
    if not images:
        return np.zeros((out_size, out_size, 3), np.uint8)
    image, seen = median_background(images, masks, min_seen=1.0 / len(images))
    return fill_unseen(image, seen) if seen.any() else image


def write_stabilised(path: CameraPath, stream: Callable[[str], FrameStream], crop: tuple[int, int, int],
                     out_size: int, folder: Path, total: int | None = None) -> tuple[int, str]:
    """Write the stabilised crop of each frame to folder/<i>.jpg; stream(extra_vf) decodes the span at display size
    with extra_vf appended to the filters. Returns (frames written, ffmpeg's complaint or '')."""
    every = spread(len(path.transforms), FILL_FRAMES)
    fill = fill_image(path, stream(every_nth(every)), crop, out_size, every)
    folder.mkdir(parents=True)
    frames, n = stream(""), 0
    for k, frame in enumerate(tqdm(frames, total=total, desc="stabilise", unit="frame",
                                   disable=(total or 0) < BAR_FRAMES)):
        image, valid = warp_frame(frame, crop_warp(path, k, crop), (crop[2], crop[2]), (out_size, out_size))
        image[~valid] = fill[~valid]
        if not cv2.imwrite(str(folder / f"{k}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise PreprocessError(f"{folder / f'{k}.jpg'}: could not be written (disk full?)")
        n += 1
    return n, frames.complaint


def every_nth(every: int) -> str:
    """ffmpeg filter keeping frames 0, every, 2 every, ... of what reaches it."""
    return f"select='not(mod(n\\,{every}))'"


def full_view(path: CameraPath, frame: np.ndarray, k: int) -> np.ndarray:
    """Frame k (uint8 [H,W,3] at display size) in the reference's view, its empty edges repeating the border (what
    face detection looks at)."""
    h, w = frame.shape[:2]
    return cv2.warpAffine(frame, path.to_reference(k)[:2], (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def decoder(video: Path, before: list[str], display_vf: str, width: int, height: int
            ) -> Callable[[str], FrameStream]:
    """stream(extra_vf): the span's frames at display size, extra_vf (a filter, or '') after display_vf."""
    def stream(extra_vf: str) -> FrameStream:
        vf = f"{display_vf},{extra_vf}" if extra_vf else display_vf
        return FrameStream([*before, "-i", str(video), "-an", "-vf", vf], width, height)
    return stream


def save_path(file: Path, path: CameraPath | None, n: int) -> None:
    """camera_path.npy: the transforms of the n frames kept; removed when the frames were not stabilised."""
    if path is None:
        file.unlink(missing_ok=True)
    else:
        save_npy(file, path.transforms[:n].astype(np.float32))


def load_path(file: Path) -> np.ndarray | None:
    """[N,3,3] from camera_path.npy, or None when the frames were not stabilised."""
    return np.load(file) if file.is_file() else None
