"""Step 3 (data_util.video): 25 fps frames, square pixels, the face-centred square crop, atomic folder, bad input."""
from __future__ import annotations

import json
import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from common.quiet import quiet_native_stderr
from data_util import video
from data_util.context import StepContext
from common.errors import PreprocessError
from common.ffmpeg import run_ffmpeg
from tests.av_media import astronaut_scene, make_anamorphic_video, make_tone, make_video


def ctx_for(tmp_path: Path, path: Path, size: int | None = None, crop: str = "head") -> StepContext:
    return StepContext(name="x", video=path, out_dir=tmp_path / "out", size=size, crop=crop)


def meta_of(ctx: StepContext) -> dict:
    return json.loads((ctx.out_dir / "video_meta.json").read_text())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0 ** 2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))


def test_square_video_resampled_to_25fps_keeps_size(tmp_path):
    ctx = ctx_for(tmp_path, make_video(tmp_path / "sq.mp4", size="64x64", seconds=2.0, fps=30, audio=False))
    video.run(ctx)
    frames = ctx.frame_paths()
    assert [p.name for p in frames[:3]] == ["0.jpg", "1.jpg", "2.jpg"] and len(frames) == 50  # 2 s at 25 fps
    assert iio.imread(frames[0]).shape == (64, 64, 3)
    meta = meta_of(ctx)
    assert meta["source_fps"] == 30 and meta["n_frames"] == 50 and meta["size"] == 64 and meta["crop"] is None
    assert not list(ctx.out_dir.glob(".tmp-*"))


def test_size_option_resizes(tmp_path):
    ctx = ctx_for(tmp_path, make_video(tmp_path / "sq.mp4", size="64x64", seconds=0.4, audio=False), size=48)
    video.run(ctx)
    assert iio.imread(ctx.frame_paths()[0]).shape == (48, 48, 3) and meta_of(ctx)["size"] == 48


def test_non_square_pixels_without_face_centre_crop(tmp_path, capsys):
    """128x96 stored with SAR 4:3 is 171x96 in square pixels; no face: the centre 96x96, with a warning."""
    ctx = ctx_for(tmp_path, make_video(tmp_path / "sar.mp4", size="128x96", seconds=0.4, sar="4/3"))
    video.run(ctx)
    meta = meta_of(ctx)
    assert meta["display_size"] == [171, 96] and abs(meta["sar"] - 4 / 3) < 1e-6
    assert meta["crop"] == {"x": 38, "y": 0, "side": 96} and meta["face_box"] is None
    assert iio.imread(ctx.frame_paths()[0]).shape == (96, 96, 3)
    assert "no face found" in capsys.readouterr().err


def test_large_crop_scaled_down_unless_size_given(tmp_path, monkeypatch, capsys):
    """A square crop larger than MAX_FRAME_SIZE is scaled down to it (and says so); --size wins over the cap."""
    monkeypatch.setattr(video, "MAX_FRAME_SIZE", 48)
    path = make_video(tmp_path / "wide.mp4", size="128x96", seconds=0.4, audio=False)
    ctx = ctx_for(tmp_path, path)
    video.run(ctx)
    meta = meta_of(ctx)
    assert meta["crop"]["side"] == 96 and meta["size"] == 48
    assert iio.imread(ctx.frame_paths()[0]).shape == (48, 48, 3)
    assert "scaled down from 96 px (--size 96 keeps its full resolution)" in capsys.readouterr().out
    ctx = StepContext(name="x", video=path, out_dir=tmp_path / "out2", size=80)
    video.run(ctx)
    assert meta_of(ctx)["size"] == 80 and iio.imread(ctx.frame_paths()[0]).shape == (80, 80, 3)


@pytest.fixture(scope="module")
def astronaut_video(tmp_path_factory):
    """The astronaut in a wide 427x180 scene, stored as 320x180 with SAR 4:3."""
    scene, face = astronaut_scene(display_w=427, height=180, face_x=227)
    path = make_anamorphic_video(tmp_path_factory.mktemp("astro") / "astro.mp4", scene, stored_w=320, sar="4/3")
    return path, scene, face


