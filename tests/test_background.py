"""Step 6 (background): median over background pixels, nearest fill where the person always stands."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from data_util import background as B
from data_util import median as M
from data_util.context import StepContext
from common.errors import PreprocessError
from common.fileio import save_image

H = W = 64


def scene(n: int = 20) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """A smooth background and n frames with a moving 'person' block (labels: 9 inside, 0 outside)."""
    yy, xx = np.mgrid[0:H, 0:W]
    bg = np.stack([2 * xx + 40, 3 * yy + 20, np.full_like(xx, 120)], -1).astype(np.uint8)
    frames, labels = [], []
    rng = np.random.default_rng(0)
    for i in range(n):
        f, lb = bg.copy(), np.zeros((H, W), np.uint8)
        x0 = 10 + i  # moves right; columns 29..39 are covered in every frame
        f[20:, x0:x0 + 30] = rng.integers(0, 255, 3)
        lb[20:, x0:x0 + 30] = 9
        frames.append(f)
        labels.append(lb)
    return bg, frames, labels


def test_median_recovers_background_and_fills_never_seen():
    bg, frames, labels = scene()
    masks = [M.background_mask(lb, 1) for lb in labels]
    img, seen = M.median_background(frames, masks)
    assert not seen[30:, 32:38].any() and seen[:18].all()
    assert np.abs(img[seen].astype(int) - bg[seen]).max() <= 1
    filled = M.fill_unseen(img, seen)
    # unseen pixels take their nearest seen neighbour's colour: within a few columns' gradient of the truth
    assert np.abs(filled[30:, 32:38].astype(int) - bg[30:, 32:38]).max() <= 2 * 8 + 1


def test_run_writes_bc(tmp_path):
    bg, frames, labels = scene()
    ctx = StepContext(name="s", video=tmp_path / "s.mp4", out_dir=tmp_path / "s")
    for i, (f, lb) in enumerate(zip(frames, labels)):
        save_image(ctx.img_dir / f"{i}.jpg", f)
        save_image(ctx.parsing_dir / f"{i}.png", lb)
    B.run(ctx)
    bc = cv2.cvtColor(cv2.imread(str(ctx.out_dir / "bc.jpg")), cv2.COLOR_BGR2RGB)
    assert bc.shape == (H, W, 3)
    assert np.abs(bc[:15].astype(int) - bg[:15]).mean() < 3


def test_person_everywhere_is_an_error(tmp_path):
    ctx = StepContext(name="s", video=tmp_path / "s.mp4", out_dir=tmp_path / "s")
    save_image(ctx.img_dir / "0.jpg", np.zeros((H, W, 3), np.uint8))
    save_image(ctx.parsing_dir / "0.png", np.full((H, W), 9, np.uint8))
    with pytest.raises(PreprocessError, match="no pixel is background"):
        B.run(ctx)
    assert not (ctx.out_dir / "bc.jpg").exists()
