"""render.py: pose schedules, the mp4 writer (length, audio stream), bad input, end-to-end on a tiny trained run."""
import json
import math
import re

import numpy as np
import pytest

import render
from nerf.mp4 import Mp4Writer, read_back
from nerf.poses import load_pose_file, pingpong_indices, pose_schedule
from tests.av_media import make_tone, make_video
from tests.render_fixtures import MFCC_DIM, train_tiny


# ---------------------------------------------------------------- pose schedules
def test_pingpong_order_and_length():
    assert pingpong_indices(4, 10).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert pingpong_indices(2, 5).tolist() == [0, 1, 0, 1, 0]
    assert pingpong_indices(1, 3).tolist() == [0, 0, 0]
    assert pingpong_indices(5, 3).tolist() == [0, 1, 2]
    idx = pingpong_indices(7, 1000)
    assert len(idx) == 1000 and np.abs(np.diff(idx)).max() == 1  # no jumps: smooth head motion
    with pytest.raises(ValueError):
        pingpong_indices(0, 3)


def _poses(n):
    p = np.tile(np.eye(4, dtype=np.float32), (n, 1, 1))
    p[:, 0, 3] = np.arange(n)  # x position = index, so the schedule is readable
    return p


def test_pose_schedule_train_static_file(tmp_path):
    train_poses = _poses(3)
    poses, of = pose_schedule("train", train_poses, 6)
    assert poses[:, 0, 3].tolist() == [0, 1, 2, 1, 0, 1] and of.tolist() == [0, 1, 2, 1, 0, 1]  # whose poses
    static, of = pose_schedule("static", train_poses, 4, static_index=-1)
    assert static.shape == (4, 4, 4) and static[:, 0, 3].tolist() == [2, 2, 2, 2] and of.tolist() == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="pose_index 5"):
        pose_schedule("static", train_poses, 4, static_index=5)
    as_list = tmp_path / "poses.json"
    as_list.write_text(json.dumps(_poses(2).tolist()))
    poses, of = pose_schedule(str(as_list), train_poses, 5)
    assert poses[:, 0, 3].tolist() == [0, 1, 0, 1, 0] and of is None  # no training frame's
    as_transforms = tmp_path / "transforms.json"
    as_transforms.write_text(json.dumps({"frames": [{"transform_matrix": m.tolist()} for m in _poses(4)]}))
    assert load_pose_file(as_transforms)[:, 0, 3].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("content,match", [
    ("not json", "not valid JSON"),
    (json.dumps([[1, 2], [3, 4]]), r"expected \[F,4,4\]"),
    (json.dumps({"frames": [{"img_id": 0}]}), "transform_matrix"),
    (json.dumps({"poses": []}), "expected a list"),
    (json.dumps([]), r"expected \[F,4,4\]"),
])
def test_bad_pose_file(tmp_path, content, match):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        load_pose_file(path)
    with pytest.raises(FileNotFoundError):
        load_pose_file(tmp_path / "missing.json")


# ---------------------------------------------------------------- mp4 writer
def test_mp4_writer_odd_size_with_audio(tmp_path):
    tone = make_tone(tmp_path / "tone.wav", seconds=0.5, rate=44100, channels=2)
    out = tmp_path / "v.mp4"
    with Mp4Writer(out, 15, 9, audio=tone) as w:
        for i in range(13):  # ceil(0.5 * 25)
            w.write(np.full((9, 15, 3), i * 15, np.uint8))
    back = read_back(out)
    assert (back["width"], back["height"]) == (16, 10)  # padded to even
    assert back["frames"] == 13
    assert back["audio_s"] == pytest.approx(0.5, abs=1 / 25)
    assert not list(tmp_path.glob(".tmp-*"))


def test_mp4_writer_failure_keeps_old_file(tmp_path):
    out = tmp_path / "v.mp4"
    out.write_bytes(b"old")
    with pytest.raises(ValueError, match="expected uint8"):
        with Mp4Writer(out, 8, 8) as w:
            w.write(np.zeros((8, 8, 3), np.uint8))
            w.write(np.zeros((4, 4, 3), np.uint8))  # wrong size
    assert out.read_bytes() == b"old" and not list(tmp_path.glob(".tmp-*"))


# ---------------------------------------------------------------- end to end on a tiny trained run
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("render"))


def _render(run, aud, out, *extra):
    return render.main(["--config", str(run["config"]), "--aud", str(aud), "--out", str(out), *extra])


