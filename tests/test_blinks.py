"""Eye openness as an input (common/eyes.py, nerf/blinks.py, render.py --blink): the measure, the schedules, the
files, and on a tiny generated subject whose eyes close: the rendered eyes follow the requested openness."""
from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest

import evaluate
import render
import train
from common.eyes import IBUG68_EYES, MEDIAPIPE_EYES, eye_aspect_ratio, openness
from nerf.blinks import blink_schedule, closed_level, natural_blinks, read_blink_file, read_eye_openness
from tests import nerf_fixtures as NF
from tests.test_learning import LEARN

BIG, SIZE, N_FRAMES, ITERS = 64, 32, 24, 100
REQUESTED = np.array([0.2, 1.0, 0.5, 0.8, 0.35, 0.65])  # openness asked of the renders


# ---------------------------------------------------------------- the measure
def _eyes(n_points: int, layout, gaps: np.ndarray) -> np.ndarray:
    """Landmarks [N,n_points,2] with each eye 10 px wide and both lid pairs `gaps` px apart."""
    lms = np.zeros((len(gaps), n_points, 2))
    for e, (c0, u1, u2, c1, l2, l1) in enumerate(layout):
        x = 40.0 * e
        lms[:, c0], lms[:, c1] = [x, 0], [x + 10, 0]
        for k, (u, low) in enumerate(((u1, l1), (u2, l2))):
            lms[:, u] = np.stack([np.full(len(gaps), x + 3 + 4 * k), -gaps / 2], 1)
            lms[:, low] = np.stack([np.full(len(gaps), x + 3 + 4 * k), gaps / 2], 1)
    return lms


@pytest.mark.parametrize("n_points,layout", [(478, MEDIAPIPE_EYES), (468, MEDIAPIPE_EYES), (68, IBUG68_EYES)])
def test_eye_aspect_ratio_is_lid_gap_over_width(n_points, layout):
    gaps = np.array([3.0, 1.0, 0.0])
    assert np.allclose(eye_aspect_ratio(_eyes(n_points, layout, gaps)), gaps / 10)


def test_openness_is_one_for_the_usual_eye_and_fills_gaps():
    gaps = np.array([3.0] * 8 + [0.6, 0.6, 0.6] + [3.0] * 8)
    lms = _eyes(478, MEDIAPIPE_EYES, gaps)
    lms[2] = np.nan  # a frame without landmarks
    o = openness(lms)
    assert o[0] == pytest.approx(1.0) and o[-1] == pytest.approx(1.0) and o[2] == pytest.approx(1.0)
    assert o[9] == pytest.approx(0.2) and o[8] < 0.5  # the blink, smoothed over 3 frames
    with pytest.raises(ValueError, match="unknown landmark layout with 10 points"):
        eye_aspect_ratio(np.zeros((2, 10, 2)))


# ---------------------------------------------------------------- schedules and files
def test_natural_blinks_at_a_human_rate_and_length():
    n = 25 * 600  # ten minutes
    for seed in range(3):
        o = natural_blinks(n, closed=0.3, seed=seed)
        assert o.max() == pytest.approx(1.0) and o.min() == pytest.approx(0.3, abs=0.01)
        shut = o < 0.65
        starts = np.nonzero(shut[1:] & ~shut[:-1])[0]
        ends = np.nonzero(~shut[1:] & shut[:-1])[0]
        per_min = len(starts) / 10
        lengths_ms = (ends[:len(starts)] - starts[:len(ends)]) * 40
        assert 14 <= per_min <= 21, per_min
        assert lengths_ms.max() <= 320 and lengths_ms.min() >= 40
    assert np.array_equal(natural_blinks(500, 0.3, seed=4), natural_blinks(500, 0.3, seed=4))
    assert not np.array_equal(natural_blinks(500, 0.3, seed=4), natural_blinks(500, 0.3, seed=5))


