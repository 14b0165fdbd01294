"""evaluate.py: metric pieces with numbers, LMD/sync plumbing with fake landmarks, end to end on a tiny run."""
import json

import numpy as np
import pytest
import torch

import evaluate
from nerf import evaluation as E
from nerf.mp4 import read_back
from tests.av_media import make_tone
from tests.render_fixtures import train_tiny


def test_pearson():
    t = np.arange(50.0)
    assert E.pearson(t, 2 * t + 1) == pytest.approx(1.0)
    assert E.pearson(t, -t) == pytest.approx(-1.0)
    a = np.sin(t)
    b = a.copy()
    b[[3, 7]] = np.nan  # frames without a face are left out
    assert E.pearson(a, b) == pytest.approx(1.0)
    assert E.pearson(t, np.ones(50)) is None and E.pearson([1.0, 2.0], [1.0, 2.0]) is None


def test_frame_loudness():
    sr = 16000
    wav = np.concatenate([0.5 * np.sin(2 * np.pi * 200 * np.arange(sr) / sr), np.zeros(sr // 2)])
    loud = E.frame_loudness(wav, 38)  # 1.5 s -> 37.5 frames; the last one half padded
    assert loud.shape == (38,)
    assert loud[:25] == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.1)  # -9.03 dB
    assert loud[26:].max() == pytest.approx(-80, abs=0.01)  # silence -> the floor


def test_error_map_and_select_frames():
    gt = np.zeros((4, 5, 3))
    pred = gt.copy()
    pred[0, 0] = 1.0
    err = E.error_map(pred, gt)
    assert err.shape == (4, 5, 3) and err.dtype == np.uint8
    assert err[0, 0].sum() > err[1, 1].sum()
    assert E.select_frames(5, 0) == [0, 1, 2, 3, 4]
    assert E.select_frames(100, 3) == [0, 50, 99]


def _lpips_files(tmp_path, seed=0):
    """A backbone and heads with the real files' keys and shapes, random values (the test's own small network)."""
    from nerf.lpips import CONVS, TORCHVISION_INDEX

    g = torch.Generator().manual_seed(seed)
    backbone = {}
    for idx, (i, o, k, *_) in zip(TORCHVISION_INDEX, CONVS):
        backbone[f"features.{idx}.weight"] = torch.randn(o, i, k, k, generator=g) * (2 / (i * k * k)) ** 0.5
        backbone[f"features.{idx}.bias"] = torch.zeros(o)
    heads = {f"lin{k}.model.1.weight": torch.rand(1, o, 1, 1, generator=g) for k, (_, o, *_) in enumerate(CONVS)}
    torch.save(backbone, tmp_path / "alexnet.pth")
    torch.save(heads, tmp_path / "alex_heads.pth")
    return tmp_path / "alexnet.pth", tmp_path / "alex_heads.pth"


def test_lpips_from_given_files(tmp_path):
    from nerf.lpips import load_lpips

    net, line = load_lpips(*_lpips_files(tmp_path))
    assert "alexnet.pth" in line and "alex_heads.pth" in line
    rng = np.random.default_rng(0)
    img = rng.random((1, 64, 64, 3))
    noisy = [np.clip(img + rng.normal(0, s, img.shape), 0, 1) for s in (0.02, 0.1, 0.3)]
    same = E.lpips_scores(img, img, net, line)
    scores = [E.lpips_scores(img, n, net, line)[0] for n in noisy]
    assert same == [0.0]
    assert 0 < scores[0] < scores[1] < scores[2]  # more noise, larger distance
    small = E.lpips_scores(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 3)), net, line)
    assert small.startswith("skipped: LPIPS could not run on 8x8")


def test_lpips_never_downloads_and_says_why(tmp_path, monkeypatch):
    from nerf.lpips import load_lpips

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    net, line = load_lpips()
    assert net is None and line.startswith("skipped: no AlexNet weights")
    assert E.lpips_scores(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 3)), net, line) == line