def test_crop_centred_on_face_in_anamorphic_video(tmp_path, astronaut_video):
    path, scene, (fx, fy) = astronaut_video
    ctx = ctx_for(tmp_path, path, crop="largest")
    video.run(ctx)
    meta = meta_of(ctx)
    crop = meta["crop"]
    assert crop["side"] == 180 and crop["y"] == 0
    assert abs(crop["x"] + 90 - fx) <= 4  # the face is centred horizontally (centre crop would be x = 124)
    box = meta["face_box"]
    assert box[0] < fx < box[2] and box[1] < fy < box[3]
    img = iio.imread(ctx.frame_paths()[0])
    x = crop["x"]
    assert psnr(img, scene[:, x:x + 180]) > 26  # the right pixels, in square pixels (SAR applied)
    assert psnr(img, scene[:, x + 4:x + 184]) < 20  # (a 4 px shift would be visibly wrong)


def test_head_crop_of_a_wide_shot(tmp_path, astronaut_video, capsys):
    """The astronaut's face is a fifth of the frame's height: the default crop is a head-and-shoulders square of
    3 face sizes about it (with the right pixels), and says so."""
    path, scene, (fx, fy) = astronaut_video
    ctx = ctx_for(tmp_path, path)
    video.run(ctx)
    meta = meta_of(ctx)
    x, y, side = (meta["crop"][k] for k in ("x", "y", "side"))
    box = meta["face_box"]
    assert abs(side - 3 * max(box[2] - box[0], box[3] - box[1])) <= 1 and side < 180 and meta["size"] == side
    assert x < fx < x + side and abs(fy - (y + 0.4 * side)) <= 4  # the face centre 40 % down the square
    assert psnr(iio.imread(ctx.frame_paths()[0]), scene[y:y + side, x:x + side]) > 26
    assert "a head-and-shoulders square" in capsys.readouterr().out


def test_crop_then_resize(tmp_path, astronaut_video):
    path, scene, _ = astronaut_video
    ctx = ctx_for(tmp_path, path, size=128, crop="largest")
    video.run(ctx)
    meta = meta_of(ctx)
    assert meta["size"] == 128 and iio.imread(ctx.frame_paths()[0]).shape == (128, 128, 3)
    assert meta["crop"]["x"] == 216


def test_portrait_video_keeps_shoulders_below_face():
    """Tall frame: the square is placed with the face centre 40 % down it (room for the shoulders)."""
    face = np.array([[70, 120, 110, 170]])  # face centre (90, 145)
    x, y, side = video.square_crop(180, 320, face, "largest")
    assert (x, side) == (0, 180) and y == round(145 - 0.4 * 180)
    assert video.square_crop(180, 320, np.array([[70, 0, 110, 30]]), "largest")[1] == 0  # clamped at the top
    assert video.square_crop(427, 180, np.array([[400, 40, 427, 80]]), "largest") == (247, 0, 180)  # at the right
    assert video.square_crop(320, 180, None, "head") == (70, 0, 180)  # no face: the centre square


def test_head_crop_where_the_face_is_small():
    """A waist-up shot (a 60 px face in a 1280x720 frame): --crop head cuts a square of 3 face sizes with the face
    centre 40 % down it; faces further apart widen it (each keeps half a face of room); a face that is large in the
    frame keeps the largest square, as --crop largest does."""
    small = np.array([[600, 200, 660, 260]])  # centre (630, 230), 60 px
    x, y, side = video.square_crop(1280, 720, small, "head")
    assert side == 180 and x == 630 - 90 and y == round(230 - 0.4 * 180)
    assert video.square_crop(1280, 720, small, "largest")[2] == 720
    moving = np.array([[500, 200, 560, 260], [600, 200, 660, 260], [700, 200, 760, 260]])  # centres 530, 630, 730
    x, y, side = video.square_crop(1280, 720, moving, "head")
    assert side == 2 * (100 + 60) and x == 630 - 160  # every face inside with 30 px to spare
    assert x + 30 <= 500 and 760 + 30 <= x + side
    rising = np.array([[600, 200, 700, 300], [600, 400, 700, 500], [600, 600, 700, 700]])  # centre y 250..650
    x, y, side = video.square_crop(1920, 1080, rising, "head")
    assert y + 50 <= 200 and 700 + 50 <= y + side  # half a face of room above the highest and below the lowest
    assert video.square_crop(1920, 1080, np.array([[900, 500, 904, 504]]), "head")[2] == video.MIN_SIDE
    large = np.array([[500, 200, 800, 500]])  # 300 px: 3 face sizes exceed the frame's 720
    assert video.square_crop(1280, 720, large, "head") == video.square_crop(1280, 720, large, "largest")
    assert video.square_crop(720, 720, small, "head")[2] == 180  # a square video is cropped too


