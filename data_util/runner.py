"""Runs the preprocessing steps in order: `python -m data_util.runner <name>` (what process_data.sh calls).

Each step is a module with `run(ctx: StepContext) -> None`. A step that finished writes a marker
`dataset/<name>/.done/<step>` and records its options (data_util.markers); a later run skips it unless `--force`
or its options (--start, --end, --size, --audio, ...) changed. Steps write their outputs atomically
(common.fileio), so a killed run leaves no half-written file and simply picks up where it stopped.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import shutil
import sys
import time
from pathlib import Path

from . import span, video
from .context import StepContext
from common.errors import PreprocessError
from common.ffmpeg import probe
from .markers import READS, STEPS, changed_options, dependents, invalidate, mark_done, marker  # noqa: F401 (API)

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def remove_stale_temps(out_dir: Path) -> None:
    """Delete the temporary files and folders (`.tmp-<pid>-*`, `.tmp-*-<pid>`) that a killed run left behind."""
    for p in sorted(out_dir.rglob(".tmp-*"), key=lambda q: len(q.parts), reverse=True):
        if str(os.getpid()) in p.name.split("-"):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink(missing_ok=True)


def run_step(ctx: StepContext, number: int, step: str, why: str) -> None:
    """Run one step (its dependents are marked not done first) and mark it done with this run's options."""
    print(f"[{number}/9] {step} ...{why}", flush=True)
    invalidate(ctx, dependents(step), "it uses this step's output")  # their inputs change now
    start = time.perf_counter()
    importlib.import_module(f"data_util.{step}").run(ctx)
    seconds = time.perf_counter() - start
    mark_done(ctx, step, seconds)
    print(f"[{number}/9] {step}: {seconds:.1f} s", flush=True)


def next_step(ctx: StepContext, todo: list[tuple[int, str]], forced: set[str], seen: set[str]
              ) -> tuple[int, str, str] | None:
    """(number, step, why) of the first step of `todo` to run: forced, not done, or done with other options.
    Reports each done step it passes once."""
    for number, step in todo:
        changed = changed_options(ctx, step)
        if step in forced or not marker(ctx, step).exists() or changed:
            return number, step, f" (options changed: {', '.join(changed)})" if changed and step not in forced else ""
        if step not in seen:
            seen.add(step)
            print(f"[{number}/9] {step}: done already, skipped (--force to redo)")
    return None