def test_lpips_wrong_files_one_line_errors(tmp_path):
    from nerf.lpips import load_lpips

    backbone, heads = _lpips_files(tmp_path)
    with pytest.raises(ValueError, match="heads.pth: not AlexNet backbone weights"):
        load_lpips(heads, heads)
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pth: not a torch weights file"):
        load_lpips(backbone, tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth: AlexNet backbone weights not found"):
        load_lpips(tmp_path / "missing.pth", heads)


def _fake_landmarks(monkeypatch, shift_px: float, no_face: set[int]):
    """detect_landmarks: mouth points at a frame-dependent place (+shift for renders = frames whose [0,0,0] is 1)."""
    def detect(frames):
        out = []
        for i, f in enumerate(frames):
            lms = np.zeros((478, 3), np.float32)
            lms[:, 1] = 10 + (i % 4)  # the "mouth opening" follows i % 4 in both
            if f[0, 0, 0] == 1:
                lms[:, 0] += shift_px
            if i in no_face:
                lms[:] = np.nan
            out.append(lms)
        return np.stack(out)

    to_68 = lambda lms: np.repeat(lms[..., :1, :2], 68, axis=-2)  # noqa: E731
    opening = lambda lms: lms[:, 0, 1]  # noqa: E731
    monkeypatch.setattr(E, "_landmarks_api", lambda: (detect, to_68, opening))


def test_lmd_and_sync_numbers(monkeypatch):
    _fake_landmarks(monkeypatch, shift_px=3.0, no_face={5})
    gt = [np.zeros((8, 8, 3), np.uint8) for _ in range(10)]
    pred = [np.ones((8, 8, 3), np.uint8) for _ in range(10)]
    res = E.lmd_and_sync(pred, gt)
    assert res["lmd"] == pytest.approx(3.0)  # every mouth point 3 px off
    assert res["sync"] == pytest.approx(1.0)  # same opening over time
    assert res["faces_found"] == {"render": 9, "gt": 9}
    assert res["opening_render"][5] is None
    assert res["lmd_frames"][5] is None and res["lmd_frames"][4] == pytest.approx(3.0)  # per frame, None: no face


def test_lmd_without_landmarks_module(monkeypatch):
    monkeypatch.setattr(E, "_landmarks_api", lambda: "skipped: data_util.landmarks not available")
    res = E.lmd_and_sync([np.zeros((4, 4, 3), np.uint8)], [np.zeros((4, 4, 3), np.uint8)])
    assert res["lmd"].startswith("skipped") and res["sync"].startswith("skipped")


# ---------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("evaluate"), backbone="hash")


def test_evaluate_end_to_end(run, tmp_path, capsys, monkeypatch):
    aud = make_tone(tmp_path / "new.wav", seconds=0.5)
    assert evaluate.main(["--config", str(run["config"]), "--aud", str(aud)]) == 0
    eval_dir = run["run_dir"] / "eval"
    m = json.loads((eval_dir / "metrics.json").read_text())
    assert m["frames"] == 2 and m["img_ids"] == [10, 11]  # the last 1/11 of 12 frames
    assert 5 < m["psnr"] < 60 and -1 <= m["ssim"] <= 1
    assert isinstance(m["lpips"], float) or m["lpips"].startswith("skipped")
    assert 0 <= m["miou"] <= 1 and {"face", "torso"} <= set(m["region_psnr"])
    assert len(m["per_frame"]["psnr"]) == 2 and m["new_audio"]["frames"] == 13
    assert len(m["per_frame"]["lmd"]) == 2
    assert isinstance(m["lmd"], (float, str)) and isinstance(m["sync"], (float, str, type(None)))
    back = read_back(eval_dir / "side_by_side.mp4")
    assert (back["width"], back["height"], back["frames"]) == (48, 16, 2)
    assert (eval_dir / "psnr.png").stat().st_size > 1000 and (eval_dir / "mouth_opening.png").is_file()
    # the trainer validated frame 0 of the val split with the same model: the same PSNR
    last = json.loads((run["run_dir"] / "metrics.jsonl").read_text().splitlines()[-1])
    assert evaluate.main(["--config", str(run["config"]), "--max_frames", "1", "--no_video",
                          "--out_dir", str(tmp_path / "ev1")]) == 0
    one = json.loads((tmp_path / "ev1" / "metrics.json").read_text())
    assert one["frames"] == 1 and one["psnr"] == pytest.approx(last["psnr"], abs=1e-3)
    assert one["miou"] == pytest.approx(last["miou"], abs=1e-6)


def test_evaluate_with_the_measured_mouth_shape(run, tmp_path, capsys):
    """--mouth_shape measured: the held-out frames' own landmark shape as the input; a model without the input
    gets a one-line error."""
    for shape in ("predicted", "measured"):
        assert evaluate.main(["--config", str(run["config"]), "--no_video", "--mouth_shape", shape,
                              "--out_dir", str(tmp_path / shape)]) == 0
    pred, meas = (json.loads((tmp_path / s / "metrics.json").read_text()) for s in ("predicted", "measured"))
    assert (pred["mouth_shape"], meas["mouth_shape"]) == ("predicted", "measured")
    assert meas["per_frame"]["psnr"] != pred["per_frame"]["psnr"]  # another input, another image
    plain = train_tiny(tmp_path / "plain", expname="plain", extra=("--mouth", "false"))
    capsys.readouterr()
    assert evaluate.main(["--config", str(plain["config"]), "--no_video", "--mouth_shape", "measured"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no mouth-shape input" in err


def test_evaluate_missing_checkpoint(run, capsys):
    assert evaluate.main(["--config", str(run["config"]), "--expname", "nothing_here"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "nothing_here" in err and "latest.pt" in err


def test_evaluate_wrong_lpips_file_fails_before_rendering(run, tmp_path, capsys):
    (tmp_path / "bad.pth").write_bytes(b"not weights")
    out = tmp_path / "ev"
    assert evaluate.main(["--config", str(run["config"]), "--lpips_backbone", str(tmp_path / "bad.pth"),
                          "--out_dir", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "bad.pth: not a torch weights file" in err
    assert not out.exists()  # nothing rendered or written


def test_evaluate_reports_lpips_with_given_weights(run, tmp_path):
    backbone, heads = _lpips_files(tmp_path)
    out = tmp_path / "ev"
    assert evaluate.main(["--config", str(run["config"]), "--lpips_backbone", str(backbone), "--lpips_heads",
                          str(heads), "--no_video", "--out_dir", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert "alexnet.pth" in m["lpips_weights"]
    # the tiny run's 16 px frames are too small for AlexNet: said in one line, not a crash
    assert isinstance(m["lpips"], str) and m["lpips"].startswith("skipped: LPIPS could not run on 16x16")
