#!/usr/bin/env python
"""Preprocessing speed: seconds of processing per second of video, per step, for square inputs of several sizes
-> benchmarks/results/preprocess_speed.json and preprocess_speed.png.

    python benchmarks/preprocess_speed.py [--sizes 256 512] [--seconds 30] [--work /tmp/preprocess_bench]

For each size, the sample clip (sample_data.clip, not timed) is written at that size and `bash process_data.sh`
runs all nine steps on it in a fresh folder; the runner's per-step wall times (`dataset/<name>/.done/<step>`) are
divided by the clip's length. The whole command is timed too (it adds interpreter and import start-up).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

from benchmarks.results_io import new_figure, save_figure, write_results  # noqa: E402


def bench_size(work: Path, size: int, seconds: float) -> dict:
    """Write a `size` px sample clip under work/, preprocess it, return per-step and total seconds per second."""
    from data_util.runner import STEPS
    from sample_data.clip import write_clip

    root = work / f"s{size}"
    shutil.rmtree(root, ignore_errors=True)
    name = f"bench{size}"
    write_clip(root / "vids" / f"{name}.mp4", size=size, seconds=seconds, seed=0, progress=False)
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", str(ROOT / "process_data.sh"), name, "--root", str(root), "--config_dir",
                           str(root / "configs")], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"preprocessing the {size} px clip failed: {proc.stderr.strip()}")
    per_step = {step: float((root / name / ".done" / step).read_text()) / seconds for _, step in STEPS}
    return {"per_step": per_step, "steps_total": sum(per_step.values()), "command_total": wall / seconds,
            "video_seconds": seconds}


def plot(path: Path, per_size: dict) -> None:
    sizes = list(per_size)
    steps = list(next(iter(per_size.values()))["per_step"])
    fig, ax = new_figure()
    bottom = [0.0] * len(sizes)
    for step in steps:
        vals = [per_size[s]["per_step"][step] for s in sizes]
        ax.bar([f"{s}x{s}" for s in sizes], vals, bottom=bottom, label=step)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.axhline(2.0, color="k", ls="--", lw=1, label="target 2 s/s")
    ax.set_ylabel("seconds per second of video")
    ax.set_title("preprocessing speed by step")
    ax.legend(fontsize=7, ncol=2)
    save_figure(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--seconds", type=float, default=30.0, help="length of the clip processed at each size (the "
                   "focal search of step 7 costs the same for any length, so short clips overstate it)")
    p.add_argument("--work", type=Path, default=Path("/tmp/preprocess_bench"))
    p.add_argument("--out", default=str(RESULTS / "preprocess_speed.json"))
    args = p.parse_args(argv)
    per_size = {}
    for size in args.sizes:
        r = bench_size(args.work, size, args.seconds)
        per_size[str(size)] = r
        steps = ", ".join(f"{k} {v:.3f}" for k, v in r["per_step"].items())
        print(f"{size}x{size}: {r['steps_total']:.2f} s per second of video ({steps}); "
              f"whole command {r['command_total']:.2f}", flush=True)
    res = {"seconds_per_second": {s: round(r["steps_total"], 4) for s, r in per_size.items()},
           "command_seconds_per_second": {s: round(r["command_total"], 4) for s, r in per_size.items()},
           "per_step": {s: {k: round(v, 4) for k, v in r["per_step"].items()} for s, r in per_size.items()},
           "video_seconds": args.seconds, "cpu_count": os.cpu_count(),
           "note": "sample clip (synthetic talking portrait) at each size; runner's wall time per step"}
    return write_results(args.out, res, lambda png: plot(png, per_size))


if __name__ == "__main__":
    sys.exit(main())