def test_failed_or_killed_run_leaves_no_partial_folder(tmp_path, monkeypatch):
    ctx = ctx_for(tmp_path, make_video(tmp_path / "sq.mp4", size="64x64", seconds=0.4, audio=False))
    stale = ctx.out_dir / ".tmp-ori_imgs-99999"  # what a killed run leaves behind
    stale.mkdir(parents=True)
    (stale / "0.jpg").write_bytes(b"partial")
    video.run(ctx)
    assert not stale.exists() and len(ctx.frame_paths()) == 10
    before = {p.name: p.read_bytes() for p in ctx.img_dir.iterdir()}

    real = video.extract_frames

    def interrupted(path, vf, folder, before):
        real(path, vf, folder, before)
        raise KeyboardInterrupt  # killed after writing frames, before the rename

    monkeypatch.setattr(video, "extract_frames", interrupted)
    with pytest.raises(KeyboardInterrupt):
        video.run(ctx)
    assert {p.name: p.read_bytes() for p in ctx.img_dir.iterdir()} == before  # old frames intact
    assert not list(ctx.out_dir.glob(".tmp-*"))


def test_truncated_video_decodes_what_is_readable(tmp_path, capsys):
    full = make_video(tmp_path / "full.mp4", size="96x96", seconds=2.0, fps=25, faststart=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    ctx = ctx_for(tmp_path, cut)
    video.run(ctx)
    n = len(ctx.frame_paths())
    assert 5 < n < 45 and meta_of(ctx)["n_frames"] == n
    err = capsys.readouterr().err
    assert f"decoded {n} frames of the 50" in err and "truncated" in err


def test_truncated_without_index_fails_clearly(tmp_path):
    full = make_video(tmp_path / "full.mp4", size="64x64", seconds=1.0)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(PreprocessError, match=r"cut\.mp4: truncated or unfinished mp4"):
        video.run(ctx_for(tmp_path, cut))
    assert not (tmp_path / "out" / "ori_imgs").exists()


def test_not_a_video(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 50)
    with pytest.raises(PreprocessError, match=r"notes\.mp4: not a readable video or audio file$"):
        video.run(ctx_for(tmp_path, text))
    tone = make_tone(tmp_path / "speech.wav")
    with pytest.raises(PreprocessError, match=r"speech\.wav: no video stream"):
        video.run(ctx_for(tmp_path, tone))
    with pytest.raises(PreprocessError, match=r"gone\.mp4: file not found"):
        video.run(ctx_for(tmp_path, tmp_path / "gone.mp4"))


def test_nothing_decodable_fails_clearly(tmp_path):
    full = make_video(tmp_path / "full.mp4", size="96x64", seconds=1.0, faststart=True)
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: data.find(b"mdat") + 100])  # the index survives, the frames do not
    with pytest.raises(PreprocessError, match=r"cut\.mp4: no frame could be decoded") as err:
        video.run(ctx_for(tmp_path, cut))
    assert "\n" not in str(err.value) and "@ 0x" not in str(err.value)
    assert not (tmp_path / "out" / "ori_imgs").exists()


