"""The full-frame background `bc_full.jpg`, written by step 6 when step 3 cropped the video (for render.py --full_frame).

It is the per-pixel median of up to MAX_FRAMES frames spread over the processed span, decoded at the video's
display size (square pixels, no crop, no resize): for a static camera the person's motion and passers-by fall out.
Where step 3 held a moving camera still (data_util.stabilise), the frames are taken in the reference frame's view.
Where the camera moves the median is a blur; a one-line warning says how much of the outside of the crop changes.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from .context import FPS, StepContext
from . import stabilise
from .median import fill_unseen
from .video import display_filters
from common.ffmpeg import probe, read_ffmpeg
from common.fileio import save_image

MAX_FRAMES = 48
MAX_BYTES = 300e6  # decoded frames held at once (fewer frames for a large video)
BAND_ROWS = 64  # rows whose median is taken at a time (bounds the float copy)
MOVING_LEVEL = 20  # grey levels: a pixel farther than this from the median in most frames is "moving"
WARN_MOVING = 0.2  # warn when this share of the pixels outside the crop is moving


def full_frame_path(ctx: StepContext):
    return ctx.out_dir / "bc_full.jpg"


def decode_spread(video: str, start: float, end: float, width: int, height: int, n: int) -> np.ndarray:
    """About n frames spread evenly over start..end seconds, at width x height square pixels -> uint8 [K,H,W,3]."""
    rate = max(n / max(end - start, 1.0 / FPS), 1e-3)
    span = (["-ss", f"{start:.3f}"] if start > 0 else []) + ["-t", f"{end - start:.3f}"]
    raw = read_ffmpeg([*span, "-i", str(video), "-an", "-vf", f"fps={rate:.6f},scale={width}:{height},setsar=1",
                       "-frames:v", str(n), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], str(video))
    k = len(raw) // (width * height * 3)
    return np.frombuffer(raw[:k * width * height * 3], np.uint8).reshape(k, height, width, 3)


def median_image(frames: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel median of uint8 [K,H,W,3] frames -> uint8 [H,W,3], BAND_ROWS rows at a time; with valid bool
    [K,H,W], over each pixel's valid frames only (a pixel valid in none takes the nearest one's colour)."""
    out = np.empty(frames.shape[1:], np.uint8)
    for r in range(0, frames.shape[1], BAND_ROWS):
        band = frames[:, r:r + BAND_ROWS].astype(np.float32)
        if valid is not None:
            band[~valid[:, r:r + BAND_ROWS]] = np.nan
        with warnings.catch_warnings():  # (all-NaN pixels: filled below)
            warnings.simplefilter("ignore", RuntimeWarning)
            out[r:r + BAND_ROWS] = np.clip(np.round(np.nan_to_num(np.nanmedian(band, axis=0))), 0, 255)
    return out if valid is None else fill_unseen(out, valid.any(0))


def moving_share(frames: np.ndarray, median: np.ndarray, crop: dict) -> float:
    """Share of the pixels outside the crop that differ from the median by > MOVING_LEVEL in most frames."""
    outside = np.ones(median.shape[:2], bool)
    outside[crop["y"]:crop["y"] + crop["side"], crop["x"]:crop["x"] + crop["side"]] = False
    if not outside.any():
        return 0.0
    s = max(1, int(np.sqrt(outside.size / 1e5)))  # every s-th row and column: ~1e5 pixels
    diff = np.abs(frames[:, ::s, ::s].mean(-1) - median[::s, ::s].mean(-1))  # [K,H/s,W/s]
    return float(((diff > MOVING_LEVEL).mean(0) > 0.5)[outside[::s, ::s]].mean())


def write_full_frame_background(ctx: StepContext, meta: dict) -> None:
    """bc_full.jpg from the video named in video_meta.json (`meta`); nothing when the frames were not cropped."""
    crop = meta.get("crop")
    if not crop:
        return
    width, height = meta["display_size"]
    start, end = float(meta.get("start_s") or 0.0), float(meta.get("end_s") or meta.get("duration_s") or 0.0)
    if end <= start:  # length unknown: the frames' own count says it
        end = start + meta["n_frames"] / FPS
    n = int(max(1, min(MAX_FRAMES, MAX_BYTES // (width * height * 3))))
    path = stabilise.load_path(ctx.out_dir / "camera_path.npy") if meta.get("stabilised") else None
    if path is None:
        frames, valid = decode_spread(ctx.video, start, end, width, height, n), None
    else:  # the frames step 3 held still, in the reference frame's view
        frames, valid = stabilised_spread(meta, path, n)
    if len(frames) == 0:
        print(f"warning: {ctx.video}: no full frame could be decoded; render.py --full_frame will not work",
              file=sys.stderr)
        return
    median = median_image(frames, valid)
    if valid is not None:  # the edges a stabilised frame leaves empty do not count as moving
        for frame, inside in zip(frames, valid):
            frame[~inside] = median[~inside]
    save_image(full_frame_path(ctx), median)
    moving = moving_share(frames, median, crop)
    if moving > WARN_MOVING:
        print(f"warning: {ctx.video}: {100 * moving:.0f}% of the frame outside the crop changes over the clip "
              "(moving camera?); the full-frame background (bc_full.jpg) is their median and may look blurred",
              file=sys.stderr)
    print(f"full-frame background: median of {len(frames)} frames at {width}x{height}")


def stabilised_spread(meta: dict, transforms: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """At most n of the frames step 3 stabilised (video_meta.json `meta`: its video and span), evenly spread, in the
    reference frame's view at the display size -> (uint8 [K,H,W,3], valid bool [K,H,W]: inside the source frame);
    transforms [N,3,3]: camera_path.npy."""
    width, height = meta["display_size"]
    start, end = float(meta.get("start_s") or 0.0), meta.get("end_s")
    before = (["-ss", f"{start:.3f}"] if start > 0 else []) + (["-t", f"{end - start:.3f}"] if end else [])
    info = probe(meta["source"])
    stream = stabilise.decoder(Path(meta["source"]), before, display_filters(info), width, height)
    every = stabilise.spread(len(transforms), n)
    path = stabilise.CameraPath(transforms, 0, 0.0)
    out = [stabilise.warp_frame(f, path.to_reference(i)[:2], (width, height))
           for i, f in zip(range(0, len(transforms), every), stream(stabilise.every_nth(every)))]
    return np.array([f for f, _ in out]), np.array([v for _, v in out])
