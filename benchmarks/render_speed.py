#!/usr/bin/env python
"""Render speed (frames per second) of each backbone at several image sizes -> benchmarks/results/render_speed.json
and render_speed.png.

    python benchmarks/render_speed.py [--device cpu] [--sizes 128 256] [--backbones hash mlp] [--config C]
                                      [--expnames RUN1 RUN2 --basedir logs]   # time trained runs instead

A trained run is timed with both render paths at each size, in turn, `--rounds` times (`render_path`: `reference`,
today's path kept as the reference, and `fast`, the default; nerf/marching.py): fps of each (the median over the
rounds), their ratio (`fast_over_reference`: the median of the rounds' ratios; `..._rounds`: each round's),
the PSNR of the fast path's timed frame against the reference's (`parity_psnr`), and the validation PSNR of each
path on `--val_frames` held-out frames at the training size (`val_psnr`). With --compile, also `fast+compile`
(compile_field: torch.compile of the field); with --torch_kernels, also `fast+torch` (the fast path in pure torch,
without the compiled CPU kernels: cpu_kernels = torch); with --lookup_only, also `fast+lookuponly` (the compiled
hash-grid lookup, the MLPs in torch); with --float32_mlp, also `fast+float32` (the MLP kernel in float32 on CPUs
where the default takes bfloat16 products: cpu_mlp_precision = float32). Every path renders one warm-up frame first, timed apart as `warmup_s`
(allocator, kernels, the compilation), and its frames are rendered RGB only, as render.py renders a video.
Sizes above the subject's own frames use its camera with scaled intrinsics (the field renders any resolution).

Without --expnames an untrained model of each backbone is timed on a synthetic camera (the tiny fixture's: head at
0.5, near/far 0.3/0.9, focal 1.25 * size), with the model/render settings of --config (or the defaults). Speed
depends on the network and the samples per ray, hardly on training, with one exception noted in the json: an
untrained `hash` model has no occupancy grid yet, so it queries every sample (no empty-space skipping) and its fps
are a lower bound. Each (backbone, size) runs in its own process so that its peak memory is its own (CUDA: peak
allocated; CPU: peak resident set size of that process).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

from benchmarks.results_io import new_figure, save_figure, write_results  # noqa: E402


def synthetic_run(cfg, size: int, device):
    """An untrained pipeline and a square camera looking at the head frame's origin from 0.5 (render_frame's inputs)."""
    import torch

    from nerf.dataset import get_rays
    from nerf.pipeline import ModelMeta, build_pipeline

    focal, near, far = 1.25 * size, 0.3, 0.9
    c2w = torch.eye(4)
    c2w[2, 3] = 0.5  # OpenGL camera at z = 0.5 looking down -z at the origin
    ys, xs = torch.tensor([0, 0, size - 1, size - 1]), torch.tensor([0, size - 1, 0, size - 1])
    o, d = get_rays(size, size, focal, size / 2, size / 2, c2w, ys, xs)
    pts = torch.cat([o + near * d, o + far * d])
    aabb = torch.cat([pts.min(0).values, pts.max(0).values])
    classes = ["background", "face", "brows", "eyes", "ears", "nose", "inner_mouth", "lips", "neck", "torso", "hair"]
    eyes = torch.tensor([[-0.035, -0.033, 0.0, 0.019], [0.035, -0.033, 0.0, 0.019]])  # the sample's, about
    meta = ModelMeta(29, classes, aabb, eye_region=eyes, frame_ids=torch.arange(1))  # (frame ids: a per-frame code's)
    pipeline = build_pipeline(cfg, meta).to(device).eval()
    ds = SimpleNamespace(h=size, w=size, focal=focal, cx=size / 2, cy=size / 2, near=near, far=far,
                         bg=torch.full((size, size, 3), 0.5))
    return SimpleNamespace(pipeline=pipeline, model=pipeline.model, ds=ds, device=device, cfg=cfg), c2w


def _measure(job: dict) -> dict:
    """In a fresh process: render job["frames"] frames (after one warm-up) and return fps and peak memory."""
    import resource

    import torch

    from nerf.config import parse
    from nerf.distributed import pick_device
    from nerf.encodings import HashGridEncoding
    from nerf.runs import load_run

    if job["threads"] > 0:
        torch.set_num_threads(job["threads"])
    size = job["size"]
    if job["expname"]:
        run = load_run([*job["config_args"], "--expname", job["expname"], "--img_size", str(size),
                        "--device", job["device"], "--render_path", job["path"].split("+")[0],
                        "--compile_field", str("+compile" in job["path"]).lower(),
                        "--cpu_kernels", "torch" if "+torch" in job["path"] else "auto",
                        *(["--cpu_mlp_precision", "float32"] if "+float32" in job["path"] else [])])
        if "+lookuponly" in job["path"]:  # the MLP kernel off, the lookup kernel on
            for m in run.model.modules():
                if hasattr(m, "kernel") and not isinstance(m, HashGridEncoding):
                    m.kernel = False
        if run.ds.h < size and run.ds.w < size:  # the subject's frames are smaller: the same camera, finer
            run.ds = upscaled_camera(run.ds, size)
        c2w = run.ds.c2w[0]
        if not job["skip"] and hasattr(run.pipeline.estimator, "is_ready"):
            run.pipeline.estimator.is_ready.fill_(False)  # query every sample
        if job.get("val_frames"):
            return validation_psnr(job, size)
    else:
        cfg = parse([*job["config_args"], "--backbone", job["backbone"]])
        run, c2w = synthetic_run(cfg, size, pick_device(job["device"]))
    dev = run.device
    code = run.model.condition(torch.zeros(1, run.model.code_dim, device=dev), None)[0]  # eyes open, the mean mouth
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    # one warm-up frame, timed apart, on every path and device (kernels, allocator, compilation): a video renders
    # hundreds of frames, so the steady rate is what a user waits on. RGB only, as render.py without
    # --semantic_video renders
    t0 = time.perf_counter()
    run.pipeline.render_frame(run.ds, c2w, code, semantics=False)
    warmup_s = time.perf_counter() - t0
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    t0, n = time.perf_counter(), 0
    while n < job["frames"] and (n == 0 or time.perf_counter() - t0 < job["max_seconds"]):
        out = run.pipeline.render_frame(run.ds, c2w, code, semantics=False)
        n += 1
    sync()
    seconds = time.perf_counter() - t0
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    skipping = run.pipeline.occupied_share() < 1.0
    rc = run.cfg.render
    if job.get("save"):
        import numpy as np

        np.save(job["save"], out["rgb"].numpy())
    return {"fps": n / seconds, "path": job.get("path", rc.render_path), "warmup_s": warmup_s, "frames": n, "seconds": seconds, "peak_mb": peak, "skipping": skipping,
            "backbone": run.model.mc.backbone, "samples": rc.hash_samples if run.model.mc.backbone == "hash"
            else rc.n_samples + rc.n_importance, "device": str(dev)}


def upscaled_camera(ds, size: int):
    """The dataset's camera with its intrinsics scaled so that the longer side is `size` px, and its background
    resized: to time sizes above the subject's own (the field renders any resolution)."""
    import torch
    import torch.nn.functional as F

    k = size / max(ds.h, ds.w)
    h, w = round(ds.h * k), round(ds.w * k)
    bg = F.interpolate(ds.bg.permute(2, 0, 1)[None].float(), size=(h, w), mode="bilinear", align_corners=False)
    return SimpleNamespace(h=h, w=w, focal=ds.focal * k, cx=ds.cx * k, cy=ds.cy * k, near=ds.near, far=ds.far,
                           bg=bg[0].permute(1, 2, 0).contiguous(), c2w=ds.c2w)


