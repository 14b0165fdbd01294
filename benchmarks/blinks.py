#!/usr/bin/env python
"""Blinks on the sample: does the rendered eye follow the requested openness, and what does the input cost?

    python benchmarks/blinks.py [--seconds 20] [--render_size 256] [--runs eyes,noeyes,audio_at_eyes] [--retrain]

1. the sample clip (with its blinks and their ground truth) -> dataset/blinks/ (process_data.sh),
2. runs with the CPU preset (RUNS): `blinks_eyes` (the eye input, the defaults), `blinks_noeyes` (`--eyes false`)
   and `blinks_audio_at_eyes` (the audio code reaching the eyes too, as before 2026-12-03); a run (or render)
   on record (output/blinks/*.done, newer than its checkpoint) is reused,
3. evaluate.py on every held-out frame of each (the eye region's PSNR; the held-out part has a blink),
4. render.py of new speech with `--blink natural` at the training poses, at --render_size; the landmark back-end
   (mediapipe face mesh) measures the eye openness on the rendered frames (eye aspect ratio over the training
   clip's median), correlated with the requested openness (`r`). The 2D eye aspect ratio also changes with the
   head's pitch and the render's sharpness, so runs with the eye input are rendered a second time with
   `--blink none` (same poses, same speech) and `r_vs_open_render` correlates the requested openness with the
   ratio of the two measurements: what the eye input alone does to the rendered eye.
Writes benchmarks/results/blinks.json and blinks.png (requested vs measured openness, frames around a blink).
"""
from __future__ import annotations

import argparse
import json
import shutil
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
RUNS = {"eyes": [], "noeyes": ["--eyes", "false"], "audio_at_eyes": ["--audio_at_eyes", "true"]}  # name -> train flags
COLOURS = {"eyes": "tab:blue", "noeyes": "tab:red", "audio_at_eyes": "tab:green"}


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


def is_done(marker: Path, what: str, ckpt: Path) -> bool:
    """A stage on record: its marker holds `what` (the stage's settings) and is newer than the run's checkpoint
    (a run trained again since is not)."""
    return (marker.is_file() and ckpt.is_file() and marker.read_text() == what
            and marker.stat().st_mtime >= ckpt.stat().st_mtime)


def frame_count(folder: Path) -> int:
    return len(list(folder.glob("*.png")))


def follow(requested: np.ndarray, measured: np.ndarray, open_render: np.ndarray | None = None) -> dict:
    """How the measured openness [N] (and, with open_render [N], its ratio to that render's) follows requested [N]."""
    out = _follow(requested, measured)
    if open_render is not None:
        ratio = _follow(requested, measured / open_render)
        out.update(r_vs_open_render=ratio["r"], ratio_when_closed=ratio["measured_when_closed"])
    return out


def _follow(requested: np.ndarray, measured: np.ndarray) -> dict:
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

    names = list(results["runs"])
    fig = plt.figure(figsize=(10, 3.5 + 1.5 * len(names)))
    ax = fig.add_subplot(2, 1, 1)
    t = np.arange(len(curves["requested"])) / 25
    ax.plot(t, curves["requested"], "k-", lw=2, label="requested (--blink natural)")
    for name in names:
        res, colour = results["runs"][name]["render"], COLOURS.get(name)
        ax.plot(t, curves[name], ".-", color=colour, label=f"measured, {name.replace('noeyes', 'no eye input')}"
                f" (r = {res['r']:+.2f})")
    ax.set_xlabel("seconds")
    ax.set_ylabel("eye openness")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    for k, name in enumerate(names):
        a = fig.add_subplot(2 * len(names), 1, len(names) + 1 + k)
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
    p.add_argument("--seconds", type=float, default=20.0, help="length of the new speech rendered with blinks")
    p.add_argument("--render_size", type=int, default=256, help="rendered size for the landmark measurement")
    p.add_argument("--blink_seed", type=int, default=1)
    p.add_argument("--retrain", action="store_true", help="train again even where a finished run is on record")
    p.add_argument("--runs", default=",".join(RUNS), help="the runs to (re)make; the others' results are kept from "
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
    for name, extra in RUNS.items():
        exp = f"{NAME}_{name}"
        frames = out_dir / f"frames_{name}"
        if name not in todo and name not in previous:
            continue
        if name not in todo:  # kept from an earlier call
            if frame_count(frames) != n:
                print(f"blinks: {name} left out: {frames} does not hold the {n} frames of this call")
                continue
            results["runs"][name] = {**previous[name], "kept_from_an_earlier_call": True}
            curves[name] = measured_openness(frames, train_lms)
            strips[name] = eye_strip(frames, centre, box)
            continue
        ckpt = ROOT / "logs" / exp / "ckpt" / "latest.pt"
        trained = " ".join(["train.py", "--config", str(config), *extra])
        if args.retrain or not is_done(out_dir / f"{exp}.done", trained, ckpt):
            run([py, "train.py", "--config", str(config), "--expname", exp, *extra], log)
            (out_dir / f"{exp}.done").write_text(trained)
        run([py, "evaluate.py", "--config", str(config), "--expname", exp, "--no_video"], log)
        measured, open_render = None, None
        for blink, folder in (("natural", frames), ("none", out_dir / f"frames_{name}_open")):
            if blink == "none" and name == "noeyes":
                continue  # the same render with the eyes held open: for the runs with the eye input
            marker, cmd = folder.with_suffix(".done"), [
                py, "render.py", "--config", str(config), "--expname", exp, "--aud", str(speech), "--blink", blink,
                "--blink_seed", str(args.blink_seed), "--img_size", str(args.render_size), "--save_frames",
                str(folder), "--out", str(folder.with_suffix(".mp4"))]
            rendered = " ".join(cmd[1:]) + f" ({args.seconds} s)"
            if not (is_done(marker, rendered, ckpt) and frame_count(folder) == n):
                shutil.rmtree(folder, ignore_errors=True)
                run(cmd, log)
                assert frame_count(folder) == n, folder
                marker.write_text(rendered)
            if blink == "natural":
                measured = measured_openness(folder, train_lms)
            else:
                open_render = measured_openness(folder, train_lms)
        ev = json.loads((ROOT / "logs" / exp / "eval" / "metrics.json").read_text())
        run_dir = ROOT / "logs" / exp
        rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
        results["runs"][name] = {
            "expname": exp, "iterations": rows[-1].get("iter"), "train_seconds": rows[-1].get("time_s"),
            "evaluation": {k: ev.get(k) for k in ("frames", "psnr", "ssim", "miou", "region_psnr")},
            "render": follow(requested, measured, open_render)}
        curves[name] = measured
        strips[name] = eye_strip(frames, centre, box)
    return write_results(args.out, results, lambda png: draw(png, results, curves, strips))


if __name__ == "__main__":
    sys.exit(main())
