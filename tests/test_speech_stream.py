"""render.py's long-audio path: features and codes computed chunk by chunk equal those of the whole file, and a
long file renders in the memory of a short one (slow)."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from common.audio_features import extract_features, make_meta
from common.fileio import save_json
from nerf.features import SpeechFeatures
from nerf.render_video import iter_speech_frames
from sample_data.speech import synth_speech
from scipy.io import wavfile


def _subject(tmp_path, seconds=9.0):
    wav = synth_speech(seconds, seed=5)
    path = tmp_path / "speech.wav"
    wavfile.write(path, 16000, (wav * 32767).astype(np.int16))
    meta = make_meta("mfcc")
    steps_dim = 26
    meta.update(dim=steps_dim, mean=[0.1] * steps_dim, std=[2.0] * steps_dim)
    save_json(tmp_path / "aud_meta.json", meta)
    return path, meta


def test_chunked_features_equal_the_whole_file(tmp_path):
    path, meta = _subject(tmp_path)
    sf = SpeechFeatures(path, tmp_path, 26)
    whole = extract_features(sf.wav, meta)
    assert sf.n == len(whole) == 225
    for a, b in [(0, 40), (40, 100), (100, 225), (200, 225)]:
        feats, a0 = sf.chunk(a, b)
        assert np.allclose(feats[a - a0: b - a0], whole[a:b], atol=1e-4), (a, b)


def test_chunked_codes_equal_the_whole_file(tmp_path):
    """The attention smoothing reaches 4 frames either side: chunk borders do not change any code."""
    from types import SimpleNamespace

    from tests.test_model import make

    path, _ = _subject(tmp_path)
    pipe = make("hash", aud_dim=26).eval()
    pipe.use_attention = True
    sf = SpeechFeatures(path, tmp_path, 26)
    whole = pipe.frame_codes(torch.from_numpy(sf.chunk(0, sf.n)[0]))
    seen = []

    class _Pipe:  # records the codes each frame is rendered with
        def frame_codes(self, *a, **kw):
            return pipe.frame_codes(*a, **kw)

        def render_frame(self, cam, c2w, code, semantics=True):
            seen.append(code)
            return {}

    run = SimpleNamespace(pipeline=_Pipe(), ds=None, cfg=SimpleNamespace(data=SimpleNamespace(zero_audio=False)))
    list(iter_speech_frames(run, sf, torch.zeros(sf.n, 4, 4), chunk=60))
    assert len(seen) == sf.n
    assert torch.allclose(torch.stack(seen), whole, atol=1e-5)


PEAK = """
import resource, sys
import render
assert render.main(sys.argv[1:]) == 0
print("peak_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


@pytest.mark.slow
def test_ten_minutes_render_in_the_memory_of_ten_seconds(tmp_path):
    from tests.render_fixtures import train_tiny

    run = train_tiny(tmp_path / "run")
    peaks = {}
    for seconds in (10, 600):
        wav = synth_speech(min(seconds, 20), seed=1)
        wav = np.tile(wav, int(np.ceil(seconds / 20)))[: seconds * 16000]
        aud = tmp_path / f"speech_{seconds}.wav"
        wavfile.write(aud, 16000, (wav * 32767).astype(np.int16))
        out = subprocess.run([sys.executable, "-c", PEAK, "--config", str(run["config"]), "--aud", str(aud), "--out",
                              str(tmp_path / f"out_{seconds}.mp4"), "--img_size", "16"], capture_output=True,
                             text=True, check=True)
        peaks[seconds] = float(out.stdout.split("peak_mb")[-1])
    print(peaks)
    assert peaks[600] < 1.2 * peaks[10]
