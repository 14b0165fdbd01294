"""The synthetic sample clip (sample_data.clip) and its voice (sample_data.speech)."""
from __future__ import annotations

import json
import subprocess

import imageio.v3 as iio
import numpy as np
import pytest

from sample_data import clip as sample_clip, speech as speech_synth
from common.ffmpeg import ffmpeg_exe, probe
from data_util.landmarks import detect_landmarks, mouth_shape

SIZE, SECONDS = 96, 2.0


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "clip.mp4"
    video, gt = sample_clip.write_clip(out, size=SIZE, seconds=SECONDS, seed=3, progress=False)
    return video, gt


def decode_audio(path) -> np.ndarray:
    """The mp4's audio track as float32 [T] at 16 kHz (ffmpeg to raw s16le on stdout)."""
    proc = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", "16000",
                           "-"], capture_output=True, check=True)
    return np.frombuffer(proc.stdout, np.int16).astype(np.float32) / 32768


def mediapipe_landmarks(frames: np.ndarray) -> np.ndarray:
    """Face mesh (data_util.landmarks, video mode) on every frame: [N, 478, 2] pixels, NaN where no face."""
    return detect_landmarks(frames)[..., :2]


def project_gt(gt: dict) -> np.ndarray:
    """GT head points (with the frame's jaw opening) projected with the GT pose and focal: [N, 478, 2]."""
    pts = np.array(gt["head_points"])
    w, d = np.array(gt["jaw_weight"])[:, None], np.array(gt["jaw_dir"])
    brow, cheek = np.array(gt["brow_offset"]), np.array(gt["cheek_offset"])
    lid, lips = np.array(gt["blink_offset"]), np.array(gt["lip_width_offset"])
    out = []
    for fr in gt["frames"]:
        local = (pts + fr["mouth"] * gt["jaw_drop"] * w * d + fr["brow"] * brow + fr["mouth"] * cheek
                 + fr["eye_closure"] * lid + fr["lip_width"] * lips)
        cam = local @ np.array(fr["R"]).T + np.array(fr["t"])
        out.append(gt["focal"] * cam[:, :2] / cam[:, 2:] + [gt["cx"], gt["cy"]])
    return np.array(out)


def test_video_and_audio_durations(clip_files):
    video, _ = clip_files
    info = probe(video)
    assert info["has_video"] and info["has_audio"]
    assert (info["width"], info["height"]) == (SIZE, SIZE)
    assert info["fps"] == pytest.approx(25.0)
    frames = iio.imread(video)
    assert frames.shape == (int(25 * SECONDS), SIZE, SIZE, 3)
    audio = decode_audio(video)
    assert abs(len(audio) - 16000 * SECONDS) <= 1024          # AAC frame granularity
    assert np.abs(audio).max() > 0.2                           # speech, not silence


def test_gt_fields(clip_files):
    _, gt_file = clip_files
    assert gt_file.name == "clip_gt.json"
    gt = json.loads(gt_file.read_text())
    n = int(25 * SECONDS)
    assert gt["image_size"] == [SIZE, SIZE] and gt["fps"] == 25 and gt["n_frames"] == n
    assert gt["focal"] == pytest.approx(1.5 * SIZE) and gt["cx"] == gt["cy"] == SIZE / 2
    assert "X_cam = R @ X_head + t" in gt["conventions"]
    pts = np.array(gt["head_points"])
    assert pts.shape == (478, 3)
    assert np.linalg.norm(pts[33] - pts[263]) == pytest.approx(0.1, rel=1e-3)   # documented head units
    assert len(gt["frames"]) == n and len(gt["rigid_indices"]) > 150
    from scipy.spatial.transform import Rotation

    for fr in gt["frames"]:
        R = np.array(fr["R"])
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-6)
        assert np.allclose(R, Rotation.from_euler("YXZ", fr["euler_deg"], degrees=True).as_matrix(), atol=1e-6)
        assert max(abs(a) for a in fr["euler_deg"]) <= 15.0
        assert 0.0 <= fr["mouth"] <= 1.0 and len(fr["t"]) == 3 and fr["t"][2] > 0.3


@pytest.fixture(scope="module")
def span_clip(tmp_path_factory):
    """A 4 s clip: long enough for the two expression spans (a 2 s clip has none)."""
    out = tmp_path_factory.mktemp("span") / "span.mp4"
    video, gt = sample_clip.write_clip(out, size=SIZE, seconds=4.0, seed=3, progress=False)
    return video, json.loads(gt.read_text())


