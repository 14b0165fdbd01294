#!/usr/bin/env python
"""Semantic against uniform ray sampling, paired by seed, from the runs benchmarks/mouth.py recorded.

    python benchmarks/sampler_pairs.py [--results benchmarks/results/mouth24.json]
                                       [--pairs ss2:ss2uniform,defaults:defuniform,eyedirs:eyeuniform] [--no-pool]

A pair `A:B` is two variants of mouth.py that differ only in `sampling`; run `<subject>_A_s<seed>` is paired with
`<subject>_B_s<seed>` (same clip, seed and settings otherwise). Per pair and measure: both arms' values, the mean
difference A - B, its standard deviation over the seeds and a 95% t-interval (scipy), and (unless --no-pool,
for pairs that compare different things) the same over every pair's seeds pooled. Why paired and why many seeds: a mouth number moves 2-2.6 dB between runs whose random streams
differ (benchmarks/NOTES.md, 2026-12-05 sixth session), more than the effect #16 asks to show (1 dB).
Writes benchmarks/results/sampler_pairs.json and .png (each seed's pair joined by a line).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results_io import save_figure, write_results  # noqa: E402

KEYS = ("psnr", "lips", "inner_mouth", "lmd", "lips_told", "inner_mouth_told", "lmd_told")


def paired(runs: list[dict], subject: str, a: str, b: str) -> dict[int, tuple[dict, dict]]:
    """{seed: (run of A, run of B)} for the seeds both variants have."""
    by = {r["expname"]: r for r in runs}
    out = {}
    for r in runs:
        if r["expname"] == f"{subject}_{a}_s{r['seed']}" and f"{subject}_{b}_s{r['seed']}" in by:
            out[r["seed"]] = (r, by[f"{subject}_{b}_s{r['seed']}"])
    return dict(sorted(out.items()))


def difference(a: list[float], b: list[float]) -> dict:
    """Mean of each arm, mean paired difference a - b, its sd and 95% t-interval (None with fewer than 2 pairs)."""
    from scipy import stats

    d = np.asarray(a) - np.asarray(b)
    out = {"n": len(d), "a": [round(v, 3) for v in a], "b": [round(v, 3) for v in b],
           "mean_a": round(float(np.mean(a)), 3), "mean_b": round(float(np.mean(b)), 3),
           "mean_diff": round(float(d.mean()), 3)}
    if len(d) >= 2:
        sd = float(d.std(ddof=1))
        half = float(stats.t.ppf(0.975, len(d) - 1)) * sd / np.sqrt(len(d))
        out |= {"sd_diff": round(sd, 3), "ci95": [round(float(d.mean()) - half, 3), round(float(d.mean()) + half, 3)]}
    return out


def compare(runs: list[dict], subject: str, pairs: list[tuple[str, str]], pool: bool = True) -> dict:
    """Per pair and (pool) pooled: {key: difference(...)} over the seeds with both arms and the key."""
    result, pooled = {}, {k: ([], []) for k in KEYS}
    for a, b in pairs:
        seeds = paired(runs, subject, a, b)
        entry = {"seeds": list(seeds)}
        for k in KEYS:
            both = [(ra[k], rb[k]) for ra, rb in seeds.values() if ra.get(k) is not None and rb.get(k) is not None]
            if both:
                entry[k] = difference([x for x, _ in both], [y for _, y in both])
                pooled[k][0].extend(x for x, _ in both)
                pooled[k][1].extend(y for _, y in both)
        result[f"{a}:{b}"] = entry
    if pool:
        result["pooled"] = {k: difference(*v) for k, v in pooled.items() if v[0]}
    return result


def draw(path: Path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = ("lips", "inner_mouth", "lips_told", "inner_mouth_told", "lmd", "psnr")
    fig, axes = plt.subplots(1, len(shown), figsize=(3 * len(shown), 3.6))
    names = [n for n in result if n != "pooled"]
    for ax, key in zip(axes, shown):
        for j, name in enumerate(names):
            e = result[name].get(key)
            if not e:
                continue
            colour = f"C{j}"
            for x, y in zip(e["a"], e["b"]):
                ax.plot([0, 1], [x, y], "-o", color=colour, alpha=0.6, ms=3)
            ax.plot([], [], "-o", color=colour, label=f"A:B = {name} ({e['n']} seeds)")
        shown_diff = {"pooled": result["pooled"]} if "pooled" in result else {n: result[n] for n in names}
        lines = []
        for name, entry in shown_diff.items():
            p = entry.get(key)
            if p:
                ci = p.get("ci95")
                lines.append(f"{name} A-B {p['mean_diff']:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""))
        ax.set_title("\n".join([key, *lines]), fontsize=7)
        ax.set_xticks([0, 1], ["A", "B"], fontsize=8)
        ax.set_xlim(-0.3, 1.3)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("held-out value (dB; LMD px), A | B of each pair")
    axes[-1].legend(fontsize=7, loc="center left")  # the last panel (PSNR) has room there
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "mouth24.json")
    p.add_argument("--pairs", default="ss2:ss2uniform,defaults:defuniform,eyedirs:eyeuniform")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sampler_pairs.json")
    p.add_argument("--pool", action=argparse.BooleanOptionalAction, default=True,
                   help="also pool the pairs' seeds (for pairs that compare the same thing)")
    args = p.parse_args(argv)
    if not args.results.is_file():
        print(f"error: {args.results}: no such file (benchmarks/mouth.py writes it)", file=sys.stderr)
        return 1
    runs = json.loads(args.results.read_text())["runs"]
    pairs = [tuple(x.split(":")) for x in args.pairs.split(",") if x]
    if any(len(x) != 2 for x in pairs):
        p.error(f"--pairs {args.pairs}: give A:B,C:D")
    subject = args.results.stem
    result = {"command": "python benchmarks/sampler_pairs.py " + " ".join(argv or sys.argv[1:]),
              "results": str(args.results.relative_to(ROOT) if args.results.is_relative_to(ROOT) else args.results),
              **compare(runs, subject, pairs, args.pool)}
    return write_results(args.out, result, lambda png: draw(png, {k: v for k, v in result.items()
                                                                  if isinstance(v, dict)}))


if __name__ == "__main__":
    sys.exit(main())
