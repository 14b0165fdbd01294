"""render.py --full_frame: the full-frame background of a 16:9 clip (step 6), the paste and seam, end to end, errors."""
from __future__ import annotations

import json

import cv2
import imageio.v3 as iio
import numpy as np
import pytest

import render
from common.fileio import save_image, save_json
from data_util import video
from data_util.context import StepContext
from data_util.full_frame import median_image, write_full_frame_background
from nerf.full_frame import SEAM, FullFrame
from nerf.mp4 import read_back
from tests.av_media import astronaut_scene, make_anamorphic_video, make_tone
from tests.render_fixtures import train_tiny


def test_median_removes_what_moves():
    rng = np.random.default_rng(0)
    still = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    frames = np.repeat(still[None], 9, axis=0)
    for k in range(9):  # a block that moves across the frame, in each frame somewhere else
        frames[k, 5:10, 3 * k:3 * k + 4] = 255
    assert np.array_equal(median_image(frames), still)


def test_full_frame_background_of_a_16_9_clip(tmp_path):
    scene, _ = astronaut_scene(display_w=320, height=180, face_x=100)  # 16:9
    clip = make_anamorphic_video(tmp_path / "wide.mp4", scene, stored_w=320, sar="1:1")
    ctx = StepContext(name="wide", video=clip, out_dir=tmp_path / "wide")
    video.run(ctx)
    meta = json.loads((ctx.out_dir / "video_meta.json").read_text())
    assert meta["display_size"] == [320, 180] and meta["crop"]["side"] < 180  # a head crop: the rest from the median
    write_full_frame_background(ctx, meta)
    full = iio.imread(ctx.out_dir / "bc_full.jpg")
    assert full.shape == (180, 320, 3)
    err = np.abs(full.astype(float) - scene.astype(float)).mean()
    assert err < 4, err  # the clip's own frame, up to H.264 and JPEG


def test_paste_puts_the_render_in_the_crop_and_leaves_the_rest(tmp_path):
    rng = np.random.default_rng(1)
    bg = rng.integers(0, 256, (180, 320, 3), dtype=np.uint8)
    ff = FullFrame(bg, (100, 0, 180))
    square = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out = ff.paste(square)
    assert out.shape == (180, 320, 3) and ff.size == (320, 180)
    outside = np.ones((180, 320), bool)
    outside[:, 100:280] = False
    assert np.array_equal(out[outside], bg[outside])  # outside the crop: the background, exactly
    band = round(SEAM * 180)
    big = cv2.resize(square, (180, 180), interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(out[:, 100 + band:280 - band], big[:, band:180 - band])  # inside: the render
    # the seam ramps from the background to the render along the left and right edges only (top/bottom are the frame's)
    left = out[:, 100].astype(float)
    assert np.abs(left - bg[:, 100]).mean() < np.abs(left - big[:, 0]).mean()
    assert np.array_equal(out[0, 100 + band:280 - band], big[0, band:180 - band])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("full_frame"))


def _render(run, aud, out, *extra):
    return render.main(["--config", str(run["config"]), "--aud", str(aud), "--out", str(out), *extra])


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in err, err


def test_bad_folders_one_line_errors(run, tmp_path, capsys):
    data = run["datadir"]
    tone = make_tone(tmp_path / "tone.wav", seconds=0.2)
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"previous render")
    capsys.readouterr()
    assert _render(run, tone, out, "--full_frame") == 1  # no video_meta.json (an AD-NeRF folder)
    _one_line_error(capsys, "video_meta.json", "missing")
    save_json(data / "video_meta.json", {"size": 16, "n_frames": 12})  # from before the crop was recorded
    assert _render(run, tone, out, "--full_frame") == 1
    _one_line_error(capsys, "video_meta.json", "no crop recorded", "--step 3 --force")
    save_json(data / "video_meta.json", {"display_size": [28, 16], "crop": {"x": 6, "y": 0, "side": 16}})
    assert _render(run, tone, out, "--full_frame") == 1  # a crop, but no bc_full.jpg
    _one_line_error(capsys, "bc_full.jpg", "--step 6 --force")
    save_image(data / "bc_full.jpg", np.zeros((16, 16, 3), np.uint8))  # the wrong size
    assert _render(run, tone, out, "--full_frame") == 1
    _one_line_error(capsys, "bc_full.jpg", "28x16")
    assert out.read_bytes() == b"previous render"
    (data / "bc_full.jpg").unlink()
    (data / "video_meta.json").unlink()


def test_render_full_frame_end_to_end(run, tmp_path):
    data = run["datadir"]
    rng = np.random.default_rng(2)
    bg = rng.integers(0, 256, (16, 28, 3), dtype=np.uint8)
    save_json(data / "video_meta.json", {"display_size": [28, 16], "crop": {"x": 6, "y": 0, "side": 16}})
    save_image(data / "bc_full.png", bg)  # lossless copy to compare with; render.py reads the jpg
    save_image(data / "bc_full.jpg", bg, quality=100)
    try:
        tone = make_tone(tmp_path / "tone.wav", seconds=0.3)
        out, frames = tmp_path / "full.mp4", tmp_path / "frames"
        assert _render(run, tone, out, "--full_frame", "--save_frames", str(frames), "--pose", "static") == 0
        back = read_back(out)
        assert (back["width"], back["height"]) == (28, 16) and back["frames"] == 8
        bg_read = cv2.cvtColor(cv2.imread(str(data / "bc_full.jpg")), cv2.COLOR_BGR2RGB)
        for png in sorted(frames.glob("*.png")):
            img = iio.imread(png)
            assert img.shape == (16, 28, 3)
            assert np.array_equal(img[:, :6], bg_read[:, :6]) and np.array_equal(img[:, 22:], bg_read[:, 22:])
        # the square render (no --full_frame) is what sits inside the crop
        sq_frames = tmp_path / "sq"
        assert _render(run, tone, tmp_path / "sq.mp4", "--save_frames", str(sq_frames), "--pose", "static") == 0
        sq = iio.imread(sorted(sq_frames.glob("*.png"))[0])
        assert np.array_equal(iio.imread(sorted(frames.glob("*.png"))[0])[:, 7:21], sq[:, 1:15])
    finally:
        for name in ("video_meta.json", "bc_full.jpg", "bc_full.png"):
            (data / name).unlink(missing_ok=True)
