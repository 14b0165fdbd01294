"""The ffmpeg binary (from imageio-ffmpeg, or the system's) and checked calls to it."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import PreprocessError


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: imageio-ffmpeg's bundled one, else a system ffmpeg."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # pragma: no cover - only without imageio-ffmpeg
        exe = shutil.which("ffmpeg")
        if exe is None:
            raise PreprocessError("ffmpeg not found: install imageio-ffmpeg or a system ffmpeg")
        return exe


def call_ffmpeg(args: list[str]) -> subprocess.CompletedProcess:
    """Run `ffmpeg -y -loglevel error <args>` and return the finished process (stdout bytes, stderr bytes).

    The caller checks `returncode` (run_ffmpeg and read_ffmpeg do)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error", *args]
    return subprocess.run(cmd, capture_output=True)


def last_error(stderr: bytes) -> str:
    """The last line ffmpeg printed on stderr (its most specific complaint)."""
    lines = [line for line in stderr.decode("utf-8", "replace").strip().splitlines()
             if not re.search(r"Last message repeated \d+ times", line)]  # what it repeats is the complaint
    return re.sub(r"^(\[[^\]]*@ 0x[0-9a-f]+\] ?)+", "", lines[-1].strip()) if lines else "unknown error"


def run_ffmpeg(args: list[str], what: str) -> str:
    """Run `ffmpeg -y -loglevel error <args>`; raise PreprocessError naming `what` if it fails. Returns stderr."""
    proc = call_ffmpeg(args)
    if proc.returncode != 0:
        raise PreprocessError(f"{what}: ffmpeg failed: {last_error(proc.stderr)}")
    return proc.stderr.decode("utf-8", "replace")


def read_ffmpeg(args: list[str], what: str) -> bytes:
    """Run ffmpeg with output `-` (stdout) and return those bytes; PreprocessError naming `what` if it fails."""
    proc = call_ffmpeg(args)
    if proc.returncode != 0:
        raise PreprocessError(f"{what}: ffmpeg failed: {last_error(proc.stderr)}")
    return proc.stdout


class FrameStream:
    """Frames of `ffmpeg <args> -f rawvideo -pix_fmt rgb24 -` (args: the input and a filter chain that outputs
    width x height frames), iterated one at a time as uint8 [height, width, 3] RGB without holding the video in
    memory. Iteration stops at the last whole frame; after it, `complaint` is ffmpeg's last error line ('' if it
    said nothing: a damaged file ends the stream early, and the caller counts the frames)."""

    def __init__(self, args: list[str], width: int, height: int):
        self.cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *args, "-fps_mode", "passthrough",
                    "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]  # (passthrough: frames a select filter drops stay so)
        self.shape = (height, width, 3)
        self.complaint = ""

    def __iter__(self) -> Iterator[np.ndarray]:
        size = int(np.prod(self.shape))
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=err)
            try:
                while len(buf := proc.stdout.read(size)) == size:
                    yield np.frombuffer(buf, np.uint8).reshape(self.shape)
                proc.stdout.close()
                proc.wait()
            finally:  # (also when the caller stops early)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                err.seek(0)
                text = err.read()
                self.complaint = last_error(text) if proc.returncode not in (0, -9) or text.strip() else ""


def probe(path: str | Path) -> dict:
    """Read a media file's streams with `ffmpeg -i` (no ffprobe ships with imageio-ffmpeg).

    Returns {"has_video", "has_audio", "fps", "width", "height", "sar", "duration", "rotation", "audio_start",
    "format"} (format: ffmpeg's name of the container, e.g. "mov,mp4,m4a,3gp,3g2,mj2", "png_pipe" for an image)
    (audio_start: seconds at which the first audio stream begins, 0 unless the file says otherwise); raises
    PreprocessError with the file name if the file is missing or not a media file. Width, height and SAR are those
    of the frames as ffmpeg decodes them: a video with a 90/270 degree rotation flag comes out turned upright.
    """
    path = Path(path)
    if not path.is_file():
        raise PreprocessError(f"{path}: file not found")
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True, text=True)
    err = proc.stderr
    if "Invalid data found" in err or "Stream #" not in err:
        with open(path, "rb") as f:
            head = f.read(12)
        if "moov atom not found" in err and head[4:8] == b"ftyp":
            raise PreprocessError(f"{path}: truncated or unfinished mp4 (its index, the 'moov' atom, is missing): "
                                  "nothing can be decoded; copy or download it again")
        if path.stat().st_size == 0:
            raise PreprocessError(f"{path}: empty file")
        raise PreprocessError(f"{path}: not a readable video or audio file")
    info: dict = {"has_video": False, "has_audio": False, "fps": None, "width": None, "height": None,
                  "sar": 1.0, "duration": None, "audio_start": 0.0}
    m = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", err)
    if m:
        info["duration"] = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    for line in err.splitlines():
        if "Stream #" in line and "Video:" in line and not info["has_video"] and "attached pic" not in line:
            info["has_video"] = True
            size = re.search(r"\b(\d{2,5})x(\d{2,5})\b", line)
            if size:
                info["width"], info["height"] = int(size[1]), int(size[2])
            sar = re.search(r"SAR (\d+):(\d+)", line)
            if sar and int(sar[2]) > 0 and int(sar[1]) > 0:
                info["sar"] = int(sar[1]) / int(sar[2])
            fps = re.search(r"([\d.]+) (?:fps|tbr)", line)
            if fps:
                info["fps"] = float(fps[1])
        if "Stream #" in line and "Audio:" in line and not info["has_audio"]:
            info["has_audio"] = True
            start = re.search(r", start (-?\d+(?:\.\d+)?)", line)
            if start:
                info["audio_start"] = float(start[1])
    fmt = re.search(r"Input #0, (.+?), from ", err)
    info["format"] = fmt[1] if fmt else ""
    rot = re.search(r"rotation of (-?[\d.]+) degrees", err)
    info["rotation"] = float(rot[1]) if rot else 0.0
    if info["width"] and round(info["rotation"]) % 180 == 90:  # ffmpeg autorotates when decoding: as decoded
        info["width"], info["height"], info["sar"] = info["height"], info["width"], 1.0 / info["sar"]
    return info
