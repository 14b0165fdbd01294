#!/usr/bin/env python
"""Markdown summary of benchmarks/results/*.json (what README.md's performance section shows):

    python benchmarks/report.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def fmt(v, unit: str = "", digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}{unit}"


def train_lines(res: dict) -> list[str]:
    out = ["| backbone | " + " | ".join(f"time to {db} dB" for db in res["time_to_psnr"]["hash"]) + " | final PSNR |",
           "| --- |" + " --- |" * (len(res["time_to_psnr"]["hash"]) + 1)]
    for bb, times in res["time_to_psnr"].items():
        out.append(f"| {bb} | " + " | ".join(fmt(t, " s", 0) for t in times.values())
                   + f" | {fmt(res['final_psnr'][bb], ' dB', 2)} |")
    out.append(f"\nmlp reached {res['ratio_target_psnr']:.2f} dB after {res['ratio_times']['mlp']:.0f} s of training; "
               f"hash reached it after {fmt(res['ratio_times']['hash'], ' s', 0)}: ratio {fmt(res['ratio'], 'x')}.")
    return out


def render_lines(res: dict) -> list[str]:
    sizes = sorted({s for per in res["fps"].values() for s in per}, key=int)
    head = "render path" if "fast_over_reference" in res else "backbone"
    out = [f"| {head} | " + " | ".join(f"{s}x{s}" for s in sizes) + " |", "| --- |" + " --- |" * len(sizes)]
    for bb, per in res["fps"].items():
        out.append(f"| {bb} | " + " | ".join(fmt(per.get(s), " fps", 3) for s in sizes) + " |")
    if "fast_over_reference" in res:  # a trained run, both render paths
        out.append("| **fast / reference** | " + " | ".join(fmt(res["fast_over_reference"].get(s), "x", 2)
                                                          for s in sizes) + " |")
        out.append("| fast vs reference image | " + " | ".join(fmt(res["parity_psnr"].get(s), " dB", 1)
                                                            for s in sizes) + " |")
        if res.get("val_psnr"):
            out.append("\nValidation PSNR: " + ", ".join(f"{k} {v:.3f} dB" for k, v in res["val_psnr"].items()))
    return out


def preprocess_lines(res: dict) -> list[str]:
    sizes = list(res["seconds_per_second"])
    steps = list(res["per_step"][sizes[0]])
    out = ["| step | " + " | ".join(f"{s}x{s}" for s in sizes) + " |", "| --- |" + " --- |" * len(sizes)]
    for step in steps:
        out.append(f"| {step} | " + " | ".join(fmt(res["per_step"][s][step], "", 3) for s in sizes) + " |")
    out.append("| **total** | " + " | ".join(fmt(res["seconds_per_second"][s], "", 2) for s in sizes) + " |")
    return out


def main() -> int:
    for name, title, lines in (("train_speed", "Training: time to quality", train_lines),
                               ("render_speed", "Rendering speed", render_lines),
                               ("render_speed_trained", "Rendering speed, trained model", render_lines),
                               ("preprocess_speed", "Preprocessing: seconds per second of video", preprocess_lines)):
        res = load(name)
        if res is None:
            continue
        print(f"**{title}** (`benchmarks/results/{name}.json`, device {res.get('device', 'cpu')})\n")
        print("\n".join(lines(res)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
