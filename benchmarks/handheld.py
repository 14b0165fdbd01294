#!/usr/bin/env python
"""A hand-held camera, simulated on a real clip: does step 3's virtual tripod find and undo its motion?

    python benchmarks/handheld.py [--name wolfgang] [--seed 0] [--train]

1. `shake_video`: every frame of dataset/vids/<name>.mp4 moved by a smooth random similarity (a hand's sway: shifts
   of a few per cent of the frame, a degree or two of roll, a per cent or two of zoom; sums of slow sines with a
   little jitter), zoomed in by ZOOM so that no frame shows an edge -> dataset/vids/<name>_shake.mp4, the true
   motion beside it (<name>_shake.json).
2. `bash process_data.sh` on the clip as shot by its still camera (<name>), on the shaken copy (<name>_shake: step 3
   stabilises it) and on the shaken copy with `--stabilise off` (<name>_shake_off); the camera path step 3 found
   against the true one (the error of each frame's corners, pixels); the background's drift over each dataset's
   frames as step 6 measures it (it warns above 2% of the frame).
3. With --train: `python train.py` (the device preset, no flags) and `python evaluate.py` on all three.
Writes benchmarks/results/handheld.json and handheld.png (each dataset's frames; held-out ground truth | render).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

from benchmarks.results_io import run_stage, save_figure, write_results  # noqa: E402

ZOOM = 1.12  # the shaken frames are cut from the frame zoomed by this much: no edge shows
SHIFT = 0.025  # sway amplitude, share of the frame width (per axis)
ROLL_DEG = 1.5
SCALE = 0.015


def shake_params(n: int, seed: int, fps: float = 25.0) -> np.ndarray:
    """[n,4] per frame (dx, dy as shares of the width, roll degrees, log scale): three slow sines (0.15-1.2 Hz) per
    parameter with random phases, plus a little frame-to-frame jitter."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fps
    amps = np.array([SHIFT, SHIFT, ROLL_DEG, SCALE])
    out = np.zeros((n, 4))
    for j, amp in enumerate(amps):
        for _ in range(3):
            out[:, j] += amp / 2 * np.sin(2 * np.pi * rng.uniform(0.15, 1.2) * t + rng.uniform(0, 2 * np.pi))
        out[:, j] += amp * 0.05 * rng.standard_normal(n)
    return out


def shake_matrix(p: np.ndarray, width: int, height: int) -> np.ndarray:
    """[3,3]: source pixels -> the shaken frame's pixels for one frame's parameters p (4,): about the centre, zoomed
    by ZOOM, then swayed."""
    c = np.array([[1, 0, width / 2], [0, 1, height / 2], [0, 0, 1.0]])
    a, s = np.radians(p[2]), ZOOM * np.exp(p[3])
    rot = np.array([[s * np.cos(a), -s * np.sin(a), p[0] * width], [s * np.sin(a), s * np.cos(a), p[1] * width],
                    [0, 0, 1]])
    return c @ rot @ np.linalg.inv(c)


