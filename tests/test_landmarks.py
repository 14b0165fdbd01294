"""Step 4 (landmarks): face mesh on the sample clip vs its ground truth, 68-point mapping, gap filling, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from data_util import landmarks as L
from data_util.context import StepContext
from common.errors import PreprocessError
from common.fileio import save_image
from sample_data.clip import render_clip
from tests.test_sample_clip import project_gt

SIZE = 192


@pytest.fixture(scope="module")
def clip():
    return render_clip(size=SIZE, seconds=2.0, seed=1, progress=False)


@pytest.fixture(scope="module")
def lms(clip):
    return L.detect_landmarks(clip.frames)


def test_landmarks_match_ground_truth(clip, lms):
    assert lms.shape == (len(clip.frames), 478, 3) and lms.dtype == np.float32
    assert not np.isnan(lms).any()
    err = np.linalg.norm(lms[..., :2] - project_gt(clip.gt), axis=-1)  # [N,478] px
    assert np.median(err[:, clip.gt["rigid_indices"]]) < 2.0


def test_mouth_opening_follows_ground_truth(clip, lms):
    mouth = np.array([f["mouth"] for f in clip.gt["frames"]])
    opening = L.mouth_opening(lms)
    assert np.corrcoef(mouth, opening)[0, 1] > 0.9
    assert opening[mouth < 0.05].max(initial=0) < 0.05  # the sample's lips are shut at mouth 0


def test_to_68_layout(lms):
    p68 = L.to_68(lms)
    assert p68.shape == (len(lms), 68, 2)
    f = p68[0]
    assert f[8, 1] > f[30, 1] > f[27, 1]  # chin below nose tip below nose bridge
    assert f[36, 0] < f[39, 0] < f[42, 0] < f[45, 0]  # eye corners left to right in the image
    assert f[48, 0] < f[51, 0] < f[54, 0]  # mouth corners around the upper lip's middle


def test_fill_gaps_interpolates_linearly():
    x = np.zeros((10, 478, 3), np.float32)
    x[:, :, 0] = np.arange(10)[:, None]
    holed = x.copy()
    holed[[0, 4, 5]] = np.nan
    out = L.fill_gaps(holed, "clip.mp4", max_missing=0.5)
    assert np.allclose(out[4:6, :, 0], [[4], [5]])
    assert np.allclose(out[0, :, 0], 1)  # held at the ends


def test_too_many_frames_without_face_is_an_error():
    x = np.full((300, 478, 3), np.nan, np.float32)
    x[:88] = 1
    with pytest.raises(PreprocessError, match=r"no face in 3\.5-12\.0 s \(frames 88-299\) of dataset/vids/x\.mp4; "
                                              r"process the part with a face: --start 0 --end 3\.4$"):
        L.fill_gaps(x, "dataset/vids/x.mp4")


def test_long_gap_is_an_error():
    x = np.ones((1000, 478, 3), np.float32)
    x[100:140] = np.nan
    with pytest.raises(PreprocessError, match=r"no face in 4\.0-5\.6 s \(frames 100-139\) of v\.mp4; "
                                              r"process the part with a face: --start 5\.6 --end 39\.9$"):
        L.fill_gaps(x, "v.mp4")


def test_run_writes_npy_and_lms(tmp_path, clip, lms):
    ctx = StepContext(name="s", video=tmp_path / "s.mp4", out_dir=tmp_path / "s")
    for i, f in enumerate(clip.frames[:12]):
        save_image(ctx.img_dir / f"{i}.jpg", f)
    L.run(ctx)
    got = np.load(ctx.out_dir / "landmarks.npy")
    assert got.shape == (12, 478, 3)
    p68 = np.loadtxt(ctx.img_dir / "3.lms")
    assert p68.shape == (68, 2)
    assert np.abs(p68 - L.to_68(lms[3])).max() < 3.0  # jpeg vs raw frames: close


def test_run_on_frames_without_a_face(tmp_path):
    ctx = StepContext(name="s", video=tmp_path / "noface.mp4", out_dir=tmp_path / "s")
    for i in range(5):
        save_image(ctx.img_dir / f"{i}.jpg", np.full((64, 64, 3), 90 + i, np.uint8))
    with pytest.raises(PreprocessError, match=r"no face found in 5 of 5 frames of .*noface\.mp4"):
        L.run(ctx)
    assert not (ctx.out_dir / "landmarks.npy").exists()
