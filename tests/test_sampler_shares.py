"""The semantic sampler's adaptive shares inside training (train.py), not only as a pure function:

- the per-ray losses the trainer feeds back are the training loss per ray (photometric + lambda_sem * semantic):
  their batch mean equals the logged loss_photo + lambda_sem * loss_sem;
- the shares train.py logs are what the class_shares rule gives for the running class losses of those batches,
  and within one short run they move toward the classes whose loss is above the mean and away from the others;
- under torchrun (2 CPU processes) both ranks hold elementwise the same parameters, occupancy grid and shares,
  also after a resume, where rank 1 keeps a random stream of its own (tests/ddp_shares_worker.py).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import train
from nerf import sampler as S
from tests.nerf_fixtures import CLASSES, make_tiny_dataset
from tests.render_fixtures import FAST

ROOT = Path(__file__).resolve().parents[1]
ITERS, UPDATE_EVERY, LAMBDA_SEM = 30, 5, 0.05


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("shares"), n_frames=12, size=16)


@pytest.fixture(scope="module")
def fed(tiny, tmp_path_factory, request):
    """A 30-iteration run (256 rays, shares recomputed every 5) with SemanticSampler.update recording what it is
    fed: ([(cls [n], per-ray loss [n])], metrics rows)."""
    calls = []
    real_update = S.SemanticSampler.update

    def update(self, cls, loss):
        calls.append((cls.detach().cpu().clone(), loss.detach().float().cpu().clone()))
        return real_update(self, cls, loss)

    mp = pytest.MonkeyPatch()
    request.addfinalizer(mp.undo)
    mp.setattr(S.SemanticSampler, "update", update)
    logs = tmp_path_factory.mktemp("shares_logs")
    rc = train.main(["--datadir", str(tiny), "--basedir", str(logs), "--expname", "s", "--backbone", "hash", *FAST,
                     "--iters", str(ITERS), "--n_rand", "256", "--val_every", str(UPDATE_EVERY), "--ckpt_every",
                     str(ITERS), "--lr_warmup", "0", "--update_every", str(UPDATE_EVERY), "--lambda_sem",
                     str(LAMBDA_SEM)])
    mp.undo()
    assert rc == 0
    rows = [json.loads(ln) for ln in (logs / "s" / "metrics.jsonl").read_text().splitlines()]
    return calls, rows


def test_fed_losses_are_the_per_ray_training_loss(fed):
    calls, rows = fed
    assert len(calls) == ITERS
    for cls, loss in calls:
        assert cls.shape == loss.shape == (256,) and cls.min() >= 0 and torch.isfinite(loss).all()
        assert (loss > 0).all()
    for r in rows:  # the row of iteration it holds that step's logged losses
        cls, loss = calls[r["iter"] - 1]
        assert loss.mean().item() == pytest.approx(r["loss_photo"] + LAMBDA_SEM * r["loss_sem"], abs=2e-5), r["iter"]


def _replay(calls, area: np.ndarray, cfg: S.SamplerConfig) -> tuple[np.ndarray, list[np.ndarray]]:
    """The running class losses and the shares after each recomputation, from the fed batches alone."""
    n_cls = len(area)
    L, seen, history = np.ones(n_cls), np.zeros(n_cls, bool), []
    for k, (cls, loss) in enumerate(calls, 1):
        c, v = cls.numpy(), loss.double().numpy()
        for j in np.unique(c):
            m = v[c == j].mean()
            L[j] = m if not seen[j] else cfg.ema * L[j] + (1 - cfg.ema) * m
            seen[j] = True
        if k % cfg.update_every == 0:
            history.append(S.class_shares(area, L, cfg.alpha, cfg.beta, cfg.p_min))
    return L, history


def _area(data: Path) -> np.ndarray:
    """Pixel share of each class [C] over the training frames' parsing maps."""
    meta = json.loads((data / "transforms_train.json").read_text())
    maps = [iio.imread(data / "parsing" / f"{f['img_id']}.png").reshape(-1) for f in meta["frames"]]
    counts = np.bincount(np.concatenate(maps), minlength=len(CLASSES)).astype(np.float64)
    return counts / counts.sum()


def test_logged_shares_follow_the_class_losses(fed, tiny):
    calls, rows = fed
    names = CLASSES
    cfg = S.SamplerConfig(update_every=UPDATE_EVERY)
    area = _area(tiny)
    initial = S.class_shares(area, np.ones(len(area)), cfg.alpha, cfg.beta, cfg.p_min)  # before any feedback
    L, history = _replay(calls, area, cfg)
    assert len(history) == len(rows) == ITERS // UPDATE_EVERY
    for r, p in zip(rows, history):
        logged = np.array([r["shares"][n] for n in names])
        assert np.allclose(logged, p, atol=2e-5), (r["iter"], logged.round(4), p.round(4))
    final = history[-1]
    present = area > 0
    rel = np.where(present, L / L[present].mean(), np.nan)  # running loss relative to the mean
    hi, lo = int(np.nanargmax(rel)), int(np.nanargmin(rel))
    moved = {names[c]: round(float(final[c] - initial[c]), 4) for c in np.flatnonzero(present)}
    print(f"relative class loss {dict(zip(names, np.round(rel, 2)))}; share change {moved}")
    # measured: inner_mouth 1.44x the mean loss, share +0.026; background 0.49x, share -0.128
    assert rel[hi] > 1.2 and final[hi] > initial[hi] + 0.01  # toward the highest-loss class
    assert rel[lo] < 0.8 and final[lo] < initial[lo] - 0.05  # away from the lowest-loss one
    for c in np.flatnonzero(present):  # every class moves in the direction of its loss
        if abs(rel[c] - 1) > 0.2:
            assert (final[c] - initial[c]) * (rel[c] - 1) > 0, names[c]


def test_torchrun_ranks_hold_identical_parameters_grid_and_shares(tiny, tmp_path):
    """2 ranks, 10 steps (shares every 5, occupancy grid every 10), a resume from the checkpoint, 5 more steps:
    every parameter/buffer and the shares equal elementwise on both ranks; the shares moved."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "ddp_shares_worker.py"), "--datadir", str(tiny), "--basedir", str(tmp_path / "logs"),
           "--expname", "ddp", "--backbone", "hash", *FAST, "--iters", "10", "--n_rand", "256", "--lr_warmup", "0",
           "--update_every", str(UPDATE_EVERY), "--occ_every", "10"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("SHARES_SYNC ")), None)
    assert line is not None, (res.returncode, res.stdout[-1500:], res.stderr[-3000:])
    out = json.loads(line[len("SHARES_SYNC "):])
    assert out["differ_after_steps"] == [], out
    assert out["resumed_iteration"] == 10 and out["resumed_sampler_matches_checkpoint"]
    assert out["resumed_rank_streams_differ"]
    assert out["differ_after_resume"] == [] and out["differ_after_more_steps"] == []
    assert out["n_compared"] > 20
    moved = max(abs(out["final_shares"][k] - out["initial_shares"][k]) for k in out["initial_shares"])
    assert moved > 0.02
    assert res.returncode == 0 and out["all_ranks_ok"], res.stderr[-2000:]