@pytest.mark.parametrize("seconds,rate,channels", [(1.3, 48000, 2), (0.1, 8000, 1), (0.62, 16000, 1)])
def test_render_length_matches_audio(run, tmp_path, seconds, rate, channels):
    aud = make_tone(tmp_path / "speech.wav", seconds=seconds, rate=rate, channels=channels)
    out = tmp_path / "out.mp4"
    assert _render(run, aud, out) == 0
    back = read_back(out)
    assert back["frames"] == math.ceil(seconds * 25)
    assert back["audio_s"] == pytest.approx(seconds, abs=1 / 25)  # the audio stream is there, not cut
    assert abs(back["frames"] / 25 - back["audio_s"]) <= 1 / 25
    assert (back["width"], back["height"]) == (16, 16)


def test_render_audio_that_starts_late_stays_in_sync(run, tmp_path, capsys):
    """A file whose sound starts 0.6 s after its time 0 (a video's audio stream with a start offset): frames cover
    the silence before it, and the muxed audio keeps its place, so the mouth moves when the sound plays."""
    from common.ffmpeg import probe

    aud = make_video(tmp_path / "late.mp4", size="32x32", seconds=0.3, audio_seconds=0.5, audio_delay=0.6)
    assert probe(aud)["audio_start"] == pytest.approx(0.6, abs=0.03)
    out = tmp_path / "out.mp4"
    assert _render(run, aud, out) == 0
    assert re.search(r"late\.mp4: its audio starts at 0\.[56]\d s: the first 0\.[56]\d s are silence",
                     capsys.readouterr().err)
    assert read_back(out)["frames"] == math.ceil(1.1 * 25)  # 0.6 s of silence + 0.5 s of sound
    assert probe(out)["audio_start"] == pytest.approx(0.6, abs=0.05)  # the sound where the frames expect it


def test_render_silence_static_pose_frames_semantic(run, tmp_path):
    aud = tmp_path / "silence.wav"
    from scipy.io import wavfile

    wavfile.write(aud, 16000, np.zeros(4000, np.int16))  # 0.25 s of silence -> 7 frames
    out, frames = tmp_path / "out.mp4", tmp_path / "frames"
    assert _render(run, aud, out, "--pose", "static", "--save_frames", str(frames), "--semantic_video") == 0
    pngs = sorted(frames.glob("*.png"))
    assert len(pngs) == 7
    import imageio.v3 as iio

    imgs = np.stack([iio.imread(p) for p in pngs]).astype(float)
    assert imgs.shape == (7, 16, 16, 3)
    assert np.abs(imgs - imgs[3]).max() <= 1  # same pose, same (silent) audio: same frame
    assert read_back(tmp_path / "out_semantic.mp4")["frames"] == 7


def test_render_train_poses_move(run, tmp_path):
    aud = tmp_path / "silence.wav"
    from scipy.io import wavfile

    wavfile.write(aud, 16000, np.zeros(16000, np.int16))
    frames = tmp_path / "frames"
    assert _render(run, aud, tmp_path / "o.mp4", "--save_frames", str(frames)) == 0
    import imageio.v3 as iio

    imgs = np.stack([iio.imread(p) for p in sorted(frames.glob("*.png"))]).astype(float)
    assert len(imgs) == 25
    assert np.abs(imgs[0] - imgs[5]).mean() > 0.01  # the training poses change the view


def test_render_npy_features(run, tmp_path):
    feats = np.random.default_rng(0).normal(size=(9, 16, MFCC_DIM)).astype(np.float32)
    np.save(tmp_path / "f.npy", feats)
    assert _render(run, tmp_path / "f.npy", tmp_path / "o.mp4") == 0
    back = read_back(tmp_path / "o.mp4")
    assert back["frames"] == 9 and back["audio_s"] is None


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


def test_bad_inputs_one_line_errors(run, tmp_path, capsys):
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"previous render")
    capsys.readouterr()
    # not audio
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    assert _render(run, junk, out) == 1
    _one_line_error(capsys, "junk.wav")
    # features with the wrong D
    np.save(tmp_path / "bad.npy", np.zeros((5, 16, 29), np.float32))
    assert _render(run, tmp_path / "bad.npy", out) == 1
    _one_line_error(capsys, "bad.npy", "D = 29", f"D = {MFCC_DIM}")
    # missing audio file
    assert _render(run, tmp_path / "nope.wav", out) == 1
    _one_line_error(capsys, "nope.wav")
    tone = make_tone(tmp_path / "tone.wav", seconds=0.2)
    # missing checkpoint (another expname)
    assert _render(run, tone, out, "--expname", "never_trained") == 1
    _one_line_error(capsys, "never_trained", "latest.pt")
    # a config for another subject
    other = tmp_path / "other.txt"
    other.write_text(f"datadir = {tmp_path / 'someone_else'}\nexpname = {run['expname']}\nbasedir = {run['basedir']}\n")
    assert render.main(["--config", str(other), "--aud", str(tone), "--out", str(out)]) == 1
    _one_line_error(capsys, "someone_else", "another subject")
    # model settings that differ from the checkpoint's
    assert _render(run, tone, out, "--hash_levels", "3") == 1
    _one_line_error(capsys, "latest.pt", "hash_levels")
    # a bad pose file
    assert _render(run, tone, out, "--pose", str(tmp_path / "missing.json")) == 1
    _one_line_error(capsys, "missing.json")
    assert out.read_bytes() == b"previous render"
    assert not list(tmp_path.glob(".tmp-*"))


