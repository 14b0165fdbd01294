"""Small generated media for the preprocessing tests (ffmpeg lavfi sources through common.ffmpeg)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.ffmpeg import run_ffmpeg

ASTRO_FACE = (225.0, 130.0)  # centre of the face in skimage.data.astronaut() (512x512), pixels (x, y)


def make_video(path: Path, size: str = "96x64", seconds: float = 1.0, fps: int = 30, audio: bool = True,
               sar: str | None = None, rate: int = 44100, channels: int = 2, faststart: bool = False,
               audio_seconds: float | None = None, audio_delay: float = 0.0) -> Path:
    """testsrc video (+ 440 Hz sine audio, as long as the video or `audio_seconds`, starting `audio_delay` seconds
    after the picture) as H.264/AAC mp4."""
    args = ["-f", "lavfi", "-i", f"testsrc=size={size}:rate={fps}:duration={seconds}"]
    if audio:
        args += ["-itsoffset", str(audio_delay)] if audio_delay else []
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={rate}:duration={audio_seconds or seconds}",
                 "-ac", str(channels), "-c:a", "aac"]
    if sar:
        args += ["-vf", f"setsar={sar}"]
    if faststart:
        args += ["-movflags", "+faststart"]
    shortest = [] if audio_seconds or audio_delay else ["-shortest"]
    run_ffmpeg([*args, "-c:v", "libx264", "-pix_fmt", "yuv420p", *shortest, str(path)], what=str(path))
    return path


def make_face_then_blank(path: Path, face_s: float, blank_s: float, size: int = 128, dissolve_s: float = 0.0
                         ) -> Path:
    """A square mp4 with sine audio: the astronaut's face for face_s seconds, then a grey picture for blank_s (cut
    to, or dissolved into over the last dissolve_s seconds of the face)."""
    import cv2
    import imageio.v3 as iio
    import skimage.data

    face, blank = path.with_name(f"{path.stem}-face.png"), path.with_name(f"{path.stem}-blank.png")
    iio.imwrite(face, cv2.resize(skimage.data.astronaut(), (size, size), interpolation=cv2.INTER_AREA))
    iio.imwrite(blank, np.full((size, size, 3), 120, np.uint8))
    total = face_s + blank_s
    join = (f"[0:v][1:v]xfade=transition=fade:duration={dissolve_s}:offset={face_s - dissolve_s}[v]" if dissolve_s
            else "[0:v][1:v]concat=n=2:v=1:a=0[v]")
    run_ffmpeg(["-loop", "1", "-framerate", "25", "-t", str(face_s), "-i", str(face),
                "-loop", "1", "-framerate", "25", "-t", str(blank_s + dissolve_s), "-i", str(blank),
                "-f", "lavfi", "-i", f"sine=frequency=300:sample_rate=16000:duration={total}",
                "-filter_complex", join, "-map", "[v]", "-map", "2:a",
                "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)], what=str(path))
    return path


def make_tone(path: Path, seconds: float = 1.0, rate: int = 44100, channels: int = 2, freq: float = 440.0) -> Path:
    """A sine tone in any container ffmpeg picks from the suffix (.wav, .mp3, .ogg, .m4a)."""
    run_ffmpeg(["-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate={rate}:duration={seconds}",
                "-ac", str(channels), str(path)], what=str(path))
    return path


def astronaut_scene(display_w: int = 427, height: int = 180, face_x: int = 227) -> tuple[np.ndarray, tuple]:
    """A wide frame in square pixels: textured background with the astronaut photo (height x height) pasted at
    column face_x. Returns (frame uint8 [height, display_w, 3], face centre (x, y) in the frame)."""
    import cv2
    import skimage.data

    yy, xx = np.mgrid[0:height, 0:display_w]
    bg = np.stack([(xx * 255 // display_w), (yy * 255 // height), ((xx // 16 + yy // 16) % 2) * 80 + 60], -1)
    frame = bg.astype(np.uint8)
    photo = cv2.resize(skimage.data.astronaut(), (height, height), interpolation=cv2.INTER_AREA)
    frame[:, face_x:face_x + height] = photo
    scale = height / 512
    return frame, (face_x + ASTRO_FACE[0] * scale, ASTRO_FACE[1] * scale)


def make_anamorphic_video(path: Path, scene: np.ndarray, stored_w: int, sar: str, seconds: float = 1.0) -> Path:
    """Encode `scene` (square pixels) squeezed to stored_w columns, flagged with SAR `sar`, as a still mp4."""
    import cv2
    import imageio.v3 as iio

    stored = cv2.resize(scene, (stored_w, scene.shape[0]), interpolation=cv2.INTER_AREA)
    png = path.with_suffix(".png")
    iio.imwrite(png, stored)
    run_ffmpeg(["-loop", "1", "-framerate", "25", "-i", str(png), "-t", str(seconds), "-vf", f"setsar={sar}",
                "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "12", str(path)], what=str(path))
    return path
