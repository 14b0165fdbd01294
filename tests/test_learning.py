"""The README's training claims on a tiny generated subject (tests/nerf_fixtures.py), through train.py and render.py:

- training learns: the photometric loss falls and the validation PSNR rises (no warm-up, so the first
  iterations already train at the full learning rate);
- audio moves the mouth: rendered for held-out audio (features of mouth openings it never saw, fresh noise) at one
  fixed pose, the darkness of the mouth area follows the opening the audio encodes, as much as it does in the
  fixture's own ray-cast ground truth; a model trained with `--zero_audio true` does not follow it, even when
  the real features are handed to it at render time;
- each ablation switch changes what it says: `--deform false` has no `deformation` parameters, `--semantic false`
  no semantic head, `--sampling uniform` draws rays in proportion to the pixel areas.

The subject is written at 64 px and trained at 32 px (`--img_size 32`): area resizing turns the 1-2 px mouth of
the 64 px ray-cast into a darkness that varies continuously with the opening.
"""
from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import render
import train
from nerf.checkpoint import load_checkpoint
from tests import nerf_fixtures as NF
from tests.render_fixtures import FAST

BIG, SIZE, N_FRAMES = 64, 32, 24
LEARN = ["--preset", "none", "--device", "cpu", "--threads", "1", "--backbone", "hash", "--img_size", str(SIZE),
         "--hash_samples", "32", "--hash_log2_table", "12", "--occ_res", "16", "--occ_every", "10",
         "--n_rand", "256", "--lr_warmup", "0", "--val_every", "10", "--val_frames", "1", "--log_every", "1000",
         "--cpu_kernels", "torch"]  # the pure-torch path, which conftest.py pins to AVX2 on every x86-64 machine: the
# compiled kernels pick AVX-512 where the CPU has it, and these 100-iteration runs are sensitive to the rounding
# (on an AMD EPYC with AVX-512, 2026-12-05: mouth slope 0.17 through the kernels, 0.99 through torch; NOTES)
ITERS = 100  # both the audio model and its zero-audio control
HELD_OUT = np.array([0.0, 0.57, 0.14, 1.0, 0.43, 0.86, 0.29, 0.71])  # mouth openings of the new audio
# claim thresholds. Measured at 100 iterations, seeds 0-2 (seed 0 is what runs): r 0.984-0.989, slope 0.39-0.47;
# the zero-audio controls given the real features: slope -0.04..0.09, while |r| reached 0.82 by chance (the codes
# drift monotonically with the feature size), hence the slope bound; a control whose training data kept the audio
# (dataset zeroing broken on purpose): slope 0.40.
MIN_R, MIN_SLOPE = 0.8, 0.2


def _train(root: Path, data: Path, name: str, iters: int, *extra: str) -> Path:
    rc = train.main(["--datadir", str(data), "--basedir", str(root / "logs"), "--expname", name,
                     "--iters", str(iters), "--ckpt_every", str(iters), *LEARN, *extra])
    assert rc == 0
    return root / "logs" / name


