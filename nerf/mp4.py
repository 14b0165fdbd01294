"""Writing and reading back H.264 mp4 files: frames piped to ffmpeg with the speech muxed (AAC)."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
from torch import Tensor

from common.constants import FPS, SAMPLE_RATE
from common.ffmpeg import ffmpeg_exe, last_error, probe, read_ffmpeg
from common.fileio import atomic_path



def to_uint8(img: Tensor | np.ndarray) -> np.ndarray:
    """float image in [0, 1] -> uint8 (rounded)."""
    a = img.numpy() if isinstance(img, Tensor) else np.asarray(img)
    return (np.clip(a, 0, 1) * 255).round().astype(np.uint8)


class Mp4Writer:
    """H.264 yuv420p mp4 from RGB frames piped to ffmpeg's stdin, with an optional audio track muxed (AAC).

    Written to a temp name beside `path` and renamed on success; odd sizes are padded to even. The audio is not
    cut (`-shortest` is not used): the caller renders ceil(duration * fps) frames so both streams match within a
    frame. audio_start/audio_dur select a segment of the audio file (seconds).
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: int = FPS, audio: str | Path | None = None,
                 audio_start: float = 0.0, audio_dur: float | None = None, crf: int = 18):
        self.path, self.size = Path(path), (int(width), int(height))
        self._atomic = atomic_path(self.path)
        self.tmp = self._atomic.__enter__()
        self._err = tempfile.TemporaryFile()
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", str(fps), "-i", "-"]
        if audio is not None:
            if audio_start > 0:
                cmd += ["-ss", f"{audio_start:.4f}"]
            if audio_dur is not None:
                cmd += ["-t", f"{audio_dur:.4f}"]
            cmd += ["-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-b:a", "128k"]
        cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(crf),
                "-preset", "fast", "-movflags", "+faststart", str(self.tmp)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._err)
        self.n_frames = 0

    def _error(self) -> str:
        self._err.seek(0)
        return last_error(self._err.read())

    def write(self, frame: np.ndarray) -> None:
        """frame: uint8 [H,W,3] RGB."""
        if frame.shape != (self.size[1], self.size[0], 3) or frame.dtype != np.uint8:
            raise ValueError(f"{self.path}: frame {frame.shape} {frame.dtype}, expected uint8 "
                             f"[{self.size[1]},{self.size[0]},3]")
        try:
            self.proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            self.proc.wait()
            raise RuntimeError(f"{self.path}: ffmpeg stopped: {self._error()}") from None
        self.n_frames += 1

    def close(self) -> None:
        """Finish the file and move it into place; RuntimeError (and no file) if ffmpeg failed."""
        ok = False
        try:
            self.proc.stdin.close()
            rc = self.proc.wait()
            if rc != 0:
                raise RuntimeError(f"{self.path}: ffmpeg failed (exit {rc}): {self._error()}")
            ok = True
        finally:
            self._err.close()
            if ok:
                self._atomic.__exit__(None, None, None)
            else:
                self._atomic.__exit__(RuntimeError, None, None)

    def abort(self) -> None:
        """Stop ffmpeg and remove the temp file; the destination is left as it was."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._err.close()
        self._atomic.__exit__(RuntimeError, None, None)

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_back(path: str | Path) -> dict:
    """Decode an mp4 again: {"frames": video frames, "width", "height", "audio_s": decoded audio seconds or None}."""
    info = probe(path)
    raw = read_ffmpeg(["-i", str(path), "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "gray", "-"], str(path))
    frames = len(raw) // (info["width"] * info["height"])
    audio_s = None
    if info["has_audio"]:
        pcm = read_ffmpeg(["-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le", "-"],
                          str(path))
        audio_s = len(pcm) / 2 / SAMPLE_RATE
    return {"frames": frames, "width": info["width"], "height": info["height"], "audio_s": audio_s}
