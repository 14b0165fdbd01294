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
