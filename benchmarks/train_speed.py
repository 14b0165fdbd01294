#!/usr/bin/env python
"""Training speed: `mlp` (AD-NeRF's network and sampling) vs `hash`, same data and rays per batch, validation PSNR
against training time -> benchmarks/results/train_speed.json and train_speed.png.

    python benchmarks/train_speed.py [--config configs/example.txt] [--budget 1200] [--budget_hash 300] [--device cpu]
                                     [--reuse hash=acc_hash]   # take an existing run logs/<expname>/ as is

Each backbone trains with `train.py --time_budget <budget>` (training time only: validation renders are not
counted) and validates every --val_every_<backbone> iterations on the same validation frames. From the
runs' metrics.jsonl: `time_to_psnr` {backbone: {dB: seconds of training to first reach it, or null}} for 22, 24
and 26 dB, and `ratio` = the time mlp took to reach its best PSNR / the time hash took to reach that same PSNR.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

from benchmarks.results_io import new_figure, save_figure, write_results  # noqa: E402
THRESHOLDS = (22.0, 24.0, 26.0)


def read_curve(run_dir: Path) -> list[dict]:
    """[{iter, time_s, psnr}] validation records of a run, in order."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path}: not found (did the run fail?)")
    recs = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return [{"iter": r["iter"], "time_s": r["time_s"], "psnr": r["psnr"]} for r in recs if "psnr" in r]


def time_to(curve: list[dict], db: float) -> float | None:
    """Training seconds at the first validation with PSNR >= db (None if never)."""
    return next((r["time_s"] for r in curve if r["psnr"] >= db), None)


def train(backbone: str, expname: str, args: argparse.Namespace, val_every: int) -> None:
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", args.config, "--backbone", backbone,
           "--expname", expname, "--basedir", args.basedir, "--time_budget", str(args.budgets[backbone]),
           "--iters", "1000000", "--lr_decay_iters", str(args.lr_decay_iters.get(backbone, 250000)),
           "--val_every", str(val_every), "--ckpt_every", str(10 * val_every), "--device", args.device,
           *args.extra]
    print("+ " + " ".join(cmd), flush=True)
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:
        raise SystemExit(f"training {backbone} failed")


def plot(path: Path, curves: dict[str, list[dict]]) -> None:
    fig, ax = new_figure()
    for bb, c in curves.items():
        ax.plot([r["time_s"] for r in c], [r["psnr"] for r in c], marker=".", label=bb)
    for db in THRESHOLDS:
        ax.axhline(db, color="gray", lw=0.5, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("validation PSNR (dB)")
    ax.set_title("time to quality")
    ax.legend()
    save_figure(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/example.txt", help="data, model and ray settings shared by both")
    p.add_argument("--budget", type=float, default=1200.0, help="training seconds of the mlp run")
    p.add_argument("--budget_hash", type=float, default=0.0, help="training seconds of the hash run (0: --budget; "
                   "it only has to reach mlp's final PSNR)")
    p.add_argument("--device", default="auto")
    p.add_argument("--basedir", default="logs")
    p.add_argument("--val_every_hash", type=int, default=250)
    p.add_argument("--val_every_mlp", type=int, default=25)
    p.add_argument("--reuse", action="append", default=[], metavar="BACKBONE=EXPNAME",
                   help="use this finished run of logs/ instead of training the backbone again")
    p.add_argument("--out", default=str(RESULTS / "train_speed.json"))
    args, args.extra = p.parse_known_args(argv)  # the rest goes to train.py (e.g. --n_rand 512)
    budget_iters = {"hash": 6000, "mlp": 300}  # roughly what the CPU does in 20 minutes: lr falls 10x over it
    args.budgets = {"mlp": args.budget, "hash": args.budget_hash or args.budget}
    args.lr_decay_iters = {bb: int(n * args.budgets[bb] / 1200.0) for bb, n in budget_iters.items()}
    reuse = dict(r.split("=", 1) for r in args.reuse)
    curves = {}
    for bb in ("mlp", "hash"):
        expname = reuse.get(bb, f"speed_{bb}")
        if bb not in reuse:
            train(bb, expname, args, getattr(args, f"val_every_{bb}"))
        curves[bb] = read_curve(Path(args.basedir) / expname)
    target = max(r["psnr"] for r in curves["mlp"])
    t_mlp, t_hash = time_to(curves["mlp"], target), time_to(curves["hash"], target)
    res = {"time_to_psnr": {bb: {f"{db:g}": time_to(c, db) for db in THRESHOLDS} for bb, c in curves.items()},
           "ratio": (t_mlp / t_hash) if t_hash else None,
           "ratio_target_psnr": target, "ratio_times": {"mlp": t_mlp, "hash": t_hash},
           "final_psnr": {bb: c[-1]["psnr"] for bb, c in curves.items()},
           "curves": curves, "budget_s": args.budgets, "config": args.config, "extra_args": args.extra,
           "reused": reuse, "note": "time_s is training time (validation excluded); ratio = mlp time to its best "
           "PSNR / hash time to that PSNR (null: hash never reached it)"}
    print(json.dumps({k: res[k] for k in ("time_to_psnr", "ratio", "ratio_target_psnr", "final_psnr")}, indent=1))
    return write_results(args.out, res, lambda png: plot(png, curves))


if __name__ == "__main__":
    sys.exit(main())
