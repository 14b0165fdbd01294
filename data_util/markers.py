"""The steps, what each reads, and their done-markers.

A step that finished writes `dataset/<name>/.done/<step>` (its wall time in seconds) and records the options its
output depends on in `.done/options.json`. A step is current when its marker is there and those options are the
ones of this run; else it runs again (and so do the steps that read its outputs). A marker from before options were
recorded counts as made with no --start/--end and with whatever the other options are now.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .context import StepContext
from common.fileio import save_json, save_text

# (number, name): module data_util.<name> with run(ctx).
STEPS: list[tuple[int, str]] = [
    (1, "audio"),
    (2, "audio_features"),
    (3, "video"),
    (4, "landmarks"),
    (5, "parsing"),
    (6, "background"),
    (7, "tracking"),
    (8, "transforms"),
    (9, "debug"),
]
# step -> the steps whose outputs it reads (a step that runs again makes these dependents run again too).
# Not listed: audio_features and video each cut their output to the other's length (data_util.common_length),
# and mark the other to run again in the rare case that a cut cannot be undone otherwise.
READS: dict[str, list[str]] = {
    "audio": [], "audio_features": ["audio"], "video": [], "landmarks": ["video"],
    "parsing": ["video", "landmarks"], "background": ["video", "parsing"], "tracking": ["video", "landmarks"],
    "transforms": ["audio_features", "landmarks", "tracking"],
    "debug": ["video", "landmarks", "parsing", "tracking"],
}
NUMBER = {step: number for number, step in STEPS}
# the StepContext fields each step's output depends on
OPTIONS: dict[str, list[str]] = {
    "audio": ["video", "audio", "start", "end"],
    "audio_features": ["aud_npy", "aud_backend", "aud_model"],
    "video": ["video", "start", "end", "size", "crop", "stabilise", "cuts"],
    "landmarks": ["landmark_backend"],
    "parsing": ["parsing_backend", "parsing_model"],
}
BEFORE_OPTIONS = {"start": None, "end": None}  # what a marker without recorded options was made with


def marker(ctx: StepContext, step: str) -> Path:
    return ctx.out_dir / ".done" / step


def options_file(ctx: StepContext) -> Path:
    return ctx.out_dir / ".done" / "options.json"


def dependents(step: str) -> set[str]:
    """The steps that read `step`'s outputs, directly or through other steps."""
    found: set[str] = set()
    for _, other in STEPS:  # STEPS is in dependency order
        if step in READS[other] or found & set(READS[other]):
            found.add(other)
    return found


def _plain(value: Any) -> Any:
    """An option's value as recorded: paths absolute, the rest as is."""
    return str(Path(value).resolve()) if isinstance(value, Path) else value


def step_options(ctx: StepContext, step: str) -> dict:
    return {key: _plain(getattr(ctx, key)) for key in OPTIONS.get(step, [])}


def recorded_options(ctx: StepContext) -> dict:
    try:
        return json.loads(options_file(ctx).read_text())
    except (OSError, ValueError):
        return {}


def changed_options(ctx: StepContext, step: str) -> list[str]:
    """`name old -> new` for each option of `step` that differs from what its marker was made with."""
    now = step_options(ctx, step)
    before = recorded_options(ctx).get(step)
    if before is None:
        before = {**now, **{k: v for k, v in BEFORE_OPTIONS.items() if k in now}}
    return [f"--{k} {show(before.get(k))} -> {show(v)}" for k, v in now.items() if before.get(k, v) != v]


def show(value: Any) -> str:
    return "none" if value is None else str(value)


def is_current(ctx: StepContext, step: str) -> bool:
    """True if `step` finished with this run's options."""
    return marker(ctx, step).exists() and not changed_options(ctx, step)


def mark_done(ctx: StepContext, step: str, seconds: float) -> None:
    """Write the step's marker and record its options."""
    save_text(marker(ctx, step), f"{seconds:.3f}\n")
    record = recorded_options(ctx)
    record[step] = step_options(ctx, step)
    save_json(options_file(ctx), record)


def invalidate(ctx: StepContext, steps: set[str], why: str) -> None:
    """Remove the markers of `steps` (and of what reads them), saying so: they run again."""
    for step in sorted(steps | set().union(*(dependents(s) for s in steps)), key=NUMBER.get):
        if marker(ctx, step).exists():
            marker(ctx, step).unlink()
            print(f"  step {NUMBER[step]} ({step}) will run again: {why}")
