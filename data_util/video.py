"""Step 3: frames `ori_imgs/<i>.jpg` at 25 fps, square pixels, square frames; `video_meta.json` says how.

Square pixels: the sample aspect ratio (SAR) is applied by scaling the width (`scale=iw*sar:ih`).
Square frames: a square video keeps its size up to 512 px (or is resized to --size); any other is cropped to the
largest square that fits, centred horizontally on the face (mediapipe face detection on a few sampled frames) and,
for a portrait video, placed so the face sits in the upper part with the shoulders below; then resized to --size if
given. Where the face is small in the frame (a waist-up or wider shot, square or not), `--crop head` (the default)
takes a head-and-shoulders square instead: FRAMING face sizes wide (the face about a third of the frame, as in
AD-NeRF's footage), wider where the sampled faces move further, the face centre FACE_ROW down it; `--crop largest`
keeps the largest square. With more than one face in the frame the subject is the face found in the most sampled
frames, the largest on a tie (choose_subject), and a line says so.
Without --size a square larger than MAX_FRAME_SIZE (512 px, the largest size any preset trains at) is scaled down to
it: a 1080p video's 1080 px crop would make steps 4-7 ~3x slower for pixels no run uses (NOTES, 2026-12-07 third
session). --full_frame renders still paste into the video's full display size (the crop is recorded in its pixels).
The frames are extracted into a temporary folder that is renamed into place, so a killed run never leaves a
partial ori_imgs/ that looks finished. A truncated video gives the frames that can be decoded, with a warning.
--start/--end (data_util.span) cut the video; frames past the end of the audio are dropped (data_util.common_length).
A span with two shots or more (an edited video) stops first, naming the shot to take (data_util.shots).
A camera that moves (hand-held) is held still first: the frames are warped into one frame's view and the square is
chosen there (data_util.stabilise; --stabilise off takes them as they are).
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from . import common_length, shots, span, stabilise
from .camera_motion import MOVING_SHARE
from .context import FPS, StepContext
from .faces import N_SAMPLES, find_faces
from common.constants import MAX_FRAME_SIZE
from common.errors import PreprocessError
from common.ffmpeg import call_ffmpeg, last_error, probe
from common.fileio import save_json

FACE_ROW = 0.4  # portrait videos and head crops: the face centre goes this far down the square (shoulders below)
FRAMING = 3.0  # --crop head: the square's side in face sizes (mediapipe's face box) where the frame is larger
MIN_FRAMES = 8  # fewer frames (a third of a second) is no talking-head video: a still image, a broken file
TOO_SHORT = (f"a talking head needs a video of at least {MIN_FRAMES} frames (3-5 minutes of talking is what it is "
             "made for)")
MIN_SIDE = 64  # --crop head: never a smaller square (a face of a few pixels is a detection, not a subject)
SHORT_BY = 2  # warn when this many frames fewer than the container's duration promises were decoded


# ---------------------------------------------------------------- geometry
def display_size(width: int, height: int, sar: float) -> tuple[int, int]:
    """Size in square pixels: the width scaled by the sample aspect ratio."""
    return max(1, int(round(width * sar))), height


def square_crop(width: int, height: int, faces: np.ndarray | None, crop: str = "head") -> tuple[int, int, int]:
    """The square (x, y, side) to cut from a width x height frame, given the face boxes faces [K,4] (x0, y0, x1, y1)
    found on sampled frames (None: none found): centred horizontally on the faces' median centre, with that centre
    FACE_ROW down it (the frame's centre without faces). crop "largest": the largest square; "head": where the
    faces are small, the smaller square of head_side."""
    side, head = min(width, height), None
    if faces is None or not len(faces):
        cx, cy = width / 2, height * FACE_ROW if height > width else height / 2
    else:
        centres = (faces[:, :2] + faces[:, 2:]) / 2  # [K,2]
        cx, cy = np.median(centres, 0)
        head = head_side(faces, centres - (cx, cy)) if crop == "head" else None
    if head is not None and head < side:  # even numbers: ffmpeg crops 4:2:0 video at even offsets and sizes
        side = 2 * int(round(head / 2))
        return (2 * int(np.clip(cx - side / 2, 0, width - side) // 2),
                2 * int(np.clip(cy - FACE_ROW * side, 0, height - side) // 2), side)
    return (int(round(np.clip(cx - side / 2, 0, width - side))),
            int(round(np.clip(cy - FACE_ROW * side, 0, height - side))), side)


def head_side(faces: np.ndarray, offsets: np.ndarray) -> float:
    """A head-and-shoulders square's side for face boxes [K,4] whose centres lie offsets [K,2] (x, y) from the
    square's anchor (its horizontal middle, FACE_ROW down it): FRAMING face sizes, widened so that every face keeps
    half a face of room to its sides; at least MIN_SIDE."""
    size = float(np.max(faces[:, 2:] - faces[:, :2]))
    dx, dy = offsets[:, 0], offsets[:, 1]
    return max(FRAMING * size, MIN_SIDE, 2 * (np.abs(dx).max() + size),
               (size - dy.min()) / FACE_ROW, (size + dy.max()) / (1 - FACE_ROW))


def face_box(faces: np.ndarray) -> tuple[float, float, float, float]:
    """One box for the face boxes [K,4] of the sampled frames: their median centre, their largest width and height."""
    c = np.median((faces[:, :2] + faces[:, 2:]) / 2, 0)
    half = (faces[:, 2:] - faces[:, :2]).max(0) / 2
    return tuple(float(v) for v in (*(c - half), *(c + half)))


def check_input(video: Path, info: dict, start: float, end: float | None) -> None:
    """PreprocessError before any step runs (nothing of an earlier dataset replaced) for an image, or for a video
    (or its --start/--end span) shorter than MIN_FRAMES frames; info: common.ffmpeg.probe's."""
    if not info["has_video"] or not info["width"]:
        raise PreprocessError(f"{video}: no video stream (not a video file)")
    if info["format"].endswith("_pipe") or info["format"] == "image2":
        raise PreprocessError(f"{video}: a still image; {TOO_SHORT}")
    if info["duration"] is not None and end is not None and (end - start) * FPS < MIN_FRAMES:
        n = round((end - start) * FPS)
        raise PreprocessError(f"{video}: {end - start:.2f} s{' in --start/--end' if start else ''} "
                              f"({n} frame{'s' if n != 1 else ''} at {FPS} fps); {TOO_SHORT}")


# ---------------------------------------------------------------- extraction
def display_filters(info: dict) -> str:
    """ffmpeg -vf chain: 25 fps, square pixels (the frames at the display size, uncropped)."""
    width, height = display_size(info["width"], info["height"], info["sar"])
    chain = [f"fps={FPS}"]
    if (width, height) != (info["width"], info["height"]):
        chain.append(f"scale={width}:{height}:flags=lanczos")
    chain.append("setsar=1")
    return ",".join(chain)


def frame_filters(info: dict, crop: tuple[int, int, int] | None, out_size: int) -> str:
    """ffmpeg -vf chain: 25 fps, square pixels, crop, resize."""
    width, height = display_size(info["width"], info["height"], info["sar"])
    chain = [display_filters(info)]
    side = min(width, height)
    if crop is not None:
        x, y, side = crop
        chain.append(f"crop={side}:{side}:{x}:{y}")
    if out_size != side:
        chain.append(f"scale={out_size}:{out_size}:flags=lanczos")
    return ",".join(chain)


def extract_frames(video: Path, vf: str, folder: Path, before: list[str]) -> tuple[int, str]:
    """Decode `video` (input options `before`: the span) through the filter chain into folder/<i>.jpg (i from 0).
    Returns (frames written, ffmpeg's complaint or ''). A damaged file may fail part-way; the frames decoded before
    that are kept."""
    folder.mkdir(parents=True)
    proc = call_ffmpeg([*before, "-i", str(video), "-an", "-vf", vf, "-qmin", "1", "-q:v", "2", "-start_number", "0",
                        str(folder / "%d.jpg")])
    n = len(list(folder.glob("*.jpg")))
    complaint = last_error(proc.stderr) if (proc.returncode != 0 or proc.stderr.strip()) else ""
    return n, complaint


def drop_frames(folder: Path, keep: int) -> None:
    """Delete folder/<i>.jpg for i >= keep."""
    for p in folder.glob("*.jpg"):
        if int(p.stem) >= keep:
            p.unlink()


def replace_folder(tmp: Path, final: Path) -> None:
    """Move the finished folder `tmp` to `final`, replacing an old one (moved aside first, then deleted)."""
    old = final.with_name(f".old-{final.name}-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def remove_leftovers(out_dir: Path, name: str) -> None:
    """Delete temporary folders that a killed run left behind."""
    for pattern in (f".tmp-{name}-*", f".old-{name}-*"):
        for p in out_dir.glob(pattern):
            shutil.rmtree(p, ignore_errors=True)


def check_count(video: Path, n: int, complaint: str, expected: int | None, has_audio: bool) -> None:
    """PreprocessError if nothing was decoded; a one-line warning if ffmpeg complained, or if fewer frames than the
    span promises came out of a file without audio (with audio, the container's length may be the audio's)."""
    if n == 0:
        raise PreprocessError(f"{video}: no frame could be decoded ({complaint or 'empty video'})")
    if complaint or (expected and n < expected - SHORT_BY and not has_audio):
        of = f" of the {expected} its length promises" if expected and n < expected else ""
        print(f"warning: {video}: decoded {n} frames{of} (damaged or truncated file?): {complaint or 'ended early'}",
              file=sys.stderr)


def write_frames(ctx: StepContext, info: dict, extract: Callable[[Path], tuple[int, str]], expected: int | None
                 ) -> tuple[int, int]:
    """Extract the frames into a temporary folder (extract(folder) -> (frames written, ffmpeg's complaint or '')),
    keep the common length with the audio, move it to ori_imgs. Returns (frames decoded, frames kept)."""
    video = Path(ctx.video)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers(ctx.out_dir, ctx.img_dir.name)
    tmp = ctx.out_dir / f".tmp-{ctx.img_dir.name}-{os.getpid()}"
    try:
        decoded, complaint = extract(tmp)
        check_count(video, decoded, complaint, expected, info["has_audio"])
        kept = common_length.frames_to_keep(ctx, decoded)
        if kept < MIN_FRAMES:  # before ori_imgs/ is replaced: a dataset made before keeps its frames
            why = (f"the audio covers only {kept} of its {decoded} frames" if kept < decoded else
                   f"{decoded} frame{'s' if decoded != 1 else ''} decoded" + (" (a damaged file?)" if complaint else ""))
            raise PreprocessError(f"{video}: {why} ({kept / FPS:.2f} s at {FPS} fps); {TOO_SHORT}")
        drop_frames(tmp, kept)
        replace_folder(tmp, ctx.img_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return decoded, kept


def crop_and_path(ctx: StepContext, info: dict, start: float, end: float | None, before: list[str],
                  expected: int | None, hold_still: bool = True
                  ) -> tuple[np.ndarray | None, tuple[int, int, int], stabilise.CameraPath | None]:
    """(the subject's face boxes on sampled frames, the square to cut, the camera's path) in the view the frames
    are written in: a camera that moves more than MOVING_SHARE of that square is held still (data_util.stabilise,
    unless --stabilise off or not hold_still), the faces are found again in the still view, and the square is kept
    inside what the frames see there (stabilise.inside_seen)."""
    video = Path(ctx.video)
    width, height = display_size(info["width"], info["height"], info["sar"])
    faces = None if width == height and ctx.crop == "largest" else find_faces(video, start, end, width, height)
    if faces is None and width != height:
        print(f"warning: {video}: no face found in {N_SAMPLES} sampled frames; cropping the centre square",
              file=sys.stderr)
    crop = square_crop(width, height, faces, ctx.crop)
    path = None if ctx.stabilise == "off" or not hold_still else stabilise.camera_path(
        video, before, display_filters(info), width, height, MOVING_SHARE * crop[2], expected)
    if path is not None and faces is not None:
        faces = find_faces(video, start, end, width, height,
                           lambda frame, t: stabilise.full_view(path, frame, int(round(t * FPS))))
        crop = square_crop(width, height, faces, ctx.crop)
    if path is not None:
        inside = stabilise.inside_seen(path, crop, width, height, faces)
        if inside != crop:
            print(f"  the square: {inside[2]} px at ({inside[0]}, {inside[1]}) instead of {crop[2]} at ({crop[0]}, "
                  f"{crop[1]}), inside what {stabilise.SEEN_SHARE:.0%} of the frames see (no edge to fill)")
        crop = inside
    return faces, crop, path


def run(ctx: StepContext) -> None:
    """Write ori_imgs/<i>.jpg and video_meta.json."""
    video = Path(ctx.video)
    if ctx.size is not None and ctx.size < 16:
        raise PreprocessError(f"--size {ctx.size}: the frame size must be at least 16 pixels")
    info = probe(video)
    if not info["has_video"] or not info["width"]:
        raise PreprocessError(f"{video}: no video stream (not a video file)")
    start, end = span.resolve(ctx, info["duration"])
    width, height = display_size(info["width"], info["height"], info["sar"])
    before, expected = span.input_args(ctx, start, end), int(round((end - start) * FPS)) if end else None
    found = shots.find(video, before, display_filters(info), width, height)
    if found.several and ctx.cuts == "stop":
        raise PreprocessError(shots.message(found, video, start, width, height))
    if found.several:
        parts = ", ".join(shots.seconds(s, start) for s in found.shots[:6])
        print(f"warning: {video}: {len(found.shots)} shots ({parts} s) processed as one (--cuts keep); the "
              "camera is not held still", file=sys.stderr)
    elif found.transitions:
        print(shots.edge_warning(found, video, start), file=sys.stderr)
    faces, crop, path = crop_and_path(ctx, info, start, end, before, expected, hold_still=not found.several)
    if width == height and crop == (0, 0, width):  # a square video, kept whole
        crop = None
    face = None if faces is None else face_box(faces)
    side = crop[2] if crop else min(width, height)
    out_size = ctx.size or min(side, MAX_FRAME_SIZE)
    if path is None:
        vf = frame_filters(info, crop, out_size)
        decoded, n = write_frames(ctx, info, lambda folder: extract_frames(video, vf, folder, before), expected)
    else:
        vf = f"{display_filters(info)} (stabilised: camera_path.npy)"
        stream = stabilise.decoder(video, before, display_filters(info), width, height)
        decoded, n = write_frames(ctx, info, lambda folder: stabilise.write_stabilised(
            path, stream, crop or (0, 0, side), out_size, folder, expected), expected)
    stabilise.save_path(ctx.out_dir / "camera_path.npy", path, n)
    save_json(ctx.out_dir / "video_meta.json", {
        "source": str(video), "source_fps": info["fps"], "source_size": [info["width"], info["height"]],
        "sar": info["sar"], "display_size": [width, height], "duration_s": info["duration"],
        "start_s": start, "end_s": end,
        "face_box": [round(v, 1) for v in face] if face else None,
        "crop": {"x": crop[0], "y": crop[1], "side": crop[2]} if crop else None,
        "size": out_size, "fps": FPS, "n_frames": n, "decoded_frames": decoded, "filters": vf,
        "shots": [[a, min(b, n)] for a, b in found.shots if a < n] if found.several else None,
        "stabilised": {"reference_frame": path.reference, "shift_px": round(path.shift_px, 1)} if path else None,
    })
    common_length.fit_saved_features(ctx, n)
    where = f" of {span.text(start, end)}" if ctx.start is not None or ctx.end is not None else ""
    print(f"  ori_imgs: {n} frames {out_size}x{out_size}{where}"
          + (f", crop {crop} of {width}x{height}" if crop else "")
          + (f" (a head-and-shoulders square: {FRAMING:g} face sizes, or the room the face moves in; --crop largest "
             f"keeps {min(width, height)} px)"
             if faces is not None and square_crop(width, height, faces, ctx.crop)[2] < min(width, height) else "")
          + (f", scaled down from {side} px (--size {side} keeps its full resolution)"
             if out_size < side and not ctx.size else ""))