def test_audio_windows_neighbours_clamped():
    import torch

    from nerf.audio import audio_windows

    feats = torch.arange(5.0)[:, None, None].expand(5, 16, 2)  # frame i's features are all i
    win = audio_windows(feats, torch.arange(5), smooth=2)
    assert win.shape == (5, 5, 16, 2)
    assert win[:, :, 0, 0].tolist() == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [0, 1, 2, 3, 4], [1, 2, 3, 4, 4],
                                        [2, 3, 4, 4, 4]]


def test_audio_codes_attention_switch(tmp_path):
    import torch

    from nerf.runs import load_run

    run = train_tiny(tmp_path, extra=("--audio_code", "true"))  # the learned code beside the mouth input
    loaded = load_run(["--config", str(run["config"])])
    feats = torch.randn(7, 16, MFCC_DIM)
    plain = loaded.pipeline.frame_codes(feats, use_attention=False)  # [7, 64 audio + 2 mouth + 1 eye]
    centre = loaded.model.audio_codes(feats[:, None], use_attention=False)
    assert plain.shape == (7, 67) and torch.allclose(plain[:, :64], centre, atol=1e-6)
    mouth = loaded.model.mouth
    assert torch.allclose(plain[:, 64:66], mouth.normalise(mouth(feats)), atol=1e-6)  # predicted from the audio
    smoothed = loaded.pipeline.frame_codes(feats, use_attention=True)
    assert smoothed.shape == plain.shape and not torch.allclose(smoothed, plain, atol=1e-4)
    assert loaded.iteration == 2 and loaded.pipeline.use_attention is False  # att_start not reached after 2 its
    assert torch.allclose(loaded.pipeline.frame_codes(feats), plain)  # the checkpoint's setting is the default


def _old_layout(state: dict) -> dict:
    """A pipeline state as checkpoints before the estimator split stored it (flat SSPNeRF keys, occ_* buffers)."""
    grid = {"estimator.density": "occ_density", "estimator.mask": "occ_mask", "estimator.is_ready": "occ_ready",
            "estimator.aux": "occ_torso"}
    out = {}
    for k, v in state.items():
        if k == "estimator.aabb":
            continue
        out[grid.get(k, k).removeprefix("model.")] = v
    return out


def test_checkpoint_from_before_the_estimator_split_renders_the_same(tmp_path):
    """logs/<run>/ckpt/latest.pt of a run without the eye and mouth inputs rewritten in the old layout, without
    `audio_attention`, `eyes`, `region_*` and `mouth`: render.py loads it and writes the same frames as from the new
    one."""
    import shutil

    import torch

    from nerf.checkpoint import load_checkpoint

    run = train_tiny(tmp_path / "plain", extra=("--eyes", "false", "--mouth", "false"))
    old_dir = run["basedir"] / "old_layout"
    shutil.copytree(run["run_dir"], old_dir)
    ckpt = old_dir / "ckpt" / "latest.pt"
    state = load_checkpoint(ckpt)
    assert "estimator.mask" in state["model"] and "audio_attention" in state
    state["model"] = _old_layout(state["model"])
    del state["audio_attention"]
    assert not state["fingerprint"]["eyes"] and not state["fingerprint"]["region_attention"]
    assert not state["fingerprint"]["mouth"]
    for key in ("eyes", "eye_code", "eye_region", "audio_at_eyes", "region_attention", "region_groups",
                "mouth"):  # predating them
        del state["fingerprint"][key]
    torch.save(state, ckpt)
    tone = make_tone(tmp_path / "tone.wav", seconds=0.2)
    frames = {}
    for name in (run["expname"], "old_layout"):
        frames[name] = tmp_path / name
        assert _render(run, tone, tmp_path / f"{name}.mp4", "--expname", name, "--save_frames", str(frames[name])) == 0
    import imageio.v3 as iio

    new, old = ([iio.imread(p) for p in sorted(frames[n].glob("*.png"))] for n in (run["expname"], "old_layout"))
    assert len(new) == len(old) == 5 and all(np.array_equal(a, b) for a, b in zip(new, old))