def validation_psnr(job: dict, size: int) -> dict:
    """In a fresh process: PSNR of job["val_frames"] held-out frames (their own audio and poses) rendered with
    job["path"] at the run's training size."""
    import numpy as np
    import torch

    from nerf import metrics
    from nerf.runs import load_run

    run = load_run([*job["config_args"], "--expname", job["expname"], "--device", job["device"], "--render_path",
                    job["path"]], split="val")
    ds = run.ds
    idx = np.unique(np.linspace(0, len(ds) - 1, job["val_frames"]).round().astype(int))
    codes = run.pipeline.frame_codes(ds.aud, ds.aud_ids[torch.from_numpy(idx)],
                                     frames=ds.frame_numbers[torch.from_numpy(idx)])
    preds = [run.pipeline.render_frame(ds, ds.c2w[f], codes[k])["rgb"] for k, f in enumerate(idx.tolist())]
    gts = [ds.image(f).float() / 255.0 for f in idx.tolist()]
    return {"val_psnr": float(metrics.psnr(torch.cat(preds), torch.cat(gts))), "val_frames": len(idx),
            "path": job["path"]}


def compare_paths(args, config_args: list[str]) -> int:
    """Trained runs: reference vs fast path at each size, in turn, then validation PSNR of each path."""
    import tempfile

    import numpy as np

    ctx = mp.get_context("spawn")
    tmp = Path(tempfile.mkdtemp(prefix="render_speed_"))
    res: dict = {"fps": {}, "fast_over_reference": {}, "parity_psnr": {}, "peak_memory_mb": {}, "val_psnr": {},
                 "runs": []}
    extra = ((("fast+compile",) if args.compile else ()) + (("fast+torch",) if args.torch_kernels else ())
             + (("fast+lookuponly",) if args.lookup_only else ()) + (("fast+float32",) if args.float32_mlp else ()))
    ratio_keys = {"fast": "fast_over_reference", "fast+compile": "fast_compiled_over_reference",
                  "fast+torch": "fast_torch_over_reference", "fast+lookuponly": "fast_lookup_only_over_reference",
                  "fast+float32": "fast_float32_mlp_over_reference"}
    for expname in args.expnames:
        for size in args.sizes:
            fps: dict[str, list[float]] = {}
            for rnd in range(args.rounds):  # the paths in turn, round after round: the machine's drift hits all
                for path in ("reference", "fast") + extra:
                    job = {"backbone": "trained", "size": size, "device": args.device, "frames": args.frames,
                           "max_seconds": args.max_seconds, "threads": args.threads, "expname": expname,
                           "config_args": config_args, "skip": True, "path": path,
                           "save": str(tmp / f"{expname}_{size}_{path}.npy")}
                    with ctx.Pool(1) as pool:
                        r = pool.apply(_measure, (job,))
                    fps.setdefault(path, []).append(r["fps"])
                    mem = res["peak_memory_mb"].setdefault(path, {})
                    mem[str(size)] = max(mem.get(str(size), 0.0), round(r["peak_mb"], 1))
                    res["runs"].append({"size": size, "expname": expname, "round": rnd, **r})
                    print(f"{expname} {size}x{size} {path} (round {rnd + 1}): {r['fps']:.3f} frames/s "
                          f"({r['frames']} frames), peak {r['peak_mb']:.0f} MiB", flush=True)
            for path, values in fps.items():  # the median over the rounds
                res["fps"].setdefault(path, {})[str(size)] = round(float(np.median(values)), 4)
            ref, fast = (np.load(tmp / f"{expname}_{size}_{p}.npy") for p in ("reference", "fast"))
            mse = float(((ref - fast) ** 2).mean())
            res["parity_psnr"][str(size)] = round(-10 * np.log10(max(mse, 1e-20)), 2)
            for path, key in ratio_keys.items():  # each round's ratio; the median of them
                if path in fps:
                    ratios = [a / b for a, b in zip(fps[path], fps["reference"])]
                    res.setdefault(key, {})[str(size)] = round(float(np.median(ratios)), 2)
                    res.setdefault(key + "_rounds", {})[str(size)] = [round(x, 2) for x in ratios]
            print(f"  fast / reference = {res['fast_over_reference'][str(size)]}x, "
                  f"fast vs reference image {res['parity_psnr'][str(size)]} dB", flush=True)
        if args.val_frames:
            for path in ("reference", "fast"):
                job = {"size": 0, "device": args.device, "threads": args.threads, "expname": expname,
                       "config_args": config_args, "skip": True, "path": path, "val_frames": args.val_frames}
                with ctx.Pool(1) as pool:
                    r = pool.apply(_measure, (job,))
                res["val_psnr"][path] = round(r["val_psnr"], 3)
                print(f"{expname} validation PSNR, {path} path: {r['val_psnr']:.3f} dB ({r['val_frames']} frames)")
    import torch

    res.update(device=res["runs"][0]["device"], threads=args.threads or torch.get_num_threads(), trained=True,
               config=args.config, expnames=args.expnames,
               memory_kind="peak resident set size of the measuring process (includes torch itself, ~300 MiB)"
               if args.device != "cuda" else "CUDA peak allocated",
               command="python benchmarks/render_speed.py " + " ".join(sys.argv[1:]))
    return write_results(args.out, res, lambda png: plot(png, res["fps"], "render path"))


