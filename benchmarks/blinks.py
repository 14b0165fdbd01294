#!/usr/bin/env python
"""Blinks on the sample: does the rendered eye follow the requested openness, and what does the input cost?

    python benchmarks/blinks.py [--seconds 6] [--render_size 256]

1. the sample clip (with its blinks and their ground truth) -> dataset/blinks/ (process_data.sh),
2. two runs with the CPU preset: `blinks_eyes` (the eye input, the default) and `blinks_noeyes` (`--eyes false`),
3. evaluate.py on every held-out frame of each (the eye region's PSNR; the held-out part has a blink),
4. render.py of new speech with `--blink natural` at the training poses, at --render_size; the landmark back-end
   (mediapipe face mesh) measures the eye openness on the rendered frames (eye aspect ratio over the training
   clip's median), correlated with the requested openness.
Writes benchmarks/results/blinks.json and blinks.png (requested vs measured openness, frames around a blink).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

from benchmarks.results_io import run_stage, sample_subject, save_figure, write_results  # noqa: E402
from nerf.blinks import closed_level, natural_blinks  # noqa: E402
from nerf.dataset import DataConfig, TalkingDataset  # noqa: E402

NAME = "blinks"


def run(cmd: list[str], log: Path) -> None:
    """A stage from the repository root (results_io.run_stage)."""
    run_stage(cmd, log, ROOT, "blinks")


def measured_openness(frames_dir: Path, train_lms: np.ndarray) -> np.ndarray:
    """Eye aspect ratio of the rendered PNGs over the training landmarks' median -> [N] (NaN: no face found)."""
    import imageio.v3 as iio

    from common.eyes import eye_aspect_ratio
    from data_util.landmarks import detect_landmarks

    frames = [iio.imread(p) for p in sorted(frames_dir.glob("*.png"))]
    ear = eye_aspect_ratio(detect_landmarks(frames))
    return ear / np.median(eye_aspect_ratio(train_lms))


def follow(requested: np.ndarray, measured: np.ndarray) -> dict:
    ok = np.isfinite(measured)
    r = float(np.corrcoef(requested[ok], measured[ok])[0, 1]) if measured[ok].std() > 1e-9 else 0.0
    closed = requested < 0.6
    return {"r": round(r, 3), "frames_measured": int(ok.sum()),
            "measured_when_open": round(float(np.nanmedian(measured[~closed])), 3),
            "measured_when_closed": round(float(np.nanmedian(measured[closed])), 3) if closed.any() else None}


def draw(path: Path, results: dict, curves: dict, strips: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(10, 6.5))
    ax = fig.add_subplot(2, 1, 1)
    t = np.arange(len(curves["requested"])) / 25
    ax.plot(t, curves["requested"], "k-", lw=2, label="requested (--blink natural)")
    for name, colour in (("eyes", "tab:blue"), ("noeyes", "tab:red")):
        res = results["runs"][name]["render"]
        ax.plot(t, curves[name], ".-", color=colour, label=f"measured, {name.replace('noeyes', 'no eye input')}"
                f" (r = {res['r']:+.2f})")
    ax.set_xlabel("seconds")
    ax.set_ylabel("eye openness")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    for k, name in enumerate(("eyes", "noeyes")):
        a = fig.add_subplot(4, 1, 3 + k)
        a.imshow(strips[name])
        a.set_axis_off()
        ev = results["runs"][name]["evaluation"]
        a.set_title(f"{name}: frames around the deepest requested blink; held-out eye PSNR "
                    f"{ev['region_psnr'].get('eyes', float('nan')):.2f} dB", fontsize=9)
    save_figure(fig, path)


