"""Device selection, mixed precision and nccl.

The CUDA paths run only where torch sees a GPU (each skip prints why); the messages a CPU-only machine gives for
`--device cuda` and the CPU's handling of `--amp true` are tested on the CPU.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import evaluate
import render
import train
from nerf.checkpoint import load_checkpoint
from tests.nerf_fixtures import make_tiny_dataset
from tests.render_fixtures import FAST, train_tiny

ROOT = Path(__file__).resolve().parents[1]
HAS_CUDA = torch.cuda.is_available()
N_GPUS = torch.cuda.device_count() if HAS_CUDA else 0
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device: torch.cuda.is_available() is False")
needs_no_cuda = pytest.mark.skipif(HAS_CUDA, reason="a CUDA device is present, so --device cuda cannot fail")
_i = FAST.index("--device")
NO_CPU = FAST[:_i] + FAST[_i + 2:]  # the tiny-run flags without their `--device cpu`


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("cuda"), n_frames=12, size=16)


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("cuda_run"))


def _train(tmp_path: Path, data: Path, name: str, *extra: str) -> tuple[int, Path]:
    rc = train.main(["--datadir", str(data), "--basedir", str(tmp_path / "logs"), "--expname", name,
                     "--backbone", "hash", *NO_CPU, "--iters", "4", "--val_every", "4", "--ckpt_every", "4", *extra])
    return rc, tmp_path / "logs" / name


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------- on a machine without CUDA
@needs_no_cuda
def test_train_device_cuda_without_gpu(tmp_path, tiny, capsys):
    rc, run = _train(tmp_path, tiny, "x", "--device", "cuda")
    err = _one_line_error(capsys)
    assert rc == 1 and err == "error: --device cuda: no CUDA device available (use --device cpu or auto)"
    assert not (run / "ckpt" / "latest.pt").exists()


@needs_no_cuda
def test_render_and_evaluate_device_cuda_without_gpu(tmp_path, cpu_run, capsys):
    npy = tmp_path / "f.npy"
    import numpy as np

    np.save(npy, np.zeros((2, 16, 26), np.float32))
    capsys.readouterr()
    assert render.main(["--config", str(cpu_run["config"]), "--aud", str(npy), "--device", "cuda",
                        "--out", str(tmp_path / "o.mp4")]) == 1
    assert "--device cuda: no CUDA device" in _one_line_error(capsys)
    assert evaluate.main(["--config", str(cpu_run["config"]), "--device", "cuda", "--no_video",
                          "--out_dir", str(tmp_path / "ev")]) == 1
    assert "--device cuda: no CUDA device" in _one_line_error(capsys)


def test_device_auto_and_amp_on_cpu(tmp_path, tiny, capsys):
    """`--device auto` picks the CPU here (cuda where there is one); `--amp true` is ignored on the CPU (no
    autocast, no CUDA grad scaler and its warning) and the run trains as it does without it."""
    if HAS_CUDA:
        pytest.skip("a CUDA device is present: --device auto would pick it (test_cuda_training covers that)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc, run = _train(tmp_path, tiny, "amp", "--device", "auto", "--amp", "true")
    assert rc == 0
    amp_warnings = [str(w.message) for w in caught if any(k in str(w.message) for k in ("GradScaler", "autocast",
                                                                                          "CUDA"))]
    assert amp_warnings == []
    assert "(device cpu)" in capsys.readouterr().out
    rc, ref = _train(tmp_path, tiny, "noamp", "--device", "cpu", "--amp", "false")
    assert rc == 0
    a = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()][-1]
    b = [json.loads(ln) for ln in (ref / "metrics.jsonl").read_text().splitlines()][-1]
    assert a["psnr"] == pytest.approx(b["psnr"], abs=1e-4)  # no autocast, no grad scaling on the CPU


# ---------------------------------------------------------------- on a machine with CUDA
@needs_cuda
@pytest.mark.parametrize("amp", ["false", "true"])
def test_cuda_training(tmp_path, tiny, capsys, amp):
    """`--device auto` picks cuda; with and without mixed precision the run trains and its checkpoint loads on the
    CPU; render.py and evaluate.py run on cuda too."""
    name = f"cuda_amp_{amp}"
    rc, run = _train(tmp_path, tiny, name, "--device", "auto", "--amp", amp, "--iters", "30", "--val_every", "10",
                     "--lr_warmup", "0", "--n_rand", "256")
    assert rc == 0, capsys.readouterr().err[-2000:]
    assert "(device cuda)" in capsys.readouterr().out
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor([r["loss"], r["psnr"]])).all() for r in rows)
    assert rows[-1]["loss_photo"] < rows[0]["loss_photo"]  # it learns under autocast too
    state = load_checkpoint(run / "ckpt" / "latest.pt", map_location="cpu")
    assert state["iteration"] == 30
    assert all(torch.isfinite(v.float()).all() for v in state["model"].values() if v.is_floating_point())
    assert evaluate.main(["--datadir", str(tiny), "--basedir", str(tmp_path / "logs"), "--expname", name,
                          "--device", "cuda", "--no_video", "--max_frames", "1",
                          "--out_dir", str(tmp_path / "ev")]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["psnr"] == pytest.approx(rows[-1]["psnr"], abs=0.05)  # the frame the trainer validated


@needs_cuda
def test_cpu_checkpoint_renders_on_cuda(tmp_path, cpu_run):
    import numpy as np

    npy = tmp_path / "f.npy"
    np.save(npy, np.zeros((2, 16, 26), np.float32))
    assert render.main(["--config", str(cpu_run["config"]), "--aud", str(npy), "--device", "cuda",
                        "--out", str(tmp_path / "o.mp4")]) == 0


@pytest.mark.skipif(N_GPUS < 2, reason=f"nccl needs 2 CUDA devices, found {N_GPUS}")
def test_torchrun_nccl_two_gpus(tmp_path, tiny):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "train.py",
           "--datadir", str(tiny), "--basedir", str(tmp_path / "logs"), "--expname", "nccl", "--backbone", "hash",
           *NO_CPU, "--device", "cuda", "--iters", "4", "--val_every", "4", "--ckpt_every", "4"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert load_checkpoint(tmp_path / "logs" / "nccl" / "ckpt" / "latest.pt")["iteration"] == 4
