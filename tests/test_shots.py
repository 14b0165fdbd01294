"""Shots (data_util.shots): cuts, dissolves and fades found; a shaking camera, a pan, a flash and a hand are none;
step 3 stops on a span that is not one shot, with the trim of its longest shot with a face."""
from __future__ import annotations

import json
import math

import numpy as np
from scipy.ndimage import shift

from data_util import runner, shots
from tests.av_media import make_face_then_blank

H, W = 36, 64


def scene(which: str, pad: int = 12) -> np.ndarray:
    """A photograph (skimage.data) as a [H + 2 pad, W + 2 pad, 3] float picture (room to move a window over it)."""
    import cv2
    import skimage.data

    img = getattr(skimage.data, which)()
    img = img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2)
    return cv2.resize(img[..., :3], (W + 2 * pad, H + 2 * pad), interpolation=cv2.INTER_AREA).astype(np.float32)


def view(img: np.ndarray, dx: float = 0.0, dy: float = 0.0, pad: int = 12) -> np.ndarray:
    """The H x W window of img moved by (dx, dy) pixels, as float32 thumbnails are."""
    moved = shift(img, (dy, dx, 0), order=1, mode="nearest")
    return np.clip(moved[pad:pad + H, pad:pad + W], 0, 255).astype(np.float32)


def test_a_cut_and_a_dissolve_are_found_and_split_the_shots():
    """30 frames of A (a still camera's jitter), a cut to B (30 frames), a 12-frame dissolve B -> C with a repeated
    frame in it (25 fps from a slower video), 30 frames of C: transitions at the cut and over the dissolve, three
    shots."""
    a, b, c = scene("coffee"), scene("chelsea"), scene("astronaut")
    rng = np.random.default_rng(3)
    frames = [view(a, *rng.normal(0, 0.1, 2)) for _ in range(30)] + [view(b, 0.1 * k) for k in range(30)]
    blends = [(1 - w) * view(b, 3.0) + w * view(c) for w in np.arange(1, 13) / 13]
    frames += blends[:6] + [blends[5]] + blends[6:] + [view(c, 0.1 * k) for k in range(30)]
    thumbs = np.stack(frames)
    found = shots.find_transitions(thumbs)
    assert len(found) == 2 and found[0] == (30, 30), found
    lo, hi = found[1]
    assert 59 <= lo <= 60 and 73 <= hi <= 74, found  # the 13 dissolve frames (60-72), a frame either side at most
    cut = shots.split(len(thumbs), found)
    assert cut[0] == (0, 30) and cut[1][0] == 30 and cut[2][1] == len(thumbs) and len(cut) == 3, cut


def test_a_shaking_camera_a_pan_a_flash_and_a_hand_are_one_shot():
    """A hand-held sway of 1.5 px a frame (rms) at 64 px (the simulated hand-held clip of benchmarks/handheld.py:
    about 1), a fast pan (3 px a frame: across the frame in under a second), a one-frame flash and a dark hand swept
    across the lens in 4 frames: no transition."""
    a = scene("coffee", pad=30)
    rng = np.random.default_rng(5)
    sway = np.cumsum(rng.normal(0, 1.5, (80, 2)), axis=0).clip(-12, 12)
    frames = [view(a, dx, dy, pad=30) for dx, dy in sway]
    frames += [view(a, sway[-1, 0] - 3.0 * k, sway[-1, 1], pad=30) for k in range(10)]  # a fast pan
    frames[40] = np.full_like(frames[40], 250.0)  # a flash
    for k, x in enumerate(range(0, 64, 16)):  # a hand passing the lens
        frames[60 + k] = frames[60 + k].copy()
        frames[60 + k][:, x:x + 24] = 20.0
    assert shots.find_transitions(np.stack(frames)) == []