def eye_strip(frames_dir: Path, centre: int, lms_box: tuple[int, int, int, int]) -> np.ndarray:
    """The eye band of frames centre-3..centre+3 side by side."""
    import imageio.v3 as iio

    files = sorted(frames_dir.glob("*.png"))
    y0, y1, x0, x1 = lms_box
    pick = [files[i] for i in range(max(centre - 3, 0), min(centre + 4, len(files)))]
    return np.concatenate([iio.imread(p)[y0:y1, x0:x1] for p in pick], 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=6.0, help="length of the new speech rendered with blinks")
    p.add_argument("--render_size", type=int, default=256, help="rendered size for the landmark measurement")
    p.add_argument("--blink_seed", type=int, default=1)
    p.add_argument("--skip_train", action="store_true", help="reuse logs/blinks_eyes and logs/blinks_noeyes")
    p.add_argument("--runs", default="eyes,noeyes", help="the runs to (re)make; the others' results are kept from "
                   "the previous --out and their rendered frames from output/blinks/")
    p.add_argument("--out", type=Path, default=RESULTS / "blinks.json")
    args = p.parse_args(argv)
    py = sys.executable
    out_dir, log, speech = sample_subject(NAME, ROOT, args.seconds, voice=1, seed=7)
    video = ROOT / "dataset" / "vids" / f"{NAME}.mp4"
    config = ROOT / "configs" / f"{NAME}.txt"
    data = ROOT / "dataset" / NAME
    train_lms = np.load(data / "landmarks.npy")
    results: dict = {"command": "python benchmarks/blinks.py " + " ".join(argv or sys.argv[1:]), "runs": {}}
    previous = json.loads(args.out.read_text()).get("runs", {}) if args.out.is_file() else {}
    todo = args.runs.split(",")
    curves, strips = {}, {}
    gt = json.loads(video.with_name(f"{NAME}_gt.json").read_text())
    results["clip_blink_frames"] = int(sum(f["eye_closure"] > 0.5 for f in gt["frames"]))
    train_eye = TalkingDataset(DataConfig(datadir=str(data), preload=False), "train").eye
    n = int(np.ceil(args.seconds * 25))  # the frames render.py makes of the new speech
    requested = natural_blinks(n, closed_level(None if train_eye is None else train_eye.numpy()), args.blink_seed)
    curves["requested"], centre = requested, int(np.argmin(requested))
    box = tuple(int(v * args.render_size / 256) for v in (70, 120, 70, 190))  # the eye band
    for name, extra in (("eyes", []), ("noeyes", ["--eyes", "false"])):
        exp = f"{NAME}_{name}"
        frames = out_dir / f"frames_{name}"
        if name not in todo:  # kept from an earlier call
            results["runs"][name] = {**previous[name], "kept_from_an_earlier_call": True}
            curves[name] = measured_openness(frames, train_lms)
            strips[name] = eye_strip(frames, centre, box)
            continue
        if not args.skip_train:
            run([py, "train.py", "--config", str(config), "--expname", exp, *extra], log)
        run([py, "evaluate.py", "--config", str(config), "--expname", exp, "--no_video"], log)
        run([py, "render.py", "--config", str(config), "--expname", exp, "--aud", str(speech), "--blink", "natural",
             "--blink_seed", str(args.blink_seed), "--img_size", str(args.render_size), "--save_frames", str(frames),
             "--out", str(out_dir / f"{name}.mp4")], log)
        assert len(list(frames.glob("*.png"))) == n, frames
        measured = measured_openness(frames, train_lms)
        ev = json.loads((ROOT / "logs" / exp / "eval" / "metrics.json").read_text())
        run_dir = ROOT / "logs" / exp
        rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
        results["runs"][name] = {
            "expname": exp, "iterations": rows[-1].get("iter"), "train_seconds": rows[-1].get("time_s"),
            "evaluation": {k: ev.get(k) for k in ("frames", "psnr", "ssim", "miou", "region_psnr")},
            "render": follow(requested, measured)}
        curves[name] = measured
        strips[name] = eye_strip(frames, centre, box)
    return write_results(args.out, results, lambda png: draw(png, results, curves, strips))


if __name__ == "__main__":
    sys.exit(main())
