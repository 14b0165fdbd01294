"""2-iteration CPU training runs on the tiny folder: each backbone, each ablation, AD-NeRF folders, resume."""
import json

import pytest
import torch

import train
from nerf.checkpoint import load_checkpoint
from tests.nerf_fixtures import add_hands, make_tiny_dataset

FAST = ["--preset", "none", "--n_rand", "64", "--val_every", "2", "--ckpt_every", "2", "--val_frames", "1", "--device", "cpu",
        "--threads", "1", "--log_every", "1",
        "--n_samples", "16", "--n_importance", "16", "--hash_samples", "32", "--mlp_width", "64",
        "--hash_log2_table", "12", "--occ_res", "16", "--occ_every", "1"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"), n_frames=12, size=16)


def _train(tmp_path, datadir, *extra, name="run", iters=2):
    argv = ["--datadir", str(datadir), "--basedir", str(tmp_path / "logs"), "--expname", name,
            "--iters", str(iters), *FAST, *extra]
    return train.main(argv), tmp_path / "logs" / name


def _records(run):
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("extra", [
    ["--backbone", "hash"],
    ["--backbone", "mlp"],
    ["--backbone", "hash", "--semantic", "false"],
    ["--backbone", "hash", "--sampling", "uniform"],
    ["--backbone", "hash", "--deform", "false"],
], ids=["hash", "mlp", "no_semantic", "uniform", "no_deform"])
def test_two_iterations(tmp_path, tiny, extra):
    rc, run = _train(tmp_path, tiny, *extra)
    assert rc == 0
    rec = _records(run)
    assert [r["iter"] for r in rec] == [2]
    r = rec[0]
    assert r["time_s"] > 0 and 5 < r["psnr"] < 60
    assert set(r["region_psnr"]) >= {"face", "torso", "lips"}
    if "--semantic" in extra:
        assert r["miou"] is None and "loss_sem" not in r
    else:
        assert 0 <= r["miou"] <= 1 and r["loss_sem"] > 0
    assert abs(sum(r["shares"].values()) - 1) < 1e-4
    assert load_checkpoint(run / "ckpt" / "latest.pt")["iteration"] == 2
    assert (run / "config.txt").is_file() and list((run / "tb").iterdir()) and (run / "curves.png").is_file()


@pytest.mark.parametrize("sampling", ["semantic", "uniform"])
def test_a_folder_with_hands_trains(tmp_path, sampling):
    """Rays on a hand are dropped (UNTRAINED_CLASSES), so a batch holds fewer than n_rand rays: it trains past the
    occupancy grid's first update (a batch of rays and of bounds of different lengths once broke it)."""
    root = make_tiny_dataset(tmp_path / "hands", n_frames=12, size=16)
    add_hands(root)
    rc, run = _train(tmp_path, root, "--sampling", sampling, iters=4)
    assert rc == 0 and _records(run)[-1]["iter"] == 4


def test_adnerf_folder_trains(tmp_path):
    root = make_tiny_dataset(tmp_path / "ad", n_frames=12, size=16, adnerf=True)
    rc, run = _train(tmp_path, root, "--backbone", "hash")
    assert rc == 0
    r = _records(run)[0]
    assert r["miou"] is None and r["region_psnr"] == {} and r["psnr"] > 5
    assert "semantic = false" in (run / "config.txt").read_text()


def test_resume_continues_exactly(tmp_path, tiny):
    rc, straight = _train(tmp_path, tiny, name="straight", iters=4)
    assert rc == 0
    rc, run = _train(tmp_path, tiny, name="resumed", iters=2)
    rc2, run = _train(tmp_path, tiny, "--resume", "true", name="resumed", iters=4)
    assert rc == rc2 == 0
    assert [r["iter"] for r in _records(run)] == [2, 4]
    a = load_checkpoint(straight / "ckpt" / "latest.pt")
    b = load_checkpoint(run / "ckpt" / "latest.pt")
    assert b["iteration"] == 4
    for k, v in a["model"].items():
        assert torch.allclose(v.float(), b["model"][k].float(), atol=1e-6), k
    assert _records(run)[-1]["psnr"] == pytest.approx(_records(straight)[-1]["psnr"], abs=1e-4)


def test_config_mismatch_is_one_line_error(tmp_path, tiny, capsys):
    rc, run = _train(tmp_path, tiny, "--backbone", "hash", name="x")
    assert rc == 0
    capsys.readouterr()
    rc, _ = _train(tmp_path, tiny, "--backbone", "mlp", "--resume", "true", name="x", iters=4)
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.count("\n") == 0
    assert "latest.pt" in err and "backbone" in err and "Traceback" not in err


def test_supersampled_training_validates_at_img_size(tmp_path, tiny, capsys):
    """train_supersample = 2: rays from 16 px training images, validation (and the saved config) at img_size 8."""
    rc, run = _train(tmp_path, tiny, "--backbone", "hash", "--img_size", "8", "--train_supersample", "2")
    assert rc == 0 and "training rays through 16x16 images; validation at 8x8" in capsys.readouterr().out
    assert 5 < _records(run)[0]["psnr"] < 60
    cfg = (run / "config.txt").read_text()
    assert "img_size = 8" in cfg and "train_supersample = 2" in cfg


def test_bad_input_exit_code(tmp_path, capsys):
    rc, _ = _train(tmp_path, tmp_path / "missing")
    assert rc == 1 and "missing" in capsys.readouterr().err


def test_learning_rate_warms_up_then_decays():
    from nerf.trainer import learning_rate

    lr = [learning_rate(it, 1e-2, 0.1, 1000, 100) for it in (0, 50, 100, 1000)]
    assert lr[0] == 0.0
    assert lr[1] == pytest.approx(0.5 * 1e-2 * 0.1 ** 0.05)
    assert lr[2] == pytest.approx(1e-2 * 0.1 ** 0.1)
    assert lr[3] == pytest.approx(1e-3)
    assert learning_rate(0, 1e-2, 0.1, 1000, 0) == 1e-2


def _drop_key(run, key):
    ckpt = run / "ckpt" / "latest.pt"
    state = torch.load(ckpt, weights_only=True)
    del state["fingerprint"][key]
    torch.save(state, ckpt)


def test_resume_of_a_checkpoint_from_before_a_key(tmp_path, capsys):
    """A checkpoint whose fingerprint lacks a model key added later (audio_at_eyes) resumes when the run asks for
    the value it was made with (pipeline.BEFORE_KEY: true), and otherwise fails with one line naming the key;
    where the key has no effect (no eye input) it resumes either way."""
    eyes = make_tiny_dataset(tmp_path / "eyes", n_frames=12, size=16, eyes=True)
    rc, run = _train(tmp_path, eyes, "--audio_at_eyes", "true", name="old")
    assert rc == 0 and "eye_region = true" in (run / "config.txt").read_text()
    _drop_key(run, "audio_at_eyes")
    capsys.readouterr()
    rc, _ = _train(tmp_path, eyes, "--audio_at_eyes", "false", "--resume", "true", name="old", iters=4)
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.count("\n") == 0 and "audio_at_eyes: True (checkpoint) vs False (now)" in err
    rc, _ = _train(tmp_path, eyes, "--audio_at_eyes", "true", "--resume", "true", name="old", iters=4)
    assert rc == 0 and [r["iter"] for r in _records(run)] == [2, 4]
    rc, run = _train(tmp_path, eyes, "--eyes", "false", name="no_eyes")
    _drop_key(run, "audio_at_eyes")
    rc, _ = _train(tmp_path, eyes, "--eyes", "false", "--resume", "true", name="no_eyes", iters=4)
    assert rc == 0 and [r["iter"] for r in _records(run)] == [2, 4]