def test_blink_modes_and_files(tmp_path):
    assert np.array_equal(blink_schedule("none", 5, 0.3), np.ones(5))
    assert closed_level(np.array([1.0] * 95 + [0.3] * 5)) == pytest.approx(0.3)
    assert closed_level(np.ones(100)) == 0.5  # a clip without blinks: half closed at most
    blinks = np.ones(200)
    blinks[[10, 11, 12, 50, 51, 90, 140, 141]] = [0.6, 0.2, 0.5, 0.4, 0.7, 0.35, 0.3, 0.45]  # 4 blinks
    assert closed_level(blinks) == pytest.approx(0.325)  # the median of each blink's deepest frame
    assert closed_level(None) == 0.3
    (tmp_path / "ok.txt").write_text("1\n0.5\n0.3\n")
    assert np.allclose(blink_schedule(str(tmp_path / "ok.txt"), 3, 0.3), [1, 0.5, 0.3])
    np.save(tmp_path / "ok.npy", np.array([1.0, 0.2]))
    assert np.allclose(read_blink_file(tmp_path / "ok.npy", 2), [1, 0.2])
    with pytest.raises(ValueError, match=r"ok\.txt: 3 openness values, but the audio gives 4 frames"):
        read_blink_file(tmp_path / "ok.txt", 4)
    (tmp_path / "bad.txt").write_text("open\nshut\n")
    with pytest.raises(ValueError, match=r"bad\.txt: not a list of numbers"):
        read_blink_file(tmp_path / "bad.txt", 2)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_blink_file(tmp_path / "missing.txt", 2)


def test_eye_openness_sources(tmp_path):
    frames = [{"img_id": 0, "eye": 0.9}, {"img_id": 1, "eye": 0.4}]
    eye, src = read_eye_openness(tmp_path, frames, np.array([0, 1]))
    assert np.allclose(eye, [0.9, 0.4]) and "transforms" in src
    bare = [{"img_id": 0}, {"img_id": 2}]
    eye, src = read_eye_openness(tmp_path, bare, np.array([0, 2]))
    assert eye is None and "no eye openness" in src
    (tmp_path / "ori_imgs").mkdir()  # AD-NeRF: 68-point .lms per frame
    gaps = np.array([3.0, 3.0, 0.6, 0.6, 3.0, 3.0])
    for i, pts in enumerate(_eyes(68, IBUG68_EYES, gaps)):
        np.savetxt(tmp_path / "ori_imgs" / f"{i}.lms", pts, "%f")
    eye, src = read_eye_openness(tmp_path, bare, np.array([0, 2]))
    assert "lms" in src and eye[0] > 0.8 and eye[1] < 0.5
    np.save(tmp_path / "landmarks.npy", _eyes(478, MEDIAPIPE_EYES, gaps))  # preferred over .lms
    eye, src = read_eye_openness(tmp_path, bare, np.array([0, 2]))
    assert "landmarks.npy" in src and eye[0] > 0.8 and eye[1] < 0.5


# ---------------------------------------------------------------- the field follows the eye input
@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    root = tmp_path_factory.mktemp("blinks")
    return root, NF.make_tiny_dataset(root / "data", n_frames=N_FRAMES, size=BIG, eyes=True)


def _train(root, data, name, *extra):
    rc = train.main(["--datadir", str(data), "--basedir", str(root / "logs"), "--expname", name,
                     "--iters", str(ITERS), "--ckpt_every", str(ITERS), "--val_every", str(ITERS), *LEARN, *extra])
    assert rc == 0
    return root / "logs" / name


def _eye_rect(data):
    """x0, y0, x1, y1 at SIZE px around both eyes of training frame 0, rendered wide open."""
    R, t = NF.head_pose(0, N_FRAMES)
    bg = np.zeros((BIG, BIG, 3))
    _, cls = NF.render_frame(NF.c2w_from_pose(R, t), R, t, 1.25 * BIG, BIG, bg, 0.5, 1.0)
    ys, xs = np.nonzero(cls == 3)
    k = SIZE / BIG
    return int(xs.min() * k) - 1, int(ys.min() * k) - 1, int(np.ceil((xs.max() + 1) * k)) + 1, \
        int(np.ceil((ys.max() + 1) * k)) + 1


def _eye_darkness(run, data, tmp_path, name) -> np.ndarray:
    """Render at training pose 0 with one audio frame repeated and --blink REQUESTED; the eye area's darkness."""
    feats = np.repeat(np.load(data / "aud.npy")[:1], len(REQUESTED), axis=0)
    np.save(tmp_path / f"{name}_aud.npy", feats)
    np.savetxt(tmp_path / f"{name}_blink.txt", REQUESTED)
    out = tmp_path / name
    rc = render.main(["--datadir", str(data), "--basedir", str(run.parent), "--expname", run.name,
                      "--aud", str(tmp_path / f"{name}_aud.npy"), "--pose", "static", "--save_frames", str(out),
                      "--out", str(out.with_suffix(".mp4")), "--blink", str(tmp_path / f"{name}_blink.txt")])
    assert rc == 0
    x0, y0, x1, y1 = _eye_rect(data)
    frames = [iio.imread(p).astype(np.float64) / 255 for p in sorted(out.glob("*.png"))]
    return np.array([1 - f[y0:y1, x0:x1].mean() for f in frames])


