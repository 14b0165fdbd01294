"""`make demo`: the whole job end to end on the bundled sample, everything under output/demo/.

1. make the sample talking clip (sample_data.clip) and a new speech track in another voice,
2. preprocess it (process_data.sh), 3. train briefly (train.py), 4. render the new speech (render.py),
then print the rendered mp4's path.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The CPU preset (nerf/presets.py: 128 px, a smaller hash grid, fewer samples and rays), a shorter run.
CPU_TRAINING = ["--preset", "cpu", "--val_every", "500", "--ckpt_every", "250"]


def run(cmd: list[str]) -> None:
    """Run one stage; stop the demo with its exit code if it fails."""
    print("+ " + " ".join(cmd), flush=True)
    code = subprocess.run(cmd, cwd=HERE).returncode
    if code != 0:
        sys.exit(f"demo: stage failed with exit code {code}: {' '.join(cmd)}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("output/demo"), help="everything is written here")
    p.add_argument("--iters", type=int, default=1500, help="training iterations (short: a demo, not a model)")
    p.add_argument("--size", type=int, default=256, help="sample clip size in pixels")
    p.add_argument("--seconds", type=float, default=12.0, help="sample clip length")
    args = p.parse_args(argv)
    out = args.out
    py = sys.executable
    video = out / "dataset" / "vids" / "sample.mp4"
    speech = out / "new_speech.wav"
    config = out / "configs" / "sample.txt"
    movie = out / "sample_new_speech.mp4"

    if not video.exists():
        run([py, "-m", "sample_data.clip", "--out", str(video), "--size", str(args.size),
             "--seconds", str(args.seconds)])
    if not speech.exists():
        run([py, "-m", "sample_data.speech", "--out", str(speech), "--seconds", "4", "--voice", "1", "--seed", "7"])
    run(["bash", "process_data.sh", "sample", "--root", str(out / "dataset"), "--config_dir", str(out / "configs")])
    resume = ["--resume"] if (out / "logs" / "sample" / "ckpt" / "latest.pt").is_file() else []
    run([py, "train.py", "--config", str(config), "--basedir", str(out / "logs"), "--iters", str(args.iters),
         *resume, *CPU_TRAINING])
    run([py, "render.py", "--config", str(config), "--basedir", str(out / "logs"), "--aud", str(speech),
         "--out", str(movie)])
    print(f"\nrendered video: {movie.resolve()}")


if __name__ == "__main__":
    main()