def test_a_light_that_dims_and_a_hand_over_the_lens_are_no_transition():
    """A picture dimmed by 30% over 5 frames (a light, the camera's exposure) and kept so, and a dark hand that
    comes in over 3 frames, stays 8 and leaves: one shot. A fade to black over 5 frames is a transition."""
    a = scene("chelsea")
    still = view(a)
    dim = [still] * 20 + [still * (1 - 0.06 * k) for k in range(1, 6)] + [still * 0.7] * 20
    assert shots.find_transitions(np.stack(dim)) == []
    hand = [still.copy() for _ in range(40)]
    for k, width in enumerate([16, 32, 48] + [64] * 8 + [48, 32, 16]):
        hand[12 + k][:, :width] = 20.0
    assert shots.find_transitions(np.stack(hand)) == []
    black = [still] * 20 + [still * (1 - k / 6) for k in range(1, 6)] + [still * 0] * 20
    assert shots.find_transitions(np.stack(black)) != []


def test_a_black_first_frame_or_a_fade_in_only_warns():
    """Transitions that cut a few frames off the span's ends (a black first frame, a fade-in of 0.2 s) leave one
    shot: step 3 goes on, with a warning naming the trim that leaves them out (in seconds of the video)."""
    c = view(scene("coffee"))
    for frames in ([c * 0] + [c] * 40, [c * k / 6 for k in range(6)] + [c] * 40):
        found = shots.find_transitions(np.stack(frames))
        cut = shots.Shots(len(frames), shots.split(len(frames), found), found)
        assert found and found[0][0] == 0 and not cut.several, found
        text = shots.edge_warning(cut, "x.mp4", start=12.0)
        first = found[0][1] + 1  # (a frame of margin after the transition)
        lo, hi = math.ceil(10 * (12 + first / 25)) / 10, math.floor(10 * (12 + (len(frames) - 1) / 25)) / 10
        trim = f"--start {lo:g} --end {hi:g}"
        assert text.startswith("warning: x.mp4: frames of a transition") and trim in text, (text, trim)


def test_a_span_that_starts_inside_a_dissolve_is_not_one_shot():
    """Frame 0 is already part way through a dissolve: it belongs to the transition, not to a one-frame shot."""
    b, c = scene("chelsea"), scene("coffee")
    frames = [(1 - w) * view(b) + w * view(c) for w in np.arange(4, 13) / 13] + [view(c)] * 20
    found = shots.find_transitions(np.stack(frames))
    assert found and found[0][0] == 0 and 8 <= found[0][1] <= 10, found
    assert shots.split(len(frames), found) == [(found[0][1], 29)]


def test_step3_stops_on_a_dissolve_and_the_suggested_trim_is_one_shot(tmp_path, capsys):
    """The astronaut dissolving into grey over 0.6 s (1.4-2.0 s), then grey for 2 s: one line naming the dissolve
    and the longest shot with a face (the astronaut's, though the grey one is longer), nothing written; the
    suggested --start/--end processes; --cuts keep records the shots."""
    vids = tmp_path / "dataset" / "vids"
    vids.mkdir(parents=True)
    make_face_then_blank(vids / "fade.mp4", face_s=2.0, blank_s=2.5, size=128, dissolve_s=0.6)
    base = ["fade", "--root", str(tmp_path / "dataset"), "--config_dir", str(tmp_path / "configs"), "--step", "3"]
    assert runner.main(base) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "fade.mp4: a cut or transition (a dissolve, a fade) at 1.4-2.0 s;" in err[0], err
    assert "the longest shot with a face is 0-1.4 s (1.4 s): add --start 0 --end 1.4" in err[0], err[0]
    out = tmp_path / "dataset" / "fade"
    assert not (out / "ori_imgs").exists()
    assert runner.main([*base, "--start", "0", "--end", "1.4"]) == 0
    assert len(list((out / "ori_imgs").glob("*.jpg"))) == 35
    assert runner.main([*base, "--cuts", "keep"]) == 0
    meta = json.loads((out / "video_meta.json").read_text())
    assert meta["shots"][0][0] == 0 and meta["shots"][0][1] == 36 and meta["shots"][-1][1] == meta["n_frames"], meta
