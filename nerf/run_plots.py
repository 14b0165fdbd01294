"""The training curves of a run: logs/<expname>/curves.png, written when train.py ends."""
from __future__ import annotations

import json
from pathlib import Path

from common.constants import class_palette
from common.fileio import atomic_path


def plot_run(run_dir: Path) -> None:
    """logs/<expname>/curves.png: validation PSNR / mIoU and the sampler's class shares over iterations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = run_dir / "metrics.jsonl"
    recs = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []
    if not recs:
        return
    its = [r["iter"] for r in recs]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(its, [r["psnr"] for r in recs], "o-", label="val PSNR (dB)")
    ax1.set_xlabel("iteration")
    ax1.legend(loc="upper left")
    if recs[-1].get("miou") is not None:
        ax1b = ax1.twinx()
        ax1b.plot(its, [r["miou"] for r in recs], "s--", color="tab:orange", label="mIoU")
        ax1b.legend(loc="lower right")
    ax2.set_prop_cycle(color=class_palette(len(recs[-1].get("shares", {}))) / 255.0)  # the classes' own colours
    for name in recs[-1].get("shares", {}):
        ax2.plot(its, [r["shares"].get(name, 0.0) for r in recs], label=name)
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("share of rays")
    if recs[-1].get("shares"):
        ax2.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(run_dir / "curves.png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
