"""Step 9 (debug): overlays, contact sheet and pose plot are written and show what they should."""
from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from data_util import debug, tracking
from data_util.context import StepContext
from common.errors import PreprocessError
from tests.tracking_fixtures import synth_clip, write_frames


@pytest.fixture()
def subject(tmp_path):
    n, size = 12, 128
    clip = synth_clip(n=n, size=size, noise=0.0, expression=False, seed=8)
    out_dir = tmp_path / "subj"
    write_frames(out_dir, n, size)
    (out_dir / "parsing" / "classes.json").write_text(json.dumps({"classes": ["background", "face", "brows"]}))
    for i in range(n):
        np.savetxt(out_dir / "ori_imgs" / f"{i}.lms", clip.lms[i, :68, :2])
    params = {"focal": np.array([clip.focal]), "euler": clip.rot.as_euler("xyz"), "trans": clip.trans,
              "id": clip.head, "image_size": np.array([size, size]), "reproj_err": np.full(n, 0.5),
              "rigid": np.arange(100)}
    tracking.save_params(out_dir / "track_params.pt", params)
    return StepContext(name="subj", video=tmp_path / "x.mp4", out_dir=out_dir), clip


def test_writes_overlays_sheet_and_plot(subject):
    ctx, clip = subject
    debug.run(ctx)
    frames = sorted(ctx.debug_dir.glob("frame_*.jpg"))
    assert len(frames) == 8
    sheet = iio.imread(ctx.debug_dir / "contact_sheet.png")
    assert sheet.shape[0] >= 2 * 128 and sheet.shape[1] == 4 * 128 and sheet.shape[2] == 3
    plot = iio.imread(ctx.debug_dir / "poses.png")
    assert plot.shape[0] > 300 and plot.shape[1] > 600
    assert plot[..., :3].std() > 10  # not blank


def test_overlay_draws_axes_at_the_head_origin(subject):
    ctx, clip = subject
    params = tracking.load_params(ctx.out_dir / "track_params.pt")
    i = 3
    img = debug.overlay(ctx, i, params, None)
    rot = Rotation.from_euler("xyz", params["euler"][i]).as_matrix()
    c = np.array([64.0, 64.0])
    o, x_end = debug.project(np.array([[0, 0, 0], [0.05, 0, 0]]), rot, params["trans"][i], float(params["focal"][0]), c)
    mid = ((o + x_end) / 2).astype(int)
    r, g, b = img[mid[1] - 1:mid[1] + 2, mid[0] - 1:mid[0] + 2].reshape(-1, 3).astype(int).T
    assert (r - np.maximum(g, b)).max() > 100  # the x axis is drawn red through its midpoint


def test_blend_parsing_colours_only_foreground():
    img = np.full((4, 4, 3), 100, np.uint8)
    par = np.zeros((4, 4), np.uint8)
    par[0, 0] = 7
    out = debug.blend_parsing(img, par)
    assert (out[1:, :] == 100).all()
    assert not (out[0, 0] == 100).all()


def test_missing_track_params(tmp_path):
    with pytest.raises(PreprocessError, match="track_params.pt: not found"):
        debug.run(StepContext(name="s", video=tmp_path / "x.mp4", out_dir=tmp_path / "s"))
