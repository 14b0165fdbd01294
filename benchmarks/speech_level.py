#!/usr/bin/env python
"""Does the rendered mouth depend on how loud the new speech was recorded? render.py's `--loudness match | keep`.

    python benchmarks/speech_level.py --config configs/mouth24.txt --expname mouth24_gate_s0 \\
        --aud output/mouth24/new_speech.wav [--gains=-12,8]

The speech is rendered (training poses, eyes open) as recorded and scaled by each gain (16-bit, clipped at full
scale as a recorder would), once with its features at the subject's loudness (`match`, the default) and once at its
own level (`keep`); the landmark back-end measures the mouth opening on every rendered frame. Writes
benchmarks/results/speech_level.json (each case's applied gain, mean opening, r against the render as recorded, the
per-frame openings) and speech_level.png.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results_io import new_figure, save_figure, write_results  # noqa: E402


def scaled_copy(wav: np.ndarray, gain_db: float, path: Path) -> Path:
    """wav float [T] 16 kHz times gain_db, as 16-bit PCM clipped at full scale -> path."""
    from scipy.io import wavfile

    pcm = np.clip(wav * 10 ** (gain_db / 20), -1, 1)
    wavfile.write(path, 16000, np.round(pcm * 32767).astype(np.int16))
    return path


def render_openings(run, aud: Path, loudness: str) -> tuple[np.ndarray, float]:
    """Mouth opening [N] measured on the frames run renders for aud (NaN where no face), and the gain applied (dB)."""
    from nerf.evaluation import mouth_series
    from nerf.features import SpeechFeatures
    from nerf.mp4 import to_uint8
    from nerf.render_video import iter_speech_frames, render_poses

    speech = SpeechFeatures(aud, run.ds.root, run.ds.aud_dim, loudness)
    poses, frames = render_poses(run, "train", speech.n)
    imgs = [to_uint8(r["rgb"]) for r in iter_speech_frames(run, speech, poses, semantics=False, frames=frames)]
    return np.asarray(mouth_series(imgs)["opening"], np.float64), speech.gain_db


def draw(results: dict) -> Callable[[Path], None]:
    """The plot of results as write_results takes it: the rendered mouth opening over time, one line per case."""
    def _draw(path: Path) -> None:
        fig, ax = new_figure()
        for case in results["cases"]:
            colour = "k" if case["gain_db"] == 0 else ("tab:blue" if case["gain_db"] < 0 else "tab:red")
            t = np.arange(len(case["opening"])) / 25
            ax.plot(t, [np.nan if v is None else v for v in case["opening"]], color=colour,
                    ls="-" if case["loudness"] == "match" else ":", lw=1.2,
                    label=f"{case['name']}: mean {case['mean_opening']:.3f}")
        ax.set_xlabel("seconds of new speech")
        ax.set_ylabel("mouth opening on the render")
        ax.set_title(f"--loudness match (solid) / keep (dotted): one speech at several recording levels "
                     f"({results['expname']})", fontsize=9)
        ax.legend(fontsize=7, ncol=2)
        fig.set_size_inches(11, 4)
        save_figure(fig, path)
    return _draw


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--expname", default=None)
    p.add_argument("--aud", required=True, help="new speech (any audio file)")
    p.add_argument("--gains", default="-12,8", help="dB to scale the speech by, besides 0")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "speech_level.json"))
    a = p.parse_args(argv)
    from common.audio import load_audio
    from nerf.runs import load_run

    run = load_run(["--config", a.config] + (["--expname", a.expname] if a.expname else []))
    wav = load_audio(a.aud)
    cases, base = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for gain in [0.0] + [float(g) for g in a.gains.split(",")]:
            aud = scaled_copy(wav, gain, Path(tmp) / f"speech_{gain:+g}dB.wav")
            for mode in (("match",) if gain == 0 else ("match", "keep")):
                opening, applied = render_openings(run, aud, mode)
                base = opening if base is None else base
                ok = np.isfinite(opening) & np.isfinite(base)
                cases.append({"name": "as recorded" if gain == 0 else f"{gain:+g} dB, {mode}", "gain_db": gain,
                              "loudness": mode, "applied_db": round(applied, 2),
                              "mean_opening": round(float(np.nanmean(opening)), 4),
                              "r_vs_recorded": round(float(np.corrcoef(opening[ok], base[ok])[0, 1]), 4),
                              "opening": [None if not np.isfinite(v) else round(float(v), 4) for v in opening]})
                print(f"{cases[-1]['name']}: gain applied {applied:+.1f} dB, mean opening "
                      f"{cases[-1]['mean_opening']:.3f}, r {cases[-1]['r_vs_recorded']:.3f}", flush=True)
    results = {"command": "python benchmarks/speech_level.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "expname": run.run_dir.name, "aud": str(a.aud), "cases": cases}
    return write_results(a.out, results, draw(results))


if __name__ == "__main__":
    sys.exit(main())
