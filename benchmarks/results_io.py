"""What every benchmark shares: a matplotlib figure for the plot, writing results/<name>.json + .png, and running
the project's commands as stages."""
from __future__ import annotations

from pathlib import Path
from typing import Callable


def new_figure():
    """(fig, ax) of the benchmarks' plot size, with the non-interactive backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 3.5))


def save_figure(fig, path: Path) -> None:
    """Write the figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    from common.fileio import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def write_results(out: str | Path, results: dict, draw: Callable[[Path], None]) -> int:
    """results -> out (.json), draw(out with .png), print where; returns 0 (the script's exit code)."""
    from common.fileio import save_json

    out = Path(out)
    save_json(out, results)
    draw(out.with_suffix(".png"))
    print(f"-> {out}")
    return 0


def sample_subject(name: str, root: Path, seconds: float, voice: int, seed: int,
                   clip_seconds: float = 12.0) -> tuple[Path, Path, Path]:
    """The stages every sample benchmark starts with: the sample clip of clip_seconds -> dataset/vids/<name>.mp4
    (kept when there), new speech of `seconds` in `voice` -> output/<name>/new_speech.wav, process_data.sh <name>.
    Returns (output folder, its log, the speech file)."""
    import sys

    py, out_dir = sys.executable, root / "output" / name
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / "log.txt"
    video, speech = root / "dataset" / "vids" / f"{name}.mp4", out_dir / "new_speech.wav"
    if not video.is_file():
        run_stage([py, "-m", "sample_data.clip", "--out", str(video), "--seconds", str(clip_seconds)], log, root,
                  name)
    run_stage([py, "-m", "sample_data.speech", "--out", str(speech), "--seconds", str(seconds), "--voice",
               str(voice), "--seed", str(seed)], log, root, name)
    run_stage(["bash", "process_data.sh", name, "--video", str(video)], log, root, name)
    return out_dir, log, speech


def run_stage(cmd: list[str], log: Path, cwd: Path, who: str) -> float:
    """Run one stage in cwd, its output appended to log; exit naming `who` with its code if it fails. Returns
    its wall time in seconds."""
    import subprocess
    import sys
    import time

    print("+ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    with log.open("a") as f:
        f.write("+ " + " ".join(cmd) + "\n")
        f.flush()
        code = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT).returncode
    if code != 0:
        sys.exit(f"{who}: stage failed with exit code {code} (see {log}): {' '.join(cmd)}")
    return time.perf_counter() - t0