def test_rotation_flag_is_applied(tmp_path):
    """A 128x96 SAR 4:3 clip flagged 'rotate 90' decodes upright as 96x128 with SAR 3:4 -> 72x128 square pixels."""
    flat = make_video(tmp_path / "flat.mp4", size="128x96", seconds=0.4, sar="4/3", audio=False)
    rot = tmp_path / "rot.mp4"
    run_ffmpeg(["-display_rotation", "90", "-i", str(flat), "-c", "copy", str(rot)], what=str(rot))
    ctx = ctx_for(tmp_path, rot)
    video.run(ctx)
    meta = meta_of(ctx)
    assert meta["display_size"] == [72, 128] and meta["crop"]["side"] == 72
    assert iio.imread(ctx.frame_paths()[0]).shape == (72, 72, 3)


def test_quiet_native_stderr_keeps_the_progress_bar(capfd):
    """Native writes on fd 2 are dropped inside the context; a tqdm bar given the yielded stream still shows."""
    from tqdm import tqdm

    with quiet_native_stderr() as stderr:
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        for _ in tqdm(range(3), desc="frames", file=stderr):
            pass
    err = capfd.readouterr().err
    assert "frames: 100%" in err and "3/3" in err and "TensorFlow" not in err


def test_changing_the_crop_redoes_the_video_step(tmp_path):
    """--crop is one of step 3's options: frames made with another crop are not current."""
    from data_util import markers

    ctx = ctx_for(tmp_path, tmp_path / "x.mp4")
    markers.mark_done(ctx, "video", 1.0)
    assert markers.is_current(ctx, "video")
    other = ctx_for(tmp_path, tmp_path / "x.mp4", crop="largest")
    assert markers.changed_options(other, "video") == ["--crop head -> largest"]
    assert not markers.is_current(other, "video")


def test_tall_video_with_the_face_at_the_top_keeps_its_crop(tmp_path, monkeypatch):
    """A portrait frame whose square starts at its top-left corner is still cut (not squashed whole into a square)."""
    monkeypatch.setattr(video, "find_faces", lambda *a: np.array([[30.0, 10.0, 66.0, 46.0]]))  # near the top
    ctx = ctx_for(tmp_path, make_video(tmp_path / "tall.mp4", size="96x160", seconds=0.4, audio=False),
                  crop="largest")
    video.run(ctx)
    assert meta_of(ctx)["crop"] == {"x": 0, "y": 0, "side": 96}
    assert iio.imread(ctx.frame_paths()[0]).shape == (96, 96, 3)


def test_a_still_image_or_a_few_frames_is_one_clear_error_and_keeps_the_frames_there(tmp_path):
    ctx = ctx_for(tmp_path, make_video(tmp_path / "ok.mp4", size="64x64", seconds=1.0, fps=25))
    video.run(ctx)
    before = sorted(p.name for p in ctx.img_dir.iterdir())
    for short in (make_video(tmp_path / "short.mp4", size="64x64", seconds=0.2, fps=25), tmp_path / "still.png"):
        if short.suffix == ".png":
            iio.imwrite(short, np.full((64, 64, 3), 128, np.uint8))
        with pytest.raises(PreprocessError, match=rf"{short.name}: \d frames? decoded \(0\.\d+ s at 25 fps\); a talking"):
            video.run(ctx_for(tmp_path, short))
        assert sorted(p.name for p in ctx.img_dir.iterdir()) == before  # the dataset's frames are kept


def test_ffmpegs_complaint_is_the_error_not_its_repeat_count():
    from common.ffmpeg import last_error

    err = (b"[h264 @ 0x55d0c0a0b2c0] Invalid NAL unit size (1040 > 219).\n"
           b"Error submitting packet to decoder: Invalid data found when processing input\n"
           b"    Last message repeated 2 times\n")
    assert last_error(err) == "Error submitting packet to decoder: Invalid data found when processing input"
    assert last_error(b"[aac @ 0x1234abcd] Too large remapped id\n") == "Too large remapped id"
    assert last_error(b"") == "unknown error"
