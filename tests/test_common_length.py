"""One length (data_util.common_length): aud.npy has one row per frame of ori_imgs when the audio is longer or shorter
than the video, whatever order steps 1-3 run in, with --audio and --aud_npy, and one line says what was dropped."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data_util import runner
from tests.av_media import make_tone, make_video


def run(tmp_path: Path, capsys, name: str, *args: str) -> tuple[int, list[str], list[str]]:
    """runner.main in this process (faster than bash): (exit code, stdout lines, stderr lines)."""
    code = runner.main([name, "--root", str(tmp_path / "dataset"), "--config_dir", str(tmp_path / "configs"), *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def steps(tmp_path: Path, capsys, name: str, *args: str, numbers: str = "123") -> list[str]:
    """Run the steps one by one (--step N); their stdout lines. Each must succeed."""
    lines: list[str] = []
    for n in numbers:
        code, out, err = run(tmp_path, capsys, name, *args, "--step", n)
        assert code == 0, err
        lines += out
    return lines


def lengths(tmp_path: Path, name: str) -> tuple[int, int]:
    out = tmp_path / "dataset" / name
    frames = sorted(int(p.stem) for p in (out / "ori_imgs").glob("*.jpg"))
    assert frames == list(range(len(frames)))  # contiguous from 0: the end was dropped, not some middle
    return len(np.load(out / "aud.npy")), len(frames)


def dropped(lines: list[str]) -> list[str]:
    return [line.strip() for line in lines if "; its end is dropped" in line]


@pytest.fixture()
def vids(tmp_path):
    folder = tmp_path / "dataset" / "vids"
    folder.mkdir(parents=True)
    return folder


def test_audio_longer_than_video(tmp_path, capsys, vids):
    make_video(vids / "clip.mp4", size="64x64", seconds=1.0, audio_seconds=1.5)
    lines = steps(tmp_path, capsys, "clip")
    assert lengths(tmp_path, "clip") == (25, 25)
    assert dropped(lines) == ["audio: 0.50 s (13 frames) longer than the video; its end is dropped"]
    meta = json.loads((tmp_path / "dataset" / "clip" / "aud_meta.json").read_text())
    assert meta["n_frames"] == 25


def test_video_longer_than_audio(tmp_path, capsys, vids):
    make_video(vids / "clip.mp4", size="64x64", seconds=1.5, audio_seconds=1.0)
    lines = steps(tmp_path, capsys, "clip")
    assert lengths(tmp_path, "clip") == (25, 25)
    line, = dropped(lines)
    assert line.startswith("video: 0.5") and "(13 frames) longer than the audio; its end is dropped" in line
    meta = json.loads((tmp_path / "dataset" / "clip" / "video_meta.json").read_text())
    assert meta["n_frames"] == 25 and meta["decoded_frames"] == 38


def test_video_step_first_then_audio(tmp_path, capsys, vids):
    """Frames made before the audio is known: step 2 cuts its rows to them, or has step 3 run again."""
    make_video(vids / "long.mp4", size="64x64", seconds=1.0, audio_seconds=1.5)
    make_video(vids / "short.mp4", size="64x64", seconds=1.5, audio_seconds=1.0)
    lines = steps(tmp_path, capsys, "long", numbers="312")
    assert lengths(tmp_path, "long") == (25, 25) and len(dropped(lines)) == 1
    lines = steps(tmp_path, capsys, "short", numbers="312")
    assert "  step 3 (video) will run again: its 38 frames were cut for audio of another length; this one covers 25" \
        in lines
    lines = steps(tmp_path, capsys, "short", numbers="3")
    assert lengths(tmp_path, "short") == (25, 25) and len(dropped(lines)) == 1


def test_new_audio_of_another_length(tmp_path, capsys, vids):
    """--audio shorter, then longer, than the frames: the frames follow (step 3 runs again), rows == frames."""
    make_video(vids / "clip.mp4", size="64x64", seconds=1.5)
    steps(tmp_path, capsys, "clip")
    assert lengths(tmp_path, "clip") == (38, 38)
    short, long = make_tone(tmp_path / "short.wav", seconds=1.0), make_tone(tmp_path / "long.wav", seconds=2.0)
    lines = steps(tmp_path, capsys, "clip", "--audio", str(short))
    assert "[1/9] audio ... (options changed: --audio none -> " + str(short.resolve()) + ")" in lines
    assert any(line.startswith("  step 3 (video) will run again") for line in lines)
    assert lengths(tmp_path, "clip") == (25, 25)
    code, out, _ = run(tmp_path, capsys, "clip", "--audio", str(long), "--step", "1")
    steps(tmp_path, capsys, "clip", "--audio", str(long), numbers="23")
    assert lengths(tmp_path, "clip") == (38, 38)


def test_given_aud_npy_longer_and_shorter(tmp_path, capsys, vids):
    make_video(vids / "clip.mp4", size="64x64", seconds=1.0)
    given = tmp_path / "adnerf_aud.npy"
    np.save(given, np.random.default_rng(0).normal(size=(40, 16, 29)).astype(np.float32))
    lines = steps(tmp_path, capsys, "clip", "--aud_npy", str(given))
    assert lengths(tmp_path, "clip") == (25, 25)
    assert dropped(lines) == ["audio features (adnerf_aud.npy): 0.60 s (15 frames) longer than the video; "
                              "its end is dropped"]
    np.testing.assert_array_equal(np.load(tmp_path / "dataset" / "clip" / "aud.npy"), np.load(given)[:25])
    np.save(given, np.zeros((20, 16, 29), np.float32))
    lines = steps(tmp_path, capsys, "clip", "--aud_npy", str(given), "--force", numbers="23")
    assert lengths(tmp_path, "clip") == (20, 20)
    assert dropped(lines) == ["video: 0.20 s (5 frames) longer than the audio features (adnerf_aud.npy); "
                              "its end is dropped"]