def _rows(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    root = tmp_path_factory.mktemp("learn")
    return root, NF.make_tiny_dataset(root / "data", n_frames=N_FRAMES, size=BIG)


@pytest.fixture(scope="module")
def trained(subject):
    root, data = subject
    return _train(root, data, "audio", ITERS)


@pytest.fixture(scope="module")
def held_out(subject):
    """New audio features [8,16,D] for the HELD_OUT openings, built like the fixture's aud.npy (its pattern,
    fitted from aud.npy, times the opening, plus fresh noise of the same size), and the ground-truth mouth
    darkness of the fixture's ray-cast at pose 0 for those openings."""
    root, data = subject
    aud = np.load(data / "aud.npy").astype(np.float64)  # [N,16,D]: opening_i * pattern + noise
    opening = np.array([NF.mouth_opening(i) for i in range(len(aud))])
    pattern = np.einsum("i,ijk->jk", opening, aud) / (opening ** 2).sum()  # least squares
    noise = (aud - opening[:, None, None] * pattern).std()
    assert noise < 0.2 * np.abs(pattern).mean()  # the features are the opening times one pattern
    rng = np.random.default_rng(123)
    feats = np.stack([o * pattern + noise * rng.normal(size=pattern.shape) for o in HELD_OUT]).astype(np.float32)
    path = root / "held_out.npy"
    np.save(path, feats)
    rect = _mouth_rect(data)
    R, t = NF.head_pose(0, N_FRAMES)
    bg = iio.imread(data / "bc.jpg").astype(np.float64) / 255
    gt = [_area_resize(NF.render_frame(NF.c2w_from_pose(R, t), R, t, 1.25 * BIG, BIG, bg, o)[0]) for o in HELD_OUT]
    return path, rect, np.array([_darkness(g, rect) for g in gt])


def _area_resize(img: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(img.astype(np.float32), (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def _mouth_rect(data: Path) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 at SIZE px: the union of the training frames' lips rectangles (lips + inner mouth)."""
    rects = np.array([f["lips_rect"] for f in json.loads((data / "transforms_train.json").read_text())["frames"]],
                     np.float64) * SIZE / BIG
    x0, y0 = np.floor(rects[:, :2].min(0)).astype(int)
    x1, y1 = np.ceil((rects[:, :2] + rects[:, 2:]).max(0)).astype(int)
    return int(x0), int(y0), int(x1), int(y1)


def _darkness(img: np.ndarray, rect) -> float:
    x0, y0, x1, y1 = rect
    return float(1.0 - img[y0:y1, x0:x1].mean())


def _render_held_out(run: Path, data: Path, feats: Path, out: Path, *extra: str,
                     n: int = len(HELD_OUT)) -> list[np.ndarray]:
    """render.py at the pose of training frame 0 for the held-out features; the frames, float [H,W,3]."""
    rc = render.main(["--datadir", str(data), "--basedir", str(run.parent), "--expname", run.name, "--aud", str(feats),
                      "--pose", "static", "--pose_index", "0", "--save_frames", str(out), "--out",
                      str(out.with_suffix(".mp4")), *extra])
    assert rc == 0
    frames = [iio.imread(p).astype(np.float64) / 255 for p in sorted(out.glob("*.png"))]
    assert len(frames) == n and frames[0].shape == (SIZE, SIZE, 3)
    return frames


def _follows(dark: np.ndarray, gt_dark: np.ndarray) -> tuple[float, float]:
    """(Pearson r of the rendered darkness with the opening, slope of rendered vs ground-truth darkness)."""
    r = float(np.corrcoef(HELD_OUT, dark)[0, 1]) if dark.std() > 1e-9 else 0.0
    return r, float(np.polyfit(gt_dark, dark, 1)[0])


# ---------------------------------------------------------------- training learns
def test_training_learns(trained):
    """No warm-up, 100 iterations of 256 rays: the loss falls >= 2.5x and the validation PSNR gains >= 3 dB and
    ends above 19 dB; mIoU ends above 0.4 (seeds 0-2: loss 0.031-0.037 -> 0.006-0.009 (3.6-5.3x), PSNR 16.0-16.2 ->
    20.8-23.2 dB, mIoU 0.08-0.20 -> 0.60-0.70; with the learning rate zeroed on purpose the loss does not fall;
    2026-12-05, today's model on the pure-torch path, seed 0: 3.1x, 16.4 -> 21.4 dB, mIoU 0.62; 2026-12-07, the
    height+torso gate, seeds 0-2 under AVX2: 2.99 / 5.03 / 4.22x (the height gate 3.10 / 5.42 / 4.21x), PSNR ending
    21.4 / 23.3 / 22.3 dB)."""
    rows = _rows(trained)
    assert [r["iter"] for r in rows] == list(range(10, ITERS + 1, 10))
    loss0 = np.mean([r["loss_photo"] for r in rows[:2]])
    loss1 = np.mean([r["loss_photo"] for r in rows[-2:]])
    psnr0 = np.mean([r["psnr"] for r in rows[:2]])
    psnr1 = np.mean([r["psnr"] for r in rows[-2:]])
    print(f"loss_photo {loss0:.4f} -> {loss1:.4f} ({loss0 / loss1:.1f}x); val PSNR {psnr0:.2f} -> {psnr1:.2f} dB; "
          f"mIoU {rows[0]['miou']:.2f} -> {rows[-1]['miou']:.2f}")
    assert loss1 <= loss0 / 2.5
    assert psnr1 >= psnr0 + 3 and psnr1 > 19
    assert rows[-1]["miou"] > 0.4 > rows[0]["miou"]  # the semantic head learns too


# ---------------------------------------------------------------- audio moves the mouth
def test_mouth_follows_held_out_audio(trained, subject, held_out, tmp_path):
    _, data = subject
    feats, rect, gt_dark = held_out
    assert np.corrcoef(HELD_OUT, gt_dark)[0, 1] > 0.95  # the measure itself follows the opening
    dark = np.array([_darkness(f, rect) for f in _render_held_out(trained, data, feats, tmp_path / "frames")])
    r, slope = _follows(dark, gt_dark)
    print(f"mouth darkness: render {np.round(dark, 3)}, ground truth {np.round(gt_dark, 3)}; r = {r:.3f}, "
          f"slope {slope:.2f}")
    assert r > MIN_R and slope > MIN_SLOPE


def test_zero_audio_model_does_not_follow_audio(subject, held_out, tmp_path):
    root, data = subject
    feats, rect, gt_dark = held_out
    # The control's slope on real features is chance: its audio net never learnt, and the float rounding of the
    # run decides which way its codes drift (benchmarks/NOTES.md: -0.52 .. +0.67 across CPU instruction sets, 0.30
    # with the compiled hash lookup). The pure-torch path (LEARN) and the AVX2 kernels (conftest.py) reproduce the run
    # the thresholds above were measured on; the compiled kernels' own tests are in tests/test_cpu_kernels.py.
    control = _train(root, data, "zero_audio", ITERS, "--zero_audio", "true", "--val_every", str(ITERS))
    assert "zero_audio = true" in (control / "config.txt").read_text()
    # as render.py does for such a run: the audio is zeroed, so mouth closed or wide open give the same frame
    ends = tmp_path / "ends.npy"
    np.save(ends, np.load(feats)[[0, 3]])  # openings 0 and 1
    frames = _render_held_out(control, data, ends, tmp_path / "zeroed", n=2)
    assert np.array_equal(frames[0], frames[1])
    # handed the real features anyway, the mouth does not follow them: the model never learnt from audio
    dark = np.array([_darkness(f, rect) for f in _render_held_out(control, data, feats, tmp_path / "real",
                                                                  "--zero_audio", "false")])
    r, slope = _follows(dark, gt_dark)
    print(f"zero-audio model, real features: darkness {np.round(dark, 3)}; r = {r:.3f}, slope {slope:.2f}")
    assert abs(slope) < MIN_SLOPE  # so the claim's test (r > MIN_R and slope > MIN_SLOPE) fails for it


# ---------------------------------------------------------------- ablation switches
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return NF.make_tiny_dataset(tmp_path_factory.mktemp("ablate"), n_frames=12, size=16)


def _ablation(tmp_path: Path, data: Path, name: str, *extra: str) -> tuple[Path, dict]:
    run = _train_small(tmp_path, data, name, *extra)
    return run, load_checkpoint(run / "ckpt" / "latest.pt")["model"]


def _train_small(tmp_path: Path, data: Path, name: str, *extra: str) -> Path:
    rc = train.main(["--datadir", str(data), "--basedir", str(tmp_path / "logs"), "--expname", name,
                     "--backbone", "hash", *FAST, "--iters", "2", *extra])
    assert rc == 0
    return tmp_path / "logs" / name


def _has(state: dict, part: str) -> bool:
    return any(part in k.split(".") for k in state)


def test_deform_switch(tmp_path, small, trained):
    on = load_checkpoint(trained / "ckpt" / "latest.pt")["model"]
    assert _has(on, "deformation")
    _, off = _ablation(tmp_path, small, "no_deform", "--deform", "false")
    assert not _has(off, "deformation"), sorted(k for k in off if "deformation" in k)


def test_semantic_switch(tmp_path, small, trained):
    on = load_checkpoint(trained / "ckpt" / "latest.pt")["model"]
    assert _has(on, "sem")
    run, off = _ablation(tmp_path, small, "no_semantic", "--semantic", "false")
    assert not _has(off, "sem")
    rec = _rows(run)[-1]
    assert rec["miou"] is None and "loss_sem" not in rec


def _area_shares(data: Path) -> dict[str, float]:
    """Pixel share of each class over the training frames' parsing maps."""
    meta = json.loads((data / "transforms_train.json").read_text())
    maps = [iio.imread(data / "parsing" / f"{f['img_id']}.png") for f in meta["frames"]]
    counts = np.bincount(np.concatenate([m.reshape(-1) for m in maps]), minlength=len(NF.CLASSES))
    return {name: float(c) / counts.sum() for name, c in zip(NF.CLASSES, counts)}


def test_sampling_switch(tmp_path, small):
    """`--sampling uniform --face_share 0`: the share of rays per class is its pixel area (2 x 1024 rays: within
    0.03); the semantic sampler's shares (area^0.5 before any loss feedback) are not."""
    area = _area_shares(small)
    run = _train_small(tmp_path, small, "uniform", "--sampling", "uniform", "--face_share", "0", "--n_rand", "1024")
    uni = _rows(run)[-1]["shares"]
    sem = _rows(_train_small(tmp_path, small, "semantic", "--sampling", "semantic"))[-1]["shares"]
    gap_uni = max(abs(uni[k] - area[k]) for k in area)
    gap_sem = max(abs(sem[k] - area[k]) for k in area)
    print(f"max |share - area|: uniform {gap_uni:.3f}, semantic {gap_sem:.3f}")
    assert gap_uni < 0.03 and gap_sem > 0.08
    assert "sampling = uniform" in (run / "config.txt").read_text()
    assert torch.tensor(list(uni.values())).sum().item() == pytest.approx(1.0, abs=1e-4)