def run_steps(ctx: StepContext, only: int | None = None, force: bool = False) -> None:
    """Run every step (or just step `only`) that is not current, in order, skipping finished ones unless `force`.
    A step that runs marks the steps that read its outputs (READS) as not done; one that makes an earlier step stale
    (data_util.common_length) has it run again after it."""
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(ctx.out_dir)
    todo = [(n, s) for n, s in STEPS if only is None or n == only]
    forced = {s for _, s in todo} if force else set()
    seen: set[str] = set()
    for _ in range(2 * len(STEPS)):
        found = next_step(ctx, todo, forced, seen)
        if found is None:
            return
        number, step, why = found
        forced.discard(step)
        seen.add(step)
        run_step(ctx, number, step, why)
    raise PreprocessError(f"{ctx.out_dir}: the steps keep marking each other to run again; rerun with --force")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (like every other error of the runner)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {' '.join(message.split())} (see bash process_data.sh --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="process_data.sh",
        description="Turn dataset/vids/<name>.mp4 into the training folder dataset/<name>/ "
        "(frames, audio features, landmarks, parsing, background, head poses, transforms).",
    )
    p.add_argument("name", help="subject name: reads dataset/vids/<name>.mp4, writes dataset/<name>/")
    p.add_argument("--video", type=Path, help="input video (default: <root>/vids/<name>.mp4)")
    p.add_argument("--root", type=Path, default=Path("dataset"), help="dataset root folder (default: dataset)")
    p.add_argument("--config_dir", type=Path, default=Path("configs"), help="where configs/<name>.txt is written")
    p.add_argument("--step", type=int, choices=[n for n, _ in STEPS], help="run only this step (1-9)")
    p.add_argument("--force", action="store_true", help="redo steps that are already done")
    p.add_argument("--size", type=int, help="square frame size in pixels (default: the size of the square --crop "
                   "cuts; scaled down to 512 if larger, the largest size a "
                   "preset trains at)")
    p.add_argument("--crop", default="head", choices=["head", "largest"],
                   help="head (default): where the face is small in the frame (a waist-up or wider shot), a "
                   "head-and-shoulders square about 3 face sizes wide; largest: the largest square around the face")
    p.add_argument("--stabilise", default="auto", choices=["auto", "off"],
                   help="auto (default): when the camera moves (hand-held, drifting), the frames are brought into "
                   "one frame's view before anything else (a virtual tripod); off: taken as they are")
    p.add_argument("--cuts", default="stop", choices=["stop", "keep"],
                   help="stop (default): a video cut between shots (an edit, a dissolve, a fade) stops step 3 with "
                   "the --start/--end of its longest shot with a face; keep: processed as it is")
    p.add_argument("--start", type=float, help="process the video from this second on (default: its start); "
                   "changing --start/--end redoes the steps")
    p.add_argument("--end", type=float, help="and up to this second (default: its end); --audio is cut the same way")
    p.add_argument("--audio", type=Path, help="take the audio from this file instead of the video (aligned with it: "
                   "its second 0 plays with the video's)")
    p.add_argument("--aud_npy", type=Path, help="use this AD-NeRF aud.npy [N,16,29] as the audio features")
    p.add_argument("--aud_backend", default="mfcc", choices=["mfcc", "deepspeech", "hubert"],
                   help="audio feature extractor (default mfcc: offline, no download)")
    p.add_argument("--aud_model", type=Path, help="model file/folder for --aud_backend deepspeech|hubert")
    p.add_argument("--landmark_backend", default="mediapipe", choices=["mediapipe", "face_alignment"])
    p.add_argument("--parsing_backend", default="mediapipe", choices=["mediapipe", "bisenet"])
    p.add_argument("--parsing_model", type=Path, help="BiSeNet weights (79999_iter.pth) for --parsing_backend bisenet")
    return p


def context_from_args(args: argparse.Namespace) -> StepContext:
    if not SAFE_NAME.match(args.name):
        raise PreprocessError(
            f"name {args.name!r}: use only letters, digits, '-', '_' and '.' (it becomes a folder and a config name)"
        )
    span.check_options(args.start, args.end)
    video = args.video or args.root / "vids" / f"{args.name}.mp4"
    return StepContext(
        name=args.name, video=Path(video), out_dir=args.root / args.name, config_dir=args.config_dir,
        size=args.size, crop=args.crop, stabilise=args.stabilise, cuts=args.cuts, start=args.start or None,
        end=args.end, audio=args.audio, aud_npy=args.aud_npy,
        aud_backend=args.aud_backend, aud_model=args.aud_model, landmark_backend=args.landmark_backend,
        parsing_backend=args.parsing_backend, parsing_model=args.parsing_model,
    )


def one_line(err: BaseException) -> str:
    """The error's message on a single line (a step's message should be one already; this makes sure)."""
    return " ".join(str(err).split()) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        ctx = context_from_args(args)
        if not ctx.video.is_file():
            raise PreprocessError(f"{ctx.video}: file not found")
        if args.step in (None, 1, 3):  # the steps that read the video: a bad one fails before any of them runs
            info = probe(ctx.video)
            video.check_input(ctx.video, info, *span.resolve(ctx, info["duration"]))
        run_steps(ctx, only=args.step, force=args.force)
    except (PreprocessError, FileNotFoundError, ValueError) as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished steps are kept; run the same command again to continue", file=sys.stderr)
        return 130
    print(f"done: {ctx.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
