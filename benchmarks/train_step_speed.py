#!/usr/bin/env python
"""Training iterations per second: this checkout against an earlier commit (today's code when the change was made)
and against its own reference render path, side by side -> benchmarks/results/train_step_speed.json and .png.

    python -m benchmarks.train_step_speed [--baseline 84aa09c] [--config configs/example.txt] [--iters 40]
                                          [--rounds 3] [--threads 2]

`--variant NAME KEYS` adds a contender: this checkout with more config keys. Each contender is a worker process
that builds a Trainer from the same config (the device preset applies: the cpu preset on a CPU), trains `warmup`
iterations (the occupancy grid exists after 16), then waits. The main process gives the workers turns of `iters`
iterations, `rounds` times, so that a noisy shared machine slows all of them alike; a worker times only its
iterations. The baseline runs from a `git worktree` of the commit (removed after).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

from benchmarks.results_io import new_figure, save_figure, write_results  # noqa: E402


def worker(root: str, argv: list[str], warmup: int) -> None:
    """In the contender's checkout: build a Trainer, warm up, then answer each stdin line N with the seconds N
    further iterations took."""
    sys.path.insert(0, root)
    import torch

    from nerf.config import parse
    from nerf.trainer import Trainer

    tr = Trainer(parse(argv))
    torch.manual_seed(0)
    it = 0
    for it in range(1, warmup + 1):
        tr.step(it)
    print("ready", flush=True)
    for line in sys.stdin:
        t0 = time.perf_counter()
        for _ in range(int(line)):
            it += 1
            tr.step(it)
        print(f"seconds {time.perf_counter() - t0}", flush=True)


def start(root: Path, argv: list[str], warmup: int) -> subprocess.Popen:
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.train_step_speed import worker; " \
           f"worker({str(root)!r}, {argv!r}, {warmup})"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:  # the trainer prints its preset first
        if line.strip() == "ready":
            return proc
    raise RuntimeError(f"{root}: the training worker did not start ({' '.join(argv)})")


def plot(path: Path, its: dict[str, float]) -> None:
    fig, ax = new_figure()
    colours = ["tab:gray", "tab:orange", "tab:blue", "tab:green", "tab:red", "tab:purple"]
    names = list(its)[::-1]  # horizontal bars: long names stay readable; the first contender on top
    ax.barh(names, [its[n] for n in names], color=colours[: len(its)][::-1])
    for k, n in enumerate(names):
        ax.text(its[n], k, f" {its[n]:.2f}", va="center")
    ax.set_xlabel("training iterations per second")
    ax.set_title("training speed, one run, turns interleaved")
    save_figure(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", default="84aa09c", help="commit to compare against ('' for none)")
    p.add_argument("--config", default="configs/example.txt")
    p.add_argument("--iters", type=int, default=40, help="iterations per turn")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variant", nargs=2, action="append", default=[], metavar=("NAME", "KEYS"),
                   help="another contender: this checkout with these config keys (e.g. 'one segment' "
                   "'--march_segment 48')")
    p.add_argument("--out", default=str(RESULTS / "train_step_speed.json"))
    args = p.parse_args(argv)
    config = str(Path(args.config).resolve())
    common = ["--config", config, "--threads", str(args.threads), "--device", "cpu", "--basedir",
              tempfile.mkdtemp(prefix="train_step_speed_")]
    contenders = {"reference path": (ROOT, [*common, "--expname", "reference", "--render_path", "reference"]),
                  "fast path (default)": (ROOT, [*common, "--expname", "fast", "--render_path", "fast"]),
                  **{name: (ROOT, [*common, "--expname", f"variant{k}", *keys.split()])
                     for k, (name, keys) in enumerate(args.variant)}}
    tree = None
    if args.baseline:
        tree = Path(tempfile.mkdtemp(prefix="baseline_")) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.baseline],
                       check=True, capture_output=True)
        (tree / "dataset").symlink_to(ROOT / "dataset")
        contenders = {f"baseline {args.baseline}": (tree, [*common, "--expname", "baseline"]), **contenders}
    procs = {}
    try:
        procs = {k: start(root, a, args.warmup) for k, (root, a) in contenders.items()}
        seconds = {k: 0.0 for k in procs}
        for r in range(args.rounds):
            for k, proc in procs.items():
                proc.stdin.write(f"{args.iters}\n")
                proc.stdin.flush()
                seconds[k] += next(float(ln.split()[1]) for ln in proc.stdout if ln.startswith("seconds "))
            done = (r + 1) * args.iters
            print(f"round {r + 1}: " + ", ".join(f"{k} {done / s:.2f} it/s" for k, s in seconds.items()), flush=True)
    finally:
        for proc in procs.values():
            proc.kill()
        if tree is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    its = {k: args.rounds * args.iters / s for k, s in seconds.items()}
    fast = its["fast path (default)"]
    res = {"iterations_per_second": {k: round(v, 3) for k, v in its.items()},
           "fast_over": {k: round(fast / v, 3) for k, v in its.items() if k != "fast path (default)"},
           "iters_timed_each": args.rounds * args.iters, "warmup": args.warmup, "threads": args.threads,
           "config": args.config, "baseline": args.baseline, "command": "python -m benchmarks.train_step_speed " +
           " ".join(argv if argv is not None else sys.argv[1:])}
    print(json.dumps(res, indent=1))
    return write_results(Path(args.out), res, lambda png: plot(png, its))


if __name__ == "__main__":
    sys.exit(main())