def test_expression_span_holds_the_head_still(span_clip):
    """In an expression span the true pose is constant while the jaw drops fully and the brows rise."""
    gt = span_clip[1]
    (a, b), = gt["expression_spans"]
    frames = gt["frames"][a:b + 1]
    for fr in frames:
        assert fr["still"]
        np.testing.assert_allclose(fr["R"], frames[0]["R"], atol=1e-9)
        np.testing.assert_allclose(fr["t"], frames[0]["t"], atol=1e-9)
    mid = frames[len(frames) // 2]
    assert mid["brow"] >= 0.9 and mid["mouth"] >= 0.9 and frames[0]["brow"] < 0.1
    assert mid["viseme"] == "a"  # said aloud: the audio explains the open jaw (an audio-driven model can learn it)
    assert not gt["frames"][a - 1]["still"] and gt["frames"][a - 1]["brow"] == 0
    brow = np.array(gt["brow_offset"])
    assert brow[[105, 334], 1].max() < -0.009  # the brows rise ~0.012 head units (eye corners 0.1 apart)
    assert np.abs(brow[[1, 4, 5]]).max() < 1e-4  # the nose stays
    assert np.abs(brow[[33, 133, 263, 362]]).max() < 0.0025  # eye corners at the eye line: at most a little lift
    assert not {105, 334, 10} & set(gt["rigid_indices"])


def test_raised_brows_are_visible_to_mediapipe(span_clip):
    """mediapipe's brow points sit higher above the eyes in the span's middle than at its start (same pose)."""
    video, gt = span_clip
    frames = iio.imread(video)
    (a, b), = gt["expression_spans"]
    lms = mediapipe_landmarks(frames[[a, (a + b) // 2]])
    lift = lms[:, [159, 386], 1] - lms[:, [105, 334], 1]  # eye top to brow, pixels
    assert (lift[1] - lift[0]).min() > 0.5, lift


def test_deterministic_for_a_seed():
    a = sample_clip.render_clip(64, 0.4, seed=5, progress=False)
    b = sample_clip.render_clip(64, 0.4, seed=5, progress=False)
    c = sample_clip.render_clip(64, 0.4, seed=6, progress=False)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    assert json.dumps(a.gt) == json.dumps(b.gt)
    assert not np.array_equal(a.frames, c.frames)
    assert a.frames.shape == (10, 64, 64, 3) and len(a.audio) == int(0.4 * 16000)


def test_mouth_follows_loudness():
    wav = speech_synth.synth_speech(6.0, seed=1)
    mouth = speech_synth.mouth_opening(wav)
    rms = speech_synth.loudness_envelope(wav)
    assert mouth.shape == rms.shape == (150,)
    silent = rms < 1e-4
    loud = rms > np.percentile(rms, 85)
    assert silent.sum() >= 10 and loud.sum() >= 10
    assert mouth[silent].max() < 0.05
    assert mouth[loud].mean() > 0.8
    assert np.corrcoef(mouth, rms)[0, 1] > 0.9


def test_visemes_follow_the_syllables():
    """Spread lips on i, rounded on u, shut on the bilabial onsets (with a quiet murmur there); silence at rest."""
    wav, sylls = speech_synth.synth_speech_syllables(8.0, seed=2)
    width, shut, names = speech_synth.visemes(sylls, 200)
    names = np.array(names)
    assert {"i", "u", "m", "-"} <= set(names)
    assert width[names == "i"].mean() > 0.7 and width[names == "u"].mean() < -0.7
    assert shut[names == "m"].min() == 1.0 and shut[names == "a"].max() <= 0.5
    assert np.abs(width[names == "-"]).mean() < 0.2
    rms = speech_synth.loudness_envelope(wav)[:200]
    vowels = np.isin(names, list("aeiou"))
    assert np.median(rms[names == "m"]) < 0.3 * np.median(rms[vowels])


def test_held_vowel_says_the_expression_span_aloud():
    """A held span is one sustained open "a" (the mouth opening from the sound ~1 in its middle) in place of the
    syllables overlapping it; every other syllable stays as it was, with its sound."""
    wav0, sylls0 = speech_synth.synth_speech_syllables(6.0, seed=2)
    wav1, sylls1 = speech_synth.synth_speech_syllables(6.0, seed=2, held=((2.0, 3.6),))
    kept = [s for s in sylls0 if s.start + s.dur <= 2.0 or s.start >= 3.6]
    assert len(kept) < len(sylls0)  # the span did cover syllables
    held = [s for s in sylls1 if s not in kept]
    assert len(held) == 1 and held[0].vowel == "a" and held[0].closed == 0.0
    assert abs(held[0].start - 2.0) < 1e-3 and abs(held[0].dur - 1.6) < 1e-3
    assert set(kept) <= set(sylls1)
    opening = speech_synth.mouth_opening(wav1)
    assert opening[int(2.6 * 25):int(3.0 * 25)].min() > 0.8  # the jaw's full drop is heard
    _, _, names = speech_synth.visemes(sylls1, 150)
    assert set(names[int(2.2 * 25):int(3.4 * 25)]) == {"a"}


def test_mouth_width_on_the_frames_follows_the_visemes(clip_files):
    """mediapipe's mouth width (corner to corner over the eye-corner distance) on the rendered frames follows the
    ground-truth lip width, and the lips are shut (inner-lip gap ~0) where the ground truth says so."""
    video, gt_file = clip_files
    gt = json.loads(gt_file.read_text())
    shape = mouth_shape(detect_landmarks(iio.imread(video)))
    frames = gt["frames"]
    width = np.array([f["lip_width"] for f in frames])
    assert width.std() > 0.3
    assert np.corrcoef(width, shape["width"])[0, 1] > 0.6  # 0.73 measured (mediapipe mutes the rounding)
    gap = shape["opening"]
    shut = np.array([f["lips_shut"] for f in frames]) == 1
    wide = np.array([f["mouth"] for f in frames]) > 0.6
    assert shut.sum() >= 2 and wide.sum() >= 2
    assert gap[shut].max() < 0.5 * gap[wide].min()


def _pitch(wav: np.ndarray, sr: int = 16000) -> float:
    """Median autocorrelation pitch (Hz) over the loud 40 ms chunks."""
    f0 = []
    for i in range(0, len(wav) - 640, 640):
        x = wav[i:i + 640]
        if np.sqrt((x ** 2).mean()) < 0.1:
            continue
        ac = np.correlate(x, x, "full")[639:]
        lo, hi = sr // 400, sr // 70
        f0.append(sr / (lo + np.argmax(ac[lo:hi])))
    return float(np.median(f0))


def test_other_voices_differ():
    v0, v1 = (speech_synth.synth_speech(6.0, seed=0, voice=v) for v in (0, 1))
    assert v0.dtype == np.float32 and len(v0) == 96000 and np.abs(v0).max() <= 1.0
    assert _pitch(v0) > 1.3 * _pitch(v1)                       # ~190 Hz vs ~115 Hz
    m0, m1 = speech_synth.mouth_opening(v0), speech_synth.mouth_opening(v1)
    assert abs(np.corrcoef(m0, m1)[0, 1]) < 0.5               # different rhythm
    assert np.array_equal(v0, speech_synth.synth_speech(6.0, seed=0, voice=0))


def test_mediapipe_sees_the_face_where_the_gt_says(clip_files):
    video, gt_file = clip_files
    gt = json.loads(gt_file.read_text())
    lms = mediapipe_landmarks(iio.imread(video))
    assert not np.isnan(lms[:, 0, 0]).any(), "face mesh lost the face on some frames"
    err = np.linalg.norm(project_gt(gt) - lms, axis=2)                     # [N, 478] pixels
    eyes_nose = err[:, [33, 133, 263, 362, 1]].mean(1)
    assert np.median(eyes_nose) < 1.5 * SIZE / 256 + 0.5                  # ~2 px at 256, scaled
    assert np.median(err[:, gt["rigid_indices"]]) < 2.0 * SIZE / 256 + 0.5


def test_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        sample_clip.render_clip(8, 1.0)
    with pytest.raises(ValueError, match="seconds"):
        speech_synth.synth_speech(0.0)


@pytest.mark.slow
def test_full_clip_acceptance(tmp_path):
    """The default clip (256 px, 12 s): face found on every frame, GT geometry matches mediapipe, lips follow."""
    video, gt_file = sample_clip.write_clip(tmp_path / "sample.mp4", progress=False)
    gt = json.loads(gt_file.read_text())
    lms = mediapipe_landmarks(iio.imread(video))
    assert not np.isnan(lms[:, 0, 0]).any()
    uv = project_gt(gt)
    err = np.linalg.norm(uv - lms, axis=2)
    assert np.median(err[:, [33, 133, 263, 362]]) < 1.5
    assert np.median(err[:, gt["rigid_indices"]]) < 2.0

    def gap(p):
        return np.linalg.norm(p[:, 13] - p[:, 14], axis=1) / np.linalg.norm(p[:, 78] - p[:, 308], axis=1)

    mouth = np.array([fr["mouth"] for fr in gt["frames"]])
    assert np.corrcoef(gap(lms), mouth)[0, 1] > 0.8
