#!/usr/bin/env python
"""The CUDA path on a machine with a GPU, in one run -> benchmarks/results/gpu_check.json (+ the logs beside it).

    python benchmarks/gpu_check.py --config output/demo/configs/sample.txt --basedir output/demo/logs \\
        --cpu_expname sample --speech output/demo/new_speech.wav [--train_seconds 60] [--out_dir D]

Each stage runs as the user would run it, in its own process with a time limit, and its numbers are written as soon
as it ends (a stage that fails or runs out of time is recorded as such; the next one still runs):
1. tests/test_cuda.py: training with and without --amp on cuda, a CPU checkpoint rendering on cuda;
2. train.py --device cuda (the gpu preset) for --train_seconds, with amp off, then half as long with amp on:
   iterations per second (iterations / training seconds, validation excluded) and the validation PSNR;
3. benchmarks/render_speed.py on the amp-off run: reference and fast path at 256 and 512 px, their validation PSNR;
4. render.py of new speech on cuda (the user's frames per second, mp4 muxed);
5. evaluate.py of the CPU-trained run (--cpu_expname) on cpu and on cuda: both PSNRs recorded, side by side;
6. render_speed.py with --compile at 512 px (torch.compile of the field; the slowest stage, so last).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"


class Stages:
    """Runs commands with a time limit, logs each to <out_dir>/<name>.log, keeps the summary in <out_dir>/gpu_check.json."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.summary: dict = {"stages": {}}

    def run(self, name: str, cmd: list[str], limit_s: float) -> bool:
        print(f"+ [{name}] {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        with open(self.out_dir / f"{name}.log", "w") as log:
            try:
                rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=limit_s).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        self.summary["stages"][name] = {"rc": rc, "seconds": round(time.perf_counter() - t0, 1)}
        print(f"  [{name}] rc {rc} in {time.perf_counter() - t0:.0f} s", flush=True)
        self.save()
        return rc == 0

    def record(self, key: str, value) -> None:
        self.summary[key] = value
        self.save()

    def save(self) -> None:
        (self.out_dir / "gpu_check.json").write_text(json.dumps(self.summary, indent=1))


def training_numbers(run_dir: Path) -> dict:
    """Iterations per training second and the last validation record of a run's metrics.jsonl."""
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    last = rows[-1]
    return {"iters": last["iter"], "train_seconds": last["time_s"], "iters_per_s": round(last["iter"] / last["time_s"], 2),
            "val_psnr": round(last["psnr"], 3), "region_psnr": last.get("region_psnr")}


def environment() -> dict:
    import numpy
    import torch

    env = {"torch": torch.__version__, "numpy": numpy.__version__, "python": sys.version.split()[0],
           "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        env.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda)
    return env


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the subject's training config (process_data.sh's)")
    p.add_argument("--basedir", required=True, help="where the CPU-trained run is (and the cuda runs go)")
    p.add_argument("--cpu_expname", default="", help="a run trained on the CPU, evaluated on both devices")
    p.add_argument("--speech", default="", help="new speech for render.py")
    p.add_argument("--train_seconds", type=float, default=60.0)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--device", default="cuda", help="cuda (cpu: to try this script on a machine without a GPU)")
    p.add_argument("--skip", nargs="*", default=[], help="stages to leave out: tests train render_speed render "
                   "parity compile")
    p.add_argument("--out_dir", default=str(RESULTS / "gpu_check"))
    args = p.parse_args(argv)
    py, out = sys.executable, Path(args.out_dir)
    st = Stages(out)
    st.record("environment", environment())
    st.record("command", "python benchmarks/gpu_check.py " + " ".join(sys.argv[1:] if argv is None else argv))
    common = ["--config", args.config, "--basedir", args.basedir]
    if "tests" not in args.skip:
        st.run("tests", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py"], 240)
    runs = {}
    if "train" not in args.skip:
        for amp, seconds in (("false", args.train_seconds), ("true", args.train_seconds / 2)):
            name = f"gpu_amp_{amp}"
            ok = st.run(f"train_amp_{amp}", [py, "train.py", *common, "--expname", name, "--device", args.device,
                                             "--amp", amp, "--time_budget", str(seconds), "--val_every", "100000",
                                             "--ckpt_every", "100000"], seconds + 120)
            if ok:
                runs[amp] = training_numbers(Path(args.basedir) / name)
                st.record("training", runs)
    speed = [py, "benchmarks/render_speed.py", *common, "--expnames", "gpu_amp_false", "--device", args.device,
             "--frames", "10", "--max_seconds", "10", "--val_frames", "4"]
    if "false" in runs and "render_speed" not in args.skip:
        if st.run("render_speed", [*speed, "--sizes", *map(str, args.sizes), "--out", str(out / "render_speed.json")],
                  300):
            st.record("render_speed", json.loads((out / "render_speed.json").read_text()))
    if "false" in runs and args.speech and "render" not in args.skip:
        st.run("render", [py, "render.py", *common, "--expname", "gpu_amp_false", "--device", args.device, "--aud",
                          args.speech, "--out", str(out / "new_speech_cuda.mp4")], 180)
    if args.cpu_expname and "parity" not in args.skip:
        psnr = {}
        for dev in ("cpu", args.device):
            d = out / f"eval_{dev}"
            if st.run(f"evaluate_{dev}", [py, "evaluate.py", *common, "--expname", args.cpu_expname, "--device", dev,
                                          "--no_video", "--max_frames", "4", "--out_dir", str(d)], 180):
                psnr[dev] = json.loads((d / "metrics.json").read_text())["psnr"]
        st.record("cpu_checkpoint_psnr_by_device", psnr)
    if "false" in runs and "compile" not in args.skip:
        if st.run("compile", [*speed, "--sizes", str(args.sizes[-1]), "--compile", "--val_frames", "0",
                              "--out", str(out / "render_speed_compile.json")], 300):
            st.record("render_speed_compile", json.loads((out / "render_speed_compile.json").read_text()))
    print(json.dumps(st.summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
