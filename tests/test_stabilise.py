"""data_util/stabilise.py: step 3's virtual tripod, on synthetic clips whose camera motion is known."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from data_util import stabilise, video
from data_util.camera_motion import displacement
from data_util.context import StepContext
from nerf.mp4 import Mp4Writer
from tests.test_camera_motion import texture

W, H, N = 192, 128, 50  # display size, frames (2 s at 25 fps)
MARGIN = 40  # the wall is this much larger than the frame on every side


def camera(k: int, amp: float, pan: float = 0.0) -> np.ndarray:
    """[3,3]: the wall's pixels -> frame k's: a hand's sway (amp px, a third of a degree of roll) plus a pan of
    `pan` px a frame, about the frame's centre."""
    a = np.radians(0.33 * np.sin(0.31 * k))
    dx, dy = amp * np.sin(0.23 * k + 1) - pan * k, amp * np.cos(0.17 * k)
    c, s = np.cos(a), np.sin(a)
    centre = np.array([[1, 0, W / 2], [0, 1, H / 2], [0, 0, 1.0]])
    move = np.array([[c, -s, dx - MARGIN], [s, c, dy - MARGIN], [0, 0, 1]])
    return centre @ move @ np.linalg.inv(centre)


def shaky_clip(path, amp: float, pan: float = 0.0) -> np.ndarray:
    """Write N frames of a camera swaying over a textured wall (a grey box in the middle standing for the person,
    still in the world) to path (mp4); returns the true motion [N,3,3] (wall pixels -> frame pixels)."""
    wall = texture(np.random.default_rng(1), W + 2 * MARGIN + int(pan * N))
    wall = wall[:H + 2 * MARGIN]
    wall[MARGIN + 50:, MARGIN + 76:MARGIN + 116] = 110
    writer, mats = Mp4Writer(path, W, H, crf=12), []
    for k in range(N):
        m = camera(k, amp, pan)
        writer.write(cv2.warpAffine(wall, m[:2], (W, H), flags=cv2.INTER_LINEAR))
        mats.append(m)
    writer.close()
    return np.array(mats)


def path_of(path) -> stabilise.CameraPath | None:
    """The path step 3 finds for a clip cut to its largest square (H px): held still beyond 2% of it."""
    return stabilise.camera_path(path, [], "fps=25,setsar=1", W, H, 0.02 * H, N)


def test_the_camera_path_is_found_within_half_a_pixel(tmp_path, capsys):
    clip = tmp_path / "shaky.mp4"
    true = shaky_clip(clip, amp=6.0)
    found = path_of(clip)
    assert found is not None and len(found.transforms) == N
    rel = true @ np.linalg.inv(true[found.reference])  # the reference's view -> frame k
    err = [displacement((np.linalg.inv(r) @ f)[:2], H, W) for f, r in zip(found.transforms, rel)]
    assert np.median(err) < 0.5 and max(err) < 1.5, np.round(err, 2)
    assert f"frames stabilised to the view of frame {found.reference}" in capsys.readouterr().out


def test_a_still_camera_and_a_long_pan_are_left_as_they_are(tmp_path, capsys):
    still = tmp_path / "still.mp4"
    shaky_clip(still, amp=0.0)
    assert path_of(still) is None
    assert "stabilised" not in capsys.readouterr().out
    pan = tmp_path / "pan.mp4"
    shaky_clip(pan, amp=0.0, pan=2.5)  # 122 px over the clip: 61 px from the middle, 32% of the frame
    assert path_of(pan) is None
    assert "too far to hold still (a pan?); frames left as they are" in capsys.readouterr().err


def run_step3(tmp_path, clip, stabilise_opt: str) -> tuple[list[np.ndarray], dict]:
    ctx = StepContext(name=f"s-{stabilise_opt}", video=clip, out_dir=tmp_path / f"s-{stabilise_opt}",
                      crop="largest", stabilise=stabilise_opt)
    video.run(ctx)
    frames = [cv2.imread(str(p)).astype(np.float32) for p in ctx.frame_paths()]
    return frames, json.loads((ctx.out_dir / "video_meta.json").read_text())


def filled_share(out_dir) -> float:
    """The share of the written frames' pixels that lie outside their source frame (filled): step 5 labels them
    `unseen` from stabilise.seen_masks."""
    masks = list(stabilise.seen_masks(out_dir, N))
    assert len(masks) == N and masks[0].shape == (json.loads((out_dir / "video_meta.json").read_text())["size"],) * 2
    return float(np.mean([1 - m.mean() for m in masks]))