def shake_video(src: Path, dst: Path, seed: int) -> np.ndarray:
    """Write the shaken copy of src (25 fps, display size, its audio) to dst; returns the true [N,3,3] per frame."""
    from common.ffmpeg import FrameStream, probe
    from data_util.video import display_filters, display_size
    from nerf.mp4 import Mp4Writer

    info = probe(src)
    w, h = display_size(info["width"], info["height"], info["sar"])
    w, h = 2 * (w // 2), 2 * (h // 2)
    n = int(info["duration"] * 25) + 2
    params = shake_params(n, seed)
    writer = Mp4Writer(dst, w, h, crf=16, audio=src if info["has_audio"] else None)
    mats = []
    for k, frame in enumerate(FrameStream(["-i", str(src), "-an", "-vf", f"{display_filters(info)},scale={w}:{h}"],
                                            w, h)):
        m = shake_matrix(params[k], w, h)
        writer.write(cv2.warpAffine(frame, m[:2], (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
        mats.append(m)
    writer.close()
    mats = np.array(mats)
    dst.with_suffix(".json").write_text(json.dumps({"seed": seed, "size": [w, h], "matrices": mats.tolist()}))
    return mats


def corner_error(found: np.ndarray, true: np.ndarray, ref: int, width: int, height: int) -> np.ndarray:
    """[N] pixels: the largest error of a frame's corners between the found motion (found [N,3,3]: the reference's
    background -> frame k) and the true one (true [N,3,3]: source -> frame k, so the reference -> frame k is
    true_k true_ref^-1)."""
    from data_util.camera_motion import displacement

    rel = true @ np.linalg.inv(true[ref])
    return np.array([displacement((np.linalg.inv(r) @ f)[:2], height, width) for f, r in zip(found, rel)])


def residual_drift(data: Path) -> float:
    """The background's drift over the dataset's frames as step 6 measures it (pixels, the largest)."""
    from data_util.background import MARGIN, background_mask
    from data_util.camera_motion import background_motion, drift
    from data_util.landmarks import read_rgb

    paths = sorted((data / "ori_imgs").glob("*.jpg"), key=lambda p: int(p.stem))
    picks = np.linspace(0, len(paths) - 1, min(64, len(paths))).round().astype(int)
    frames = [read_rgb(paths[k]) for k in picks]
    masks = [background_mask(cv2.imread(str(data / "parsing" / f"{paths[k].stem}.png"), cv2.IMREAD_UNCHANGED),
                             int(round(MARGIN * f.shape[1]))) for k, f in zip(picks, frames)]
    h, w = frames[0].shape[:2]
    return float(np.nanmax(drift(*background_motion(frames, masks), h, w)))


def path_numbers(found: np.ndarray, true: np.ndarray, meta: dict) -> dict:
    """The found camera path against the true one: median and largest corner error, the largest true shift."""
    w, h, ref = *meta["display_size"], meta["stabilised"]["reference_frame"]
    err = corner_error(found, true, ref, w, h)
    shift = corner_error(np.repeat(np.eye(3)[None], len(true), 0), true, ref, w, h)
    return {"path_error_px_median": round(float(np.median(err)), 2), "path_error_px_max": round(float(err.max()), 2),
            "true_shift_px_max": round(float(shift.max()), 1)}


def train_and_evaluate(name: str, logs: Path) -> dict:
    """train.py with no flags (the device preset), evaluate.py -> its metrics.json; a run whose metrics are there
    already is not trained again (delete logs/<name>/eval to)."""
    metrics = ROOT / "logs" / name / "eval" / "metrics.json"
    if not metrics.is_file():
        run_stage([sys.executable, "train.py", "--config", f"configs/{name}.txt"], logs / f"{name}_train.log", ROOT,
                  "handheld")
    if not (metrics.parent / "side_by_side.mp4").is_file():
        run_stage([sys.executable, "evaluate.py", "--config", f"configs/{name}.txt"], logs / f"{name}_eval.log", ROOT,
                  "handheld")
    return json.loads(metrics.read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="wolfgang")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--audio", type=Path, help="speech for a clip whose own track is silent (--audio of process_data)")
    p.add_argument("--train", action="store_true", help="also train and evaluate the three datasets")
    p.add_argument("--out", type=Path, default=RESULTS / "handheld.json")
    args = p.parse_args()
    vids = ROOT / "dataset" / "vids"
    shaken = vids / f"{args.name}_shake.mp4"
    true = shake_video(vids / f"{args.name}.mp4", shaken, args.seed)
    logs = ROOT / "logs" / "handheld"
    logs.mkdir(parents=True, exist_ok=True)
    audio = ["--audio", str(args.audio)] if args.audio else []
    results: dict = {"command": " ".join(sys.argv), "seed": args.seed, "zoom": ZOOM}
    for name, clip, extra in ((args.name, vids / f"{args.name}.mp4", []), (f"{args.name}_shake", shaken, []),
                              (f"{args.name}_shake_off", shaken, ["--stabilise", "off"])):
        secs = run_stage(["bash", "process_data.sh", name, "--video", str(clip), *audio, *extra],
                         logs / f"{name}_process.log", ROOT, "handheld")
        data = ROOT / "dataset" / name
        meta = json.loads((data / "video_meta.json").read_text())
        entry = {"video": clip.name, "options": extra, "process_s": round(secs, 1), "stabilised": meta.get("stabilised"),
                 "residual_drift_px": round(residual_drift(data), 2), "frame_size": meta["size"]}
        if (data / "camera_path.npy").is_file():
            entry.update(path_numbers(np.load(data / "camera_path.npy"), true[:meta["n_frames"]], meta))
        if args.train:
            entry["eval"] = train_and_evaluate(name, logs)
        results[name] = entry
    return write_results(args.out, results, lambda png: draw(args.name, png))


def draw(name: str, out: Path) -> None:
    """Per dataset (as shot by the still camera, hand-held as shot, hand-held stabilised): four of its frames, and two
    held-out frames, ground truth | render, where it was trained."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.real_footage import side_by_side_frames

    rows = ((name, "still camera"), (f"{name}_shake_off", "hand-held, --stabilise off"),
            (f"{name}_shake", "hand-held, stabilised (default)"))
    fig, axes = plt.subplots(3, 2, figsize=(14, 7.5), gridspec_kw={"width_ratios": [4, 4]})
    for row, (key, title) in enumerate(rows):
        paths = sorted((ROOT / "dataset" / key / "ori_imgs").glob("*.jpg"), key=lambda p: int(p.stem))
        picks = np.linspace(0, len(paths) - 1, 4).round().astype(int)
        axes[row, 0].imshow(np.concatenate([cv2.resize(cv2.cvtColor(cv2.imread(str(paths[k])), cv2.COLOR_BGR2RGB),
                                                       (256, 256), interpolation=cv2.INTER_AREA) for k in picks], 1))
        axes[row, 0].set_title(f"{title}: frames {', '.join(map(str, picks))}", fontsize=9)
        video = ROOT / "logs" / key / "eval" / "side_by_side.mp4"
        if video.is_file():
            metrics = json.loads((video.parent / "metrics.json").read_text())
            axes[row, 1].imshow(np.concatenate(side_by_side_frames(video, 2), 1))
            axes[row, 1].set_title(f"held out, ground truth | render: {metrics['psnr']:.2f} dB, background "
                                   f"{metrics['region_psnr']['background']:.1f}, torso "
                                   f"{metrics['region_psnr']['torso']:.1f}", fontsize=9)
        for ax in axes[row]:
            ax.axis("off")
    save_figure(fig, out)


if __name__ == "__main__":
    sys.exit(main())
