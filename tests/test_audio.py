"""Step 1 (data_util.audio): load_audio for any input, aud.wav from the video or --audio, one-line errors."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from data_util.audio import load_audio, run
from data_util.context import StepContext
from common.errors import PreprocessError
from tests.av_media import make_tone, make_video


def peak_hz(wav: np.ndarray, rate: int = 16000) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(wav))) * rate / len(wav))


@pytest.mark.parametrize("ext,rate,channels", [("wav", 44100, 2), ("mp3", 22050, 1), ("ogg", 48000, 2),
                                               ("m4a", 8000, 1)])
def test_load_audio_any_rate_channels_container(tmp_path, ext, rate, channels):
    path = make_tone(tmp_path / f"tone.{ext}", seconds=1.0, rate=rate, channels=channels, freq=440)
    wav = load_audio(path)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - 16000) <= 160  # 1 s at 16 kHz, within 1 % (codec padding)
    assert abs(peak_hz(wav) - 440) < 3
    assert 0.03 < np.sqrt(np.mean(wav[1000:-1000] ** 2)) < 0.2  # the tone's level survives (not silent, not clipped)


def test_load_audio_from_video(tmp_path):
    wav = load_audio(make_video(tmp_path / "v.mp4", seconds=1.0))
    assert abs(len(wav) - 16000) <= 400 and abs(peak_hz(wav) - 440) < 3


def test_load_audio_errors_name_the_file(tmp_path):
    with pytest.raises(PreprocessError, match=r"nope\.wav: file not found"):
        load_audio(tmp_path / "nope.wav")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 20)
    with pytest.raises(PreprocessError, match=r"notes\.wav: not a readable video or audio file"):
        load_audio(text)
    silent = make_video(tmp_path / "silent.mp4", audio=False)
    with pytest.raises(PreprocessError, match=r"silent\.mp4: no audio track \(pass --audio speech\.wav\)"):
        load_audio(silent)
    with pytest.raises(PreprocessError) as err:
        load_audio(silent)
    assert "\n" not in str(err.value)


def test_new_speech_without_sound_says_what_render_takes(tmp_path):
    """render.py has no --audio: its hint for a video without sound names its own flag."""
    import json

    from common.audio_features import make_meta
    from nerf.features import SpeechFeatures

    (tmp_path / "aud_meta.json").write_text(json.dumps(make_meta("mfcc")))
    silent = make_video(tmp_path / "silent.mp4", audio=False)
    with pytest.raises(PreprocessError, match=r"silent\.mp4: no audio track \(give --aud a file with speech\)$"):
        SpeechFeatures(silent, tmp_path, aud_dim=26)


def ctx_for(tmp_path: Path, video: Path, audio: Path | None = None) -> StepContext:
    return StepContext(name="x", video=video, out_dir=tmp_path / "out", audio=audio)


def test_run_writes_16k_mono_pcm16_from_video(tmp_path):
    ctx = ctx_for(tmp_path, make_video(tmp_path / "v.mp4", seconds=1.5, rate=44100, channels=2))
    run(ctx)
    rate, data = wavfile.read(ctx.wav)
    assert rate == 16000 and data.dtype == np.int16 and data.ndim == 1
    assert abs(len(data) / rate - 1.5) < 0.03
    assert abs(peak_hz(data.astype(np.float32)) - 440) < 3
    assert not list(ctx.out_dir.glob(".tmp-*"))  # nothing temporary left behind


def test_run_with_audio_option_for_silent_video(tmp_path):
    silent = make_video(tmp_path / "silent.mp4", seconds=1.0, audio=False)
    ctx = ctx_for(tmp_path, silent)
    with pytest.raises(PreprocessError, match=r"silent\.mp4: no audio track \(pass --audio speech\.wav\)"):
        run(ctx)
    assert not ctx.wav.exists()
    ctx.audio = make_tone(tmp_path / "speech.wav", seconds=1.0, rate=48000, channels=1, freq=300)
    run(ctx)
    rate, data = wavfile.read(ctx.wav)
    assert rate == 16000 and abs(len(data) - 16000) <= 16 and abs(peak_hz(data.astype(np.float32)) - 300) < 3


def test_run_failure_keeps_previous_wav(tmp_path):
    ctx = ctx_for(tmp_path, make_video(tmp_path / "v.mp4", seconds=1.0))
    run(ctx)
    before = ctx.wav.read_bytes()
    ctx.video.write_bytes(b"garbage" * 100)
    with pytest.raises(PreprocessError, match="not a readable"):
        run(ctx)
    assert ctx.wav.read_bytes() == before


def _tone_onset(data: np.ndarray) -> float:
    """Seconds of the first sample louder than a tenth of the peak."""
    return float(np.flatnonzero(np.abs(data) > np.abs(data).max() / 10)[0] / 16000)


def test_audio_that_starts_late_stays_on_the_videos_clock(tmp_path, capsys):
    """A video whose sound starts 0.6 s after its picture: aud.wav is silence until 0.6 s, whole or cut by --end
    (ffmpeg's -t counts from the audio's own first sample: a cut from 0 to 1.0 s came out 1.1 s long)."""
    video = make_video(tmp_path / "late.mp4", seconds=1.5, audio_seconds=0.5, audio_delay=0.6)
    ctx = ctx_for(tmp_path, video)
    run(ctx)
    rate, data = wavfile.read(ctx.wav)
    assert abs(_tone_onset(data) - 0.6) < 0.05 and abs(len(data) / rate - 1.1) < 0.05
    assert re.search(r"late\.mp4: its audio starts at 0\.[56]\d s: the first 0\.[56]\d s of aud\.wav are silence",
                     capsys.readouterr().err)
    ctx.end = 1.0
    run(ctx)
    rate, data = wavfile.read(ctx.wav)
    assert len(data) == 16000 and abs(_tone_onset(data) - 0.6) < 0.05
    ctx.end = 0.5  # the whole span before the sound: silence, said in one line
    run(ctx)
    rate, data = wavfile.read(ctx.wav)
    assert len(data) == 8000 and not data.any()
    assert "after 0.0-0.5 s: aud.wav is silence" in capsys.readouterr().err