@pytest.mark.parametrize("min_keep", [stabilise.MIN_KEEP, 1.0])
def test_step3_writes_the_frames_in_one_view_inside_what_they_see(tmp_path, monkeypatch, min_keep):
    """The frames in one view; the square shrunk (to no less than MIN_KEEP of it) to lie inside what every frame
    sees, so nothing is filled; kept at full size (min_keep 1), its empty edges filled, not left black."""
    monkeypatch.setattr(stabilise, "MIN_KEEP", min_keep)
    clip = tmp_path / "shaky.mp4"
    shaky_clip(clip, amp=6.0)
    held, meta = run_step3(tmp_path, clip, "auto")
    shot, meta_off = run_step3(tmp_path, clip, "off")
    assert meta["stabilised"]["shift_px"] > 6 and meta_off["stabilised"] is None
    assert (tmp_path / "s-auto" / "camera_path.npy").is_file() and not (tmp_path / "s-off" / "camera_path.npy").exists()
    side = meta["crop"]["side"]
    assert len(held) == len(shot) == N and held[0].shape == (side, side, 3) and shot[0].shape == (H, H, 3)
    inner = (slice(12, -12), slice(12, 40))  # wall, away from the edges a moved frame leaves empty
    change = lambda fr: np.mean([np.abs(f[inner] - fr[0][inner]).mean() for f in fr[1:]])  # noqa: E731
    assert change(held) < 0.3 * change(shot), (change(held), change(shot))
    if min_keep < 1:
        assert 0.85 * H <= side < H - 6 and filled_share(tmp_path / "s-auto") == 0.0, side
    else:
        assert side == H and filled_share(tmp_path / "s-auto") > 0.01
    assert list(stabilise.seen_masks(tmp_path / "s-off", 3)) == [None] * 3
    black = np.mean([(f.max(-1) < 8).mean() for f in held])
    assert black < 0.002, black  # the empty edges are filled, not left black


def test_the_square_moves_or_shrinks_only_as_far_as_the_camera_moved():
    """stabilise.inside_seen on made-up paths (1920x1080, the square 1080 px at x 420): a still camera and a
    sideways sway keep it; a vertical sway of +-30 px shrinks it to what every frame sees (its cells all seen);
    a face box reaching the frame's bottom keeps it (and its filled edges)."""
    def path(shifts):
        t = np.repeat(np.eye(3)[None], len(shifts), 0)
        t[:, :2, 2] = shifts
        return stabilise.CameraPath(t, 0, 0.0)

    crop = (420, 0, 1080)
    assert stabilise.inside_seen(path([(0, 0)] * 5), crop, 1920, 1080) == crop
    assert stabilise.inside_seen(path([(x, 0) for x in np.linspace(-30, 30, 20)]), crop, 1920, 1080) == crop
    sway = path([(0, y) for y in np.linspace(-30, 30, 20)])
    x, y, side = stabilise.inside_seen(sway, crop, 1920, 1080)
    assert 0.85 * 1080 <= side <= 1080 - 60 and 30 <= y and y + side <= 1050 and abs(x + side / 2 - 960) <= 6
    assert stabilise.inside_seen(sway, crop, 1920, 1080, np.array([[700.0, 100, 1200, 1075]])) == crop


def test_the_full_frame_background_is_taken_in_the_reference_view(tmp_path):
    """Step 6's bc_full.jpg (render.py --full_frame pastes into it) from the stabilised frames: the wall as the
    reference frame shows it, sharp; from the frames as shot, a blur of the sway."""
    from data_util.full_frame import full_frame_path, write_full_frame_background

    clip = tmp_path / "shaky.mp4"
    shaky_clip(clip, amp=6.0)
    shot = list(stabilise.decoder(clip, [], "fps=25,setsar=1", W, H)(""))
    errors = {}
    for opt in ("auto", "off"):
        _, meta = run_step3(tmp_path, clip, opt)
        ctx = StepContext(name=f"s-{opt}", video=clip, out_dir=tmp_path / f"s-{opt}", crop="largest", stabilise=opt)
        write_full_frame_background(ctx, meta)
        full = cv2.cvtColor(cv2.imread(str(full_frame_path(ctx))), cv2.COLOR_BGR2RGB).astype(np.float32)
        ref = meta["stabilised"]["reference_frame"] if meta["stabilised"] else 0
        errors[opt] = np.abs(full[2:-2, 2:-2] - shot[ref][2:-2, 2:-2]).mean()  # the reference as shot, to its edges
    assert errors["auto"] < 0.35 * errors["off"], errors  # (bilinear warps soften the noise wall: not 0)


def test_every_nth_frame_is_streamed_once(tmp_path):
    """The probe and the edge filling read every n-th frame: frames 0, n, 2n, ... once each, not the rate's
    duplicates of them."""
    clip = tmp_path / "shaky.mp4"
    shaky_clip(clip, amp=6.0)
    stream = stabilise.decoder(clip, [], "fps=25,setsar=1", W, H)
    every = list(stream(""))
    tenth = list(stream(stabilise.every_nth(10)))
    assert len(every) == N and len(tenth) == N // 10
    assert all(np.array_equal(a, every[10 * i]) for i, a in enumerate(tenth))


def test_unmatched_frames_move_with_their_matched_neighbours():
    shifts = np.array([0.0, 2.0, 99.0, 99.0, 8.0, 10.0, 99.0])  # 99: frames matched to none (held or garbage)
    transforms = np.repeat(np.eye(3)[None], len(shifts), 0)
    transforms[:, 0, 2] = shifts
    matched = shifts != 99.0
    out = stabilise.interpolate_unmatched(transforms, matched)
    assert np.allclose(out[:, 0, 2], [0, 2, 4, 6, 8, 10, 10]) and np.allclose(out[:, :2, :2], np.eye(2))