def plot(path: Path, fps: dict, legend: str = "backbone") -> None:
    import numpy as np

    sizes = sorted({s for v in fps.values() for s in v}, key=int)
    fig, ax = new_figure()
    width = 0.8 / max(len(fps), 1)
    for k, (bb, per) in enumerate(fps.items()):
        x = np.arange(len(sizes)) + k * width
        ax.bar(x, [per.get(s, 0) for s in sizes], width, label=bb)
    ax.set_xticks(np.arange(len(sizes)) + width * (len(fps) - 1) / 2, [f"{s}x{s}" for s in sizes])
    ax.set_yscale("log")
    ax.set_ylabel("frames per second")
    ax.legend(title=legend)
    ax.set_title("render speed")
    save_figure(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    p.add_argument("--backbones", nargs="+", default=["hash", "mlp"], choices=["hash", "mlp"])
    p.add_argument("--config", default=None, help="model/render settings (default: the built-in defaults)")
    p.add_argument("--expnames", nargs="*", default=[], help="time these trained runs (logs/<expname>/) instead")
    p.add_argument("--basedir", default="logs")
    p.add_argument("--frames", type=int, default=3, help="frames timed per setting (after a warm-up frame)")
    p.add_argument("--max_seconds", type=float, default=60.0, help="stop timing a setting after this long")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--compile", action="store_true", help="trained runs: also time fast + compile_field")
    p.add_argument("--torch_kernels", "--torch_lookup", action="store_true",
                   help="trained runs: also time the fast path in pure torch (cpu_kernels = torch)")
    p.add_argument("--float32_mlp", action="store_true",
                   help="trained runs: also time the fast path with the MLP kernel in float32 (cpu_mlp_precision)")
    p.add_argument("--lookup_only", action="store_true",
                   help="trained runs: also time the fast path with the compiled lookup but the MLPs in torch")
    p.add_argument("--val_frames", type=int, default=8, help="trained runs: held-out frames for the validation PSNR")
    p.add_argument("--rounds", type=int, default=1,
                   help="trained runs: time the paths in turn this many times; fps and ratios are the medians")
    p.add_argument("--out", default=str(RESULTS / "render_speed.json"))
    args = p.parse_args(argv)
    config_args = (["--config", args.config] if args.config else []) + ["--basedir", args.basedir]
    if args.expnames:
        return compare_paths(args, config_args)
    fps, mem, runs = {}, {}, []
    ctx = mp.get_context("spawn")
    for bb in args.backbones:
        for size in args.sizes:
            job = {"backbone": bb, "size": size, "device": args.device, "frames": args.frames,
                   "max_seconds": args.max_seconds, "threads": args.threads, "expname": "",
                   "config_args": config_args, "skip": True}
            with ctx.Pool(1) as pool:
                r = pool.apply(_measure, (job,))
            fps.setdefault(bb, {})[str(size)] = round(r["fps"], 4)
            mem.setdefault(bb, {})[str(size)] = round(r["peak_mb"], 1)
            runs.append({"size": size, **r})
            print(f"{bb} {size}x{size}: {r['fps']:.3f} frames/s ({r['frames']} frames, {r['samples']} samples/ray), "
                  f"peak {r['peak_mb']:.0f} MiB", flush=True)
    import torch

    ratio = {s: fps["hash"][s] / fps["mlp"][s] for s in fps.get("hash", {}) if s in fps.get("mlp", {})}
    res = {"fps": fps, "hash_over_mlp": ratio, "peak_memory_mb": mem,
           "memory_kind": "CUDA peak allocated" if runs[0]["device"].startswith("cuda")
           else "peak resident set size of the measuring process (includes torch itself, ~300 MiB)",
           "device": runs[0]["device"], "threads": args.threads or torch.get_num_threads(), "trained": False,
           "config": args.config, "runs": runs,
           "note": "untrained models: fps hardly depend on training, except that an untrained hash model has no "
           "occupancy grid, so it queries every sample (no empty-space skipping): hash fps are a lower bound"}
    return write_results(args.out, res, lambda png: plot(png, fps))


if __name__ == "__main__":
    sys.exit(main())
