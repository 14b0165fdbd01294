"""--start / --end: the part of the input that is processed, in seconds of the video.

Steps 1 (audio) and 3 (video) cut the same span: from the video and its audio track, or from the --audio file,
which is taken as aligned with the video (its second t plays with the video's second t). video_meta.json records
the span; frame i of ori_imgs is at `start_s + i / 25` seconds of the video.
"""
from __future__ import annotations

import json
import math

from .context import FPS, StepContext
from common.errors import PreprocessError


def check_options(start: float | None, end: float | None) -> None:
    """One-line PreprocessError for a negative value or an empty span (no file needed for these)."""
    for flag, value in (("--start", start), ("--end", end)):
        if value is not None and value < 0:
            raise PreprocessError(f"{flag} {value:g}: must be 0 or more (seconds into the video)")
    if start is not None and end is not None and start >= end:
        raise PreprocessError(f"--start {start:g} --end {end:g}: the start must come before the end")


def resolve(ctx: StepContext, duration: float | None) -> tuple[float, float | None]:
    """(start, end) seconds of the video to process, end clamped to its duration (None: to its end, length unknown).
    PreprocessError naming the video if --start lies beyond its end."""
    start = ctx.start or 0.0
    if duration and start >= duration:
        raise PreprocessError(f"--start {start:g}: beyond the end of {ctx.video} ({duration:.2f} s long)")
    end = ctx.end if ctx.end is not None else duration
    if duration and end is not None:
        end = min(end, duration)
    return start, end


def input_args(ctx: StepContext, start: float, end: float | None) -> list[str]:
    """ffmpeg input options (before -i) that cut the span; none without --start/--end."""
    args = ["-ss", f"{start:.3f}"] if start > 0 else []
    if ctx.end is not None and end is not None:
        args += ["-t", f"{end - start:.3f}"]
    return args


def inward(a: int, b: int, start: float) -> tuple[float, float]:
    """The --start/--end (seconds of the video) that keep frames [a, b) of a span starting at `start`: rounded
    inwards to 0.1 s with a frame of margin at the end (to 0.01 s where the frames are too few to round)."""
    lo = math.ceil(round((start + a / FPS) * 10, 6)) / 10
    hi = math.floor(round((start + (b - 1) / FPS) * 10, 6)) / 10
    if hi - lo < 2 / FPS:
        lo, hi = round(start + a / FPS, 2), round(start + b / FPS, 2)
    return lo, hi


def text(start: float, end: float | None) -> str:
    """'2.0-8.0 s' (or '2.0 s to the end')."""
    return f"{start:.1f}-{end:.1f} s" if end is not None else f"{start:.1f} s to the end"


def clip_start(ctx: StepContext) -> float:
    """Seconds of the video at which frame 0 of ori_imgs was taken (video_meta.json's start_s; 0 if absent)."""
    try:
        return float(json.loads((ctx.out_dir / "video_meta.json").read_text()).get("start_s") or 0.0)
    except (OSError, ValueError):
        return 0.0
