"""New speech at the subject's loudness: the same speech recorded quieter or louder gives the same features."""
import numpy as np
import pytest
from scipy.io import wavfile

from common.audio_features import extract_features, make_meta
from common.errors import PreprocessError
from common.fileio import save_json
from common.loudness import MAX_GAIN_DB, level_gain, loudness, subject_loudness
from nerf.features import SpeechFeatures
from sample_data.speech import synth_speech

SR = 16000


@pytest.fixture(scope="module")
def speech():
    wav = synth_speech(4.0, seed=3)
    return (0.25 * wav / np.abs(wav).max()).astype(np.float32)  # room to be 12 dB louder without clipping


def write(path, wav):
    wavfile.write(path, SR, (np.clip(wav, -1, 1) * 32767).astype(np.int16))
    return path


def level_of(tmp_path, wav):
    return loudness(write(tmp_path / "subject.wav", wav))


def subject(tmp_path, level):
    meta = make_meta("mfcc")
    meta.update(dim=26, mean=[0.1] * 26, std=[2.0] * 26, loudness_lufs=level)
    save_json(tmp_path / "aud_meta.json", meta)
    return meta


def test_loudness_follows_the_gain_and_ignores_pauses(tmp_path, speech):
    base = loudness(write(tmp_path / "a.wav", speech))
    assert -40 < base < -10
    assert loudness(write(tmp_path / "b.wav", speech * 0.1)) == pytest.approx(base - 20, abs=0.15)
    paused = np.concatenate([speech, np.zeros(3 * SR, np.float32)])  # 3 s of silence: gated out
    assert loudness(write(tmp_path / "c.wav", paused)) == pytest.approx(base, abs=0.15)
    stereo = tmp_path / "d.wav"  # both channels the speech: its mono downmix is the speech, as load_audio reads it
    wavfile.write(stereo, 44100, (np.repeat(np.interp(np.arange(0, len(speech), SR / 44100), np.arange(len(speech)),
                                                      speech)[:, None], 2, 1) * 32767).astype(np.int16))
    assert loudness(stereo) == pytest.approx(base, abs=0.15)
    assert loudness(write(tmp_path / "e.wav", speech[: int(0.3 * SR)])) is None  # shorter than one 400 ms block
    assert loudness(write(tmp_path / "f.wav", np.zeros(SR, np.float32))) is None
    (tmp_path / "g.wav").write_text("not audio")
    with pytest.raises(PreprocessError, match="g.wav: could not measure its loudness"):
        loudness(tmp_path / "g.wav")


def test_level_gain_is_held_within_its_limit():
    assert level_gain(-30.0, -18.0) == pytest.approx(12.0)
    assert level_gain(-70.0, -18.0) == MAX_GAIN_DB
    assert level_gain(0.0, -40.0) == -MAX_GAIN_DB
    assert level_gain(None, -18.0) == 0.0 and level_gain(-30.0, None) == 0.0


@pytest.mark.parametrize("gain_db", [-14.0, 6.0])
def test_quieter_or_louder_speech_gives_the_subjects_features(tmp_path, speech, gain_db, capsys):
    meta = subject(tmp_path, level_of(tmp_path, speech))
    path = write(tmp_path / "new.wav", speech * 10 ** (gain_db / 20))
    sf = SpeechFeatures(path, tmp_path, 26)
    assert sf.gain_db == pytest.approx(-gain_db, abs=0.15)
    assert f"{abs(gain_db):.1f} dB {'louder' if gain_db < 0 else 'quieter'}" in capsys.readouterr().out
    same = extract_features(speech, meta)
    got = sf.chunk(0, sf.n)[0]
    # dim 0, the log energy the mouth opens with: as at the subject's level (the 16-bit rounding of the quieter
    # file changes its faint high bands, and with them the higher cepstra, whatever its level)
    np.testing.assert_allclose(got[..., 0], same[..., 0], atol=0.15)
    assert np.median(np.abs(got - same)) < 0.05
    kept = SpeechFeatures(path, tmp_path, 26, loudness="keep")
    assert kept.gain_db == 0.0
    voiced = same[:, 8, 0] > np.median(same[:, 8, 0])  # frames of speech (the pauses sit at the power floor)
    shift = (kept.chunk(0, kept.n)[0][voiced, 8, 0] - same[voiced, 8, 0]).mean()  # dim 0: log energy / std 2
    assert shift == pytest.approx(gain_db * np.log(10) / 10 / 2.0, abs=0.1)


