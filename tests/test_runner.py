"""The runner through `bash process_data.sh`: steps 1-3 end to end, and each bad input of issue 3 gives one line on
stderr, a non-zero exit code, and leaves earlier outputs intact."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from data_util import runner
from tests.av_media import make_tone, make_video

REPO = Path(__file__).resolve().parents[1]


def process(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """bash process_data.sh <args> --root <tmp>/dataset, run from tmp_path."""
    cmd = ["bash", str(REPO / "process_data.sh"), "--root", str(tmp_path / "dataset"),
           "--config_dir", str(tmp_path / "configs"), *args]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def steps_1_to_3(tmp_path: Path, *args: str) -> list[subprocess.CompletedProcess]:
    out = []
    for step in ("1", "2", "3"):
        out.append(process(tmp_path, *args, "--step", step))
        if out[-1].returncode != 0:
            break
    return out


@pytest.fixture()
def good_video(tmp_path):
    vids = tmp_path / "dataset" / "vids"
    vids.mkdir(parents=True)
    return make_video(vids / "clip.mp4", size="64x64", seconds=1.0, fps=30)


def test_steps_1_to_3_then_skip(tmp_path, good_video):
    for proc in steps_1_to_3(tmp_path, "clip"):
        assert proc.returncode == 0, proc.stderr
    out = tmp_path / "dataset" / "clip"
    aud = np.load(out / "aud.npy")
    assert aud.shape == (25, 16, 26)
    assert len(list((out / "ori_imgs").glob("*.jpg"))) == 25
    assert json.loads((out / "video_meta.json").read_text())["n_frames"] == 25
    again = process(tmp_path, "clip", "--step", "1")
    assert again.returncode == 0 and "done already, skipped" in again.stdout
    redo = process(tmp_path, "clip", "--step", "1", "--force")  # new audio: its features are stale, frames are not
    assert redo.returncode == 0 and not (out / ".done" / "audio_features").exists()
    assert (out / ".done" / "audio").exists() and (out / ".done" / "video").exists()


def test_dependents_follow_what_each_step_reads():
    assert runner.dependents("video") == {"landmarks", "parsing", "background", "tracking", "transforms", "debug"}
    assert runner.dependents("audio") == {"audio_features", "transforms"}
    assert runner.dependents("debug") == set()


def test_missing_file(tmp_path):
    proc = process(tmp_path, "ghost")
    assert_one_line_error(proc, "ghost.mp4: file not found")
    assert not (tmp_path / "dataset" / "ghost").exists()


def test_not_a_video(tmp_path):
    vids = tmp_path / "dataset" / "vids"
    vids.mkdir(parents=True)
    (vids / "doc.mp4").write_text("%PDF-1.4 not a video at all\n" * 30)
    assert_one_line_error(process(tmp_path, "doc", "--step", "1"), "doc.mp4: not a readable video or audio file")
    assert_one_line_error(process(tmp_path, "doc", "--step", "3"), "doc.mp4: not a readable video or audio file")


def test_truncated_video(tmp_path):
    vids = tmp_path / "dataset" / "vids"
    vids.mkdir(parents=True)
    full = make_video(tmp_path / "full.mp4", size="64x64", seconds=2.0, fps=25)
    (vids / "cut.mp4").write_bytes(full.read_bytes()[: full.stat().st_size // 2])  # index (moov) at the end: lost
    assert_one_line_error(process(tmp_path, "cut"), "cut.mp4: truncated or unfinished mp4")
    fast = make_video(tmp_path / "fast.mp4", size="64x64", seconds=2.0, fps=25, faststart=True)
    (vids / "cut2.mp4").write_bytes(fast.read_bytes()[: int(fast.stat().st_size * 0.6)])  # index first: readable
    procs = steps_1_to_3(tmp_path, "cut2")
    assert all(p.returncode == 0 for p in procs), procs[-1].stderr
    warning = procs[2].stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: ") and "of the 50 its length promises" in warning[0]
    n = len(list((tmp_path / "dataset" / "cut2" / "ori_imgs").glob("*.jpg")))
    assert 5 < n < 45


def test_no_audio_track_then_audio_option(tmp_path):
    vids = tmp_path / "dataset" / "vids"
    vids.mkdir(parents=True)
    make_video(vids / "mute.mp4", size="64x64", seconds=1.0, audio=False)
    assert_one_line_error(process(tmp_path, "mute"), "mute.mp4: no audio track (pass --audio speech.wav)")
    speech = make_tone(tmp_path / "speech.wav", seconds=1.0)
    for proc in steps_1_to_3(tmp_path, "mute", "--audio", str(speech)):
        assert proc.returncode == 0, proc.stderr
    assert np.load(tmp_path / "dataset" / "mute" / "aud.npy").shape == (25, 16, 26)


@pytest.mark.parametrize("name", ["my clip", "x; touch pwned", "$(touch pwned)", "../escape", "-rf", "a\nb"])
def test_unsafe_names_refused(tmp_path, name):
    proc = process(tmp_path, "--", name) if name.startswith("-") else process(tmp_path, name)
    assert_one_line_error(proc, "use only letters, digits")
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "dataset").exists()


def test_usage_error_is_one_line(tmp_path):
    proc = process(tmp_path, "clip", "--step", "12")
    assert proc.returncode == 2
    assert_one_line_error(proc, "--step", "invalid choice")


def test_video_path_with_spaces_and_shell_characters(tmp_path):
    odd = tmp_path / "my videos $(x) & 'co'"
    odd.mkdir()
    video = make_video(odd / "take 1; rm.mp4", size="64x64", seconds=0.5)
    for proc in steps_1_to_3(tmp_path, "take1", "--video", str(video)):
        assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "dataset" / "take1" / "ori_imgs").glob("*.jpg"))) == 13


def test_bad_input_keeps_earlier_outputs(tmp_path, good_video):
    for proc in steps_1_to_3(tmp_path, "clip"):
        assert proc.returncode == 0, proc.stderr
    out = tmp_path / "dataset" / "clip"
    files = [out / "aud.wav", out / "aud.npy", out / "aud_meta.json", out / "video_meta.json",
             *sorted((out / "ori_imgs").glob("*.jpg"))]
    before = {p: p.read_bytes() for p in files}
    good_video.write_bytes(b"\0garbage" * 500)  # the source is replaced by junk, then steps are forced
    for step in ("1", "3"):
        assert_one_line_error(process(tmp_path, "clip", "--step", step, "--force"), "clip.mp4")
    assert_one_line_error(process(tmp_path, "clip", "--step", "2", "--force", "--aud_npy",
                                  str(tmp_path / "none.npy")), "none.npy: file not found")
    assert {p: p.read_bytes() for p in files} == before
    assert sorted(p.name for p in out.iterdir()) == [".done", "aud.npy", "aud.wav", "aud_meta.json", "ori_imgs",
                                                     "video_meta.json"]


def test_killed_mid_step_then_rerun_finishes(tmp_path):
    """SIGKILL the runner (and its ffmpeg) while step 3 writes frames: no ori_imgs/ that looks finished;
    the same command again cleans up and finishes."""
    import os
    import signal
    import time

    vids = tmp_path / "dataset" / "vids"
    vids.mkdir(parents=True)
    make_video(vids / "long.mp4", size="160x160", seconds=30.0, fps=25, audio=False)  # long enough to be caught
    # mid-step on a loaded machine (8 s finished before the poll below saw it, beside a benchmark)
    out = tmp_path / "dataset" / "long"
    cmd = ["bash", str(REPO / "process_data.sh"), "--root", str(tmp_path / "dataset"), "long", "--step", "3"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and not any(len(list(t.glob("*.jpg"))) > 3 for t in out.glob(".tmp-ori_imgs-*")):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / ".done" / "video").exists()
    partial = list(out.glob(".tmp-ori_imgs-*"))
    assert partial and not (out / "ori_imgs").exists()  # killed mid-extraction: only the temporary folder
    again = process(tmp_path, "long", "--step", "3")
    assert again.returncode == 0, again.stderr
    assert len(list((out / "ori_imgs").glob("*.jpg"))) == 750 and not list(out.glob(".tmp-*"))


def test_an_image_a_short_span_or_a_sound_file_fail_before_any_step(tmp_path, good_video):
    """Given as the video of a finished dataset: one line, and its audio and frames are untouched (steps 1 and 2
    would have replaced the audio before step 3 saw the frames)."""
    import imageio.v3 as iio

    for proc in steps_1_to_3(tmp_path, "clip"):
        assert proc.returncode == 0, proc.stderr
    out = tmp_path / "dataset" / "clip"
    files = [out / "aud.wav", out / "aud.npy", out / "aud_meta.json", *sorted((out / "ori_imgs").glob("*.jpg"))]
    before = {p: p.read_bytes() for p in files}
    still = tmp_path / "still.png"
    iio.imwrite(still, np.full((64, 64, 3), 128, np.uint8))
    tone = make_tone(tmp_path / "tone.wav", seconds=1.0)
    for args, needle in ((["--video", str(still), "--audio", str(tone)], "still.png: a still image"),
                         (["--start", "0.5", "--end", "0.7"], "0.20 s in --start/--end (5 frames at 25 fps)"),
                         (["--video", str(tone)], "tone.wav: no video stream")):
        assert_one_line_error(process(tmp_path, "clip", *args), needle, "at least 8 frames"
                              if "video stream" not in needle else "")
    assert {p: p.read_bytes() for p in files} == before
