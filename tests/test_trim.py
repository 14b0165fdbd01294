"""--start / --end: a cut to a picture without a face stops step 3 with the trim of the shot with the face; kept
(--cuts keep), the span without a face is named by step 4 with the same trim; the trim processes that part."""
from __future__ import annotations

import json

import numpy as np

from data_util import runner
from tests.av_media import make_face_then_blank


def test_no_face_span_is_named_and_the_suggested_trim_works(tmp_path, capsys):
    vids = tmp_path / "dataset" / "vids"
    vids.mkdir(parents=True)
    make_face_then_blank(vids / "cut.mp4", face_s=2.0, blank_s=2.0, size=96)
    base = ["cut", "--root", str(tmp_path / "dataset"), "--config_dir", str(tmp_path / "configs")]
    assert runner.main([*base, "--step", "3"]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "cut.mp4: a cut or transition (a dissolve, a fade) at 2.0 s;" in err[0], err
    assert "the longest shot with a face is 0-1.9 s (2.0 s): add --start 0 --end 1.9" in err[0], err[0]
    assert not (tmp_path / "dataset" / "cut" / "ori_imgs").exists()
    assert runner.main([*base, "--cuts", "keep", "--step", "3"]) == 0
    assert "2 shots (0.0-2.0, 2.0-4.0 s) processed as one (--cuts keep)" in capsys.readouterr().err
    code = runner.main([*base, "--step", "4"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert code == 1 and len(err) == 1, err
    assert "no face in 2.0-4.0 s (frames 50-99) of" in err[0] and "--start 0 --end 1.9" in err[0], err[0]
    assert len(list((tmp_path / "dataset" / "cut" / "ori_imgs").glob("*.jpg"))) == 100  # step 3's output kept
    for step in "1234":
        assert runner.main([*base, "--start", "0", "--end", "1.9", "--step", step]) == 0, capsys.readouterr().err
    out = tmp_path / "dataset" / "cut"
    meta = json.loads((out / "video_meta.json").read_text())
    n = len(list((out / "ori_imgs").glob("*.jpg")))
    assert meta["start_s"] == 0 and meta["end_s"] == 1.9 and abs(n - 47) <= 1
    assert len(np.load(out / "aud.npy")) == n == len(np.load(out / "landmarks.npy"))