def test_faint_noise_is_raised_at_most_max_gain(tmp_path, speech, capsys):
    subject(tmp_path, level_of(tmp_path, speech))
    path = write(tmp_path / "faint.wav", speech * 10 ** (-40 / 20))
    assert SpeechFeatures(path, tmp_path, 26).gain_db == MAX_GAIN_DB
    assert "the most this changes a level" in capsys.readouterr().out


def test_silent_speech_is_left_as_it_is(tmp_path, speech, capsys):
    subject(tmp_path, level_of(tmp_path, speech))
    path = write(tmp_path / "silent.wav", np.zeros(2 * SR, np.float32))
    assert SpeechFeatures(path, tmp_path, 26).gain_db == 0.0
    assert "too short or too quiet to measure" in capsys.readouterr().out


def test_datasets_without_the_recorded_level_measure_their_aud_wav(tmp_path, speech):
    write(tmp_path / "aud.wav", speech * 0.5)
    assert subject_loudness(tmp_path, {}) == pytest.approx(level_of(tmp_path, speech) - 6.02, abs=0.15)
    assert subject_loudness(tmp_path, {"loudness_lufs": -23.0}) == -23.0
    assert subject_loudness(tmp_path, {"loudness_lufs": None}) is None  # step 2 found none: nothing to match
    assert subject_loudness(tmp_path / "none", {}) is None


def test_loudness_must_be_match_or_keep(tmp_path, speech):
    subject(tmp_path, -20.0)
    with pytest.raises(ValueError, match="match or keep"):
        SpeechFeatures(write(tmp_path / "a.wav", speech), tmp_path, 26, loudness="normalise")


def test_measured_as_load_audio_decodes_it_clipped(tmp_path, speech):
    """A float wav far above full scale: its loudness is that of the 16-bit audio load_audio gives."""
    from common.audio import load_audio

    hot = tmp_path / "hot.wav"
    wavfile.write(hot, SR, (speech * 20).astype(np.float32))  # peaks at 5x full scale
    assert loudness(hot) == pytest.approx(loudness(write(tmp_path / "dec.wav", load_audio(hot))), abs=0.15)


def test_only_the_mfcc_features_are_matched(tmp_path, speech, capsys):
    meta = subject(tmp_path, -40.0)
    meta["extractor"] = "given"  # features given as AD-NeRF's aud.npy: nothing to compute at any level
    save_json(tmp_path / "aud_meta.json", meta)
    with pytest.raises(ValueError, match="--aud_npy"):
        SpeechFeatures(write(tmp_path / "a.wav", speech), tmp_path, 26)
    assert "dB" not in capsys.readouterr().out
    assert subject_loudness(tmp_path, {"loudness_lufs": float("nan")}) is None


def test_small_gains_are_applied_without_a_line(tmp_path, speech, capsys):
    subject(tmp_path, level_of(tmp_path, speech))
    quiet = SpeechFeatures(write(tmp_path / "q.wav", speech * 10 ** (-2 / 20)), tmp_path, 26)
    assert quiet.gain_db == pytest.approx(2.0, abs=0.15) and "dB" not in capsys.readouterr().out
    quieter = SpeechFeatures(write(tmp_path / "q4.wav", speech * 10 ** (-4 / 20)), tmp_path, 26)
    assert quieter.gain_db == pytest.approx(4.0, abs=0.15) and "4.0 dB louder" in capsys.readouterr().out