def test_rendered_eyes_follow_the_requested_openness(subject, tmp_path):
    """100 iterations: the eye area's darkness follows the requested openness (r >= 0.8); a model trained with
    `--eyes false` renders the same eyes whatever is asked, and its held-out eye region is not better."""
    root, data = subject
    run = _train(root, data, "eyes")
    assert "eyes = true" in (run / "config.txt").read_text() and "eye_region = true" in (run / "config.txt").read_text()
    dark = _eye_darkness(run, data, tmp_path, "eyes")
    r = float(np.corrcoef(REQUESTED, dark)[0, 1])
    print(f"eye darkness {np.round(dark, 3)} for openness {REQUESTED}: r = {r:.3f}")
    assert r >= 0.8
    control = _train(root, data, "no_eyes", "--eyes", "false")
    flat = _eye_darkness(control, data, tmp_path, "no_eyes")
    assert np.ptp(flat) < 0.1 * np.ptp(dark)
    # the 3 held-out frames (openness 0.30, 0.95, 0.21): the eye region is not worse with the input than without
    eye_psnr = {}
    for model in (run, control):
        out = tmp_path / f"eval_{model.name}"
        assert evaluate.main(["--datadir", str(data), "--basedir", str(model.parent), "--expname", model.name,
                              "--no_video", "--out_dir", str(out)]) == 0
        eye_psnr[model.name] = json.loads((out / "metrics.json").read_text())["region_psnr"]["eyes"]
    print(f"held-out eye-region PSNR: {eye_psnr}")
    assert eye_psnr["eyes"] >= eye_psnr["no_eyes"]


def test_old_folder_without_eye_trains_without_the_input(tmp_path, capsys):
    data = NF.make_tiny_dataset(tmp_path / "data", n_frames=12, size=16)
    run = tmp_path / "logs" / "bare"
    from tests.render_fixtures import FAST

    assert train.main(["--datadir", str(data), "--basedir", str(tmp_path / "logs"), "--expname", "bare",
                       *FAST, "--iters", "2"]) == 0
    assert "no eye openness" in capsys.readouterr().out
    assert "eyes = false" in (run / "config.txt").read_text()
    meta = json.loads((data / "transforms_train.json").read_text())
    assert all("eye" not in f for f in meta["frames"])


