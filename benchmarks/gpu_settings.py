#!/usr/bin/env python
"""Which render settings suit a GPU: training steps and frames timed under several settings, in one process
-> <out_dir>/gpu_settings.json and profile_*.txt (torch.profiler's top operators of one training step and one frame).

    python benchmarks/gpu_settings.py --config output/demo/configs/sample.txt --basedir output/demo/logs \\
        --expname gpu_amp_false [--device cuda] [--out_dir D]

The CPU-tuned defaults (rays in chunks of 4096, density in segments of 16 samples with early termination, field
queries of at most 32768 points) launch many small kernels per frame; on a GPU a launch costs about as much as a
small kernel's work. `auto` is what nerf/speed.py picks on the device (0 for the three keys); the json in
benchmarks/results/ was measured before it existed, when the CPU values were everyone's default (named `default`
there). Each setting is a list of config keys; `--expname` is a trained run (for the frames), the
training steps use the run's config with the same keys.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BIG = ["--max_points", str(2**23)]
CPU_VALUES = ["--render_chunk", "4096", "--march_segment", "16", "--max_points", "32768"]  # the defaults before speed.py
TRAIN_SETTINGS = {
    "cpu_values": CPU_VALUES,
    "auto": [],
    "reference": ["--render_path", "reference", *CPU_VALUES],
    "fast_seg128_big": ["--march_segment", "128", *BIG],
    "fast_seg32_big": ["--march_segment", "32", *BIG],
}
RENDER_SETTINGS = {
    "reference": ["--render_path", "reference", *CPU_VALUES],
    "cpu_values": CPU_VALUES,
    "auto": [],
    "reference_chunk64k": ["--render_path", "reference", "--render_chunk", "65536"],
    "fast_chunk64k_seg128_big": ["--render_chunk", "65536", "--march_segment", "128", *BIG],
    "fast_chunk64k_seg32_big": ["--render_chunk", "65536", "--march_segment", "32", *BIG],
    "fast_chunk256k_seg32_big": ["--render_chunk", "262144", "--march_segment", "32", *BIG],
}


def sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def profile_table(fn, dev, path: Path) -> None:
    """torch.profiler of one call of fn -> path: top operators by self CPU time and by device time."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        sync(dev)
    ka = prof.key_averages()
    text = ka.table(sort_by="self_cpu_time_total", row_limit=25)
    if dev.type == "cuda":
        text += "\n" + ka.table(sort_by="self_cuda_time_total", row_limit=25)
    n_kernels = sum(e.count for e in ka if e.device_type.name == "CUDA") if dev.type == "cuda" else 0
    path.write_text(f"device kernels launched: {n_kernels}\n" + text)


def time_training(base: list[str], keys: list[str], steps: int, prof_path: Path | None) -> dict:
    from nerf.config import parse
    from nerf.trainer import Trainer

    tr = Trainer(parse([*base, *keys, "--time_budget", "0"]))
    for it in range(1, 6):  # warm-up: allocator, kernels, the occupancy grid's first updates
        tr.step(it)
    sync(tr.device)
    t0 = time.perf_counter()
    for it in range(6, 6 + steps):
        logs = tr.step(it)
    sync(tr.device)
    ms = (time.perf_counter() - t0) / steps * 1000
    if prof_path is not None:
        profile_table(lambda: tr.step(6 + steps), tr.device, prof_path)
    return {"ms_per_step": round(ms, 2), "iters_per_s": round(1000 / ms, 2), "loss": round(logs["loss"], 5)}


def time_frames(base: list[str], keys: list[str], size: int, frames: int, prof_path: Path | None):
    import torch

    from benchmarks.render_speed import upscaled_camera
    from nerf.runs import load_run

    run = load_run([*base, *keys, "--img_size", str(size)])
    if run.ds.h < size and run.ds.w < size:
        run.ds = upscaled_camera(run.ds, size)
    code = run.model.condition(torch.zeros(1, run.model.code_dim, device=run.device), None)[0]
    c2w = run.ds.c2w[0]
    out = run.pipeline.render_frame(run.ds, c2w, code, semantics=False)  # warm-up
    sync(run.device)
    t0 = time.perf_counter()
    for _ in range(frames):
        out = run.pipeline.render_frame(run.ds, c2w, code, semantics=False)
    sync(run.device)
    fps = frames / (time.perf_counter() - t0)
    if prof_path is not None:
        profile_table(lambda: run.pipeline.render_frame(run.ds, c2w, code, semantics=False), run.device, prof_path)
    mem = torch.cuda.max_memory_allocated(run.device) / 2**20 if run.device.type == "cuda" else 0.0
    return {"fps": round(fps, 3), "peak_mb_so_far": round(mem, 1)}, out["rgb"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--basedir", required=True)
    p.add_argument("--expname", required=True, help="a trained run (for the frames)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--out_dir", default=str(ROOT / "benchmarks" / "results" / "gpu_settings"))
    args = p.parse_args(argv)
    from nerf import metrics

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = ["--config", args.config, "--basedir", args.basedir, "--device", args.device]
    res: dict = {"train": {}, "render": {}, "parity_psnr": {},
                 "command": "python benchmarks/gpu_settings.py " + " ".join(sys.argv[1:] if argv is None else argv)}

    def save():
        (out / "gpu_settings.json").write_text(json.dumps(res, indent=1))

    for name, keys in TRAIN_SETTINGS.items():
        prof = out / f"profile_train_{name}.txt" if name in ("cpu_values", "auto") else None
        try:
            res["train"][name] = time_training([*base, "--expname", "settings_probe"], keys, args.steps, prof)
        except Exception as e:  # noqa: BLE001 - record and go on to the next setting
            res["train"][name] = {"error": repr(e)[:300]}
        print("train", name, res["train"][name], flush=True)
        save()
    for size in args.sizes:
        ref = None
        for name, keys in RENDER_SETTINGS.items():
            prof = out / f"profile_frame_{name}_{size}.txt" if name in ("cpu_values", "auto") else None
            try:
                r, img = time_frames([*base, "--expname", args.expname], keys, size, args.frames, prof)
                ref = img if name == "reference" else ref
                if ref is not None and name != "reference":
                    res["parity_psnr"][f"{name}_{size}"] = round(metrics.psnr(img, ref), 2)
            except Exception as e:  # noqa: BLE001
                r = {"error": repr(e)[:300]}
            res["render"].setdefault(name, {})[str(size)] = r
            print("render", size, name, r, flush=True)
            save()
    plot(res, out / "gpu_settings.png")
    return 0


def plot(res: dict, png: Path) -> None:
    """Frames per second by setting and size (left), training iterations per second by setting (right)."""
    import numpy as np

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.results_io import save_figure

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    names = [n for n in res["render"] if all("fps" in v for v in res["render"][n].values())]
    sizes = sorted({s for n in names for s in res["render"][n]}, key=int)
    for k, size in enumerate(sizes):
        ax.bar(np.arange(len(names)) + k * 0.4, [res["render"][n].get(size, {}).get("fps", 0) for n in names], 0.4,
               label=f"{size} px")
    ax.set_xticks(np.arange(len(names)) + 0.2, names, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("frames per second")
    ax.legend()
    ax.set_title("render")
    train = {n: v["iters_per_s"] for n, v in res["train"].items() if "iters_per_s" in v}
    ax2.bar(range(len(train)), list(train.values()))
    ax2.set_xticks(range(len(train)), list(train), rotation=30, ha="right", fontsize=7)
    ax2.set_ylabel("iterations per second")
    ax2.set_title("training (gpu preset)")
    save_figure(fig, png)


if __name__ == "__main__":
    sys.exit(main())