def test_render_blink_file_of_the_wrong_length_is_a_one_line_error(tmp_path, capsys):
    from tests.av_media import make_tone
    from tests.render_fixtures import train_tiny

    run = train_tiny(tmp_path)
    tone = make_tone(tmp_path / "tone.wav", seconds=0.2)  # 5 frames
    (tmp_path / "blinks.txt").write_text("1\n0.3\n1\n")
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"previous render")
    capsys.readouterr()
    rc = render.main(["--config", str(run["config"]), "--aud", str(tone), "--out", str(out),
                      "--blink", str(tmp_path / "blinks.txt")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.startswith("error: ") and "\n" not in err
    assert "blinks.txt: 3 openness values, but the audio gives 5 frames" in err
    assert out.read_bytes() == b"previous render"


def test_eye_region_from_the_face_shape(tmp_path):
    """Eye centres and radii from track_params.pt's face shape; None without one or with AD-NeRF's 3DMM `id`."""
    import torch

    from nerf.blinks import eye_region

    NF.save_face_shape(tmp_path)
    region = eye_region(tmp_path).numpy()
    assert np.allclose(region[:, :3], NF.eye_centres(), atol=1e-6)
    assert np.allclose(region[:, 3], 0.6 * 2 * NF.HEAD_R * np.arccos(0.985), rtol=1e-5)
    torch.save({"id": torch.zeros(1, 100)}, tmp_path / "track_params.pt")
    assert eye_region(tmp_path) is None
    assert eye_region(tmp_path / "nowhere") is None


def test_eye_pixels_project_onto_the_eyes(tmp_path):
    """The projected eye centres fall on the eyes class of each frame's parsing map (the sphere's eye discs), and
    the radius in pixels is the disc's size on screen (within 25%)."""
    from nerf.blinks import eye_pixels
    from nerf.dataset import DataConfig, TalkingDataset

    data = NF.make_tiny_dataset(tmp_path / "d", n_frames=12, size=64, eyes=True)
    ds = TalkingDataset(DataConfig(datadir=str(data)), "train")
    centres, radii = eye_pixels(ds.eye_region, ds.c2w, ds.focal, ds.cx, ds.cy)
    eye_class = ds.class_names.index("eyes")
    for f in range(len(ds)):
        labels = ds.parsing_map(f).numpy()
        for (x, y) in centres[f]:
            assert labels[int(y), int(x)] == eye_class
    disc_px = NF.HEAD_R * np.arccos(0.985) * ds.focal / (-torch_depth(ds))
    assert np.allclose(radii.mean(), 1.2 * disc_px, rtol=0.25)


def torch_depth(ds) -> float:
    """The camera's mean distance to the head frame's origin (the eyes are about that far)."""
    return -float(ds.c2w[:, :3, 3].norm(dim=1).mean())


def test_closure_code_is_zero_when_open_and_one_at_the_clips_blinks():
    """eye_code closure: (1 - openness) / (1 - eye_closed), clamped to [-0.5, 1.5], with eye_closed a buffer of the
    model; eye_code openness (checkpoints before it) feeds the openness itself and has no such buffer."""
    import torch

    from nerf.model import ModelConfig, SSPNeRF

    small = dict(hash_levels=4, hash_log2_table=10, hash_max_res=64, aud_code_dim=4, eye_region=False)
    codes, eye = torch.zeros(5, 4), torch.tensor([1.0, 0.4, 0.7, 1.3, -2.0])
    closure = SSPNeRF(ModelConfig(**small), 8, 3, torch.tensor([-1.0, -1, -1, 1, 1, 1]), [], eye_closed=0.4)
    assert closure.condition(codes, eye)[:, -1].tolist() == pytest.approx([0.0, 1.0, 0.5, -0.5, 1.5])
    assert closure.condition(codes, None)[:, -1].tolist() == [0.0] * 5  # no openness given: open
    assert float(closure.state_dict()["eye_closed"]) == pytest.approx(0.4)
    old = SSPNeRF(ModelConfig(**small, eye_code="openness"), 8, 3, torch.tensor([-1.0, -1, -1, 1, 1, 1]), [])
    assert old.condition(codes, eye)[:, -1].tolist() == pytest.approx(eye.tolist())
    assert "eye_closed" not in old.state_dict()


def test_a_checkpoint_from_before_the_closure_code_loads_with_openness(tmp_path):
    """A run keeps the training clip's closed level with its weights and natural blinks close that far; a
    checkpoint whose fingerprint predates eye_code (pipeline.BEFORE_KEY) loads as openness, without the buffer, and
    its natural blinks close to the training clip's level."""
    import torch

    from nerf.render_video import blink_depth
    from nerf.runs import load_run
    from tests.render_fixtures import FAST

    data = NF.make_tiny_dataset(tmp_path / "data", n_frames=12, size=16, eyes=True)
    logs = ["--datadir", str(data), "--basedir", str(tmp_path / "logs")]
    for name, extra in (("new", []), ("old", ["--eye_code", "openness"])):
        assert train.main([*logs, "--expname", name, *FAST, "--iters", "2", *extra]) == 0
    new = load_run([*logs, "--expname", "new"])
    train_eye = np.array([f["eye"] for f in json.loads((data / "transforms_train.json").read_text())["frames"]])
    assert float(new.model.eye_closed) == pytest.approx(closed_level(train_eye), abs=1e-6)
    new.model.eye_closed.fill_(0.123)  # --blink natural closes to what the model was trained to call shut
    assert blink_depth(new) == pytest.approx(0.123)
    ckpt = tmp_path / "logs" / "old" / "ckpt" / "latest.pt"
    state = torch.load(ckpt, weights_only=True)
    del state["fingerprint"]["eye_code"]
    torch.save(state, ckpt)
    old = load_run([*logs, "--expname", "old"])
    assert old.cfg.model.eye_code == "openness" and not hasattr(old.model, "eye_closed")
    assert blink_depth(old) == pytest.approx(closed_level(train_eye))
