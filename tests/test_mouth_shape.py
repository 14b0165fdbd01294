"""The mouth-shape input (nerf/mouth_shape.py): the ridge regression from audio to lip opening and width, where
the field finds the shape in its condition, the measured shape of a dataset, and a checkpoint keeping the fit."""
import json

import numpy as np
import pytest
import torch

from nerf.mouth_shape import (LAMBDAS, MouthPredictor, choose_lambda, read_mouth_shape, ridge, teacher_shapes,
                              teacher_shares)
from tests.test_model import AABB, CLASSES, make, _Cfg
from nerf.pipeline import ModelMeta, build_pipeline
from tests.nerf_fixtures import mouth_landmarks, mouth_opening


def _speech(n=400, d=6, seed=0):
    """Features [n,16,d] whose shape [n,2] is a fixed linear read-out plus noise (a slowly varying 'speech')."""
    rng = np.random.default_rng(seed)
    latent = np.cumsum(rng.normal(size=(n, 2)), 0) * 0.1
    latent -= latent.mean(0)
    mix = rng.normal(size=(2, 16 * d))
    feats = latent @ mix + 0.3 * rng.normal(size=(n, 16 * d))
    shape = np.stack([0.2 + 0.1 * latent[:, 0], 0.8 + 0.05 * latent[:, 1]], 1) + 0.005 * rng.normal(size=(n, 2))
    return torch.tensor(feats.reshape(n, 16, d), dtype=torch.float32), torch.tensor(shape, dtype=torch.float32)


def test_predictor_recovers_the_shape_of_unheard_frames():
    feats, shape = _speech()
    pred = MouthPredictor(aud_dim=6)
    info = pred.fit(feats[:300], shape[:300])
    assert info["lambda"] in LAMBDAS and min(info["cv_r"]) > 0.9  # the fit's own held-out blocks
    assert "r = " in pred.describe() and "hardly predicts" not in pred.describe()
    got = pred(feats[300:]).numpy()
    for j in range(2):  # both outputs follow the truth on frames the fit never saw
        assert np.corrcoef(got[:, j], shape[300:, j].numpy())[0, 1] > 0.9
    z = pred.normalise(shape[:300])
    assert torch.allclose(z.mean(0), torch.zeros(2), atol=1e-4) and torch.allclose(z.std(0, unbiased=False),
                                                                                   torch.ones(2), atol=1e-3)


def test_cross_validation_prefers_a_penalty_when_features_are_noise():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 150))  # 150 noise features, 200 frames: no penalty overfits
    y = rng.normal(size=(200, 2))
    lam, err = choose_lambda(x, y)
    assert lam >= 100 and err[lam] < err[min(LAMBDAS)]


def test_the_log_says_when_the_audio_does_not_predict_the_mouth():
    feats, shape = _speech(n=300)
    pred = MouthPredictor(aud_dim=6)
    pred.fit(feats, shape[torch.randperm(300, generator=torch.Generator().manual_seed(0))])  # speech of another clip
    assert max(pred.fit_info["cv_r"]) < 0.3 and "the audio hardly predicts this clip's mouth" in pred.describe()


def test_dual_solution_equals_the_primal_one():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(30, 80)), rng.normal(size=(30, 2))  # more features than frames: the dual
    w = ridge(x, y, 10.0)
    xc, yc = x - x.mean(0), y - y.mean(0)
    primal = np.linalg.solve(xc.T @ xc + 10.0 * np.eye(80), xc.T @ yc)
    assert np.allclose(w[:-1], primal, atol=1e-8)
    assert np.allclose(x.mean(0) @ w[:-1] + w[-1], y.mean(0))  # the intercept: the mean frame gives the mean


def test_condition_carries_the_mouth_between_codes_and_eye():
    pipe = make("hash", mouth=True, eyes=True, eye_region=False)
    model = pipe.model
    assert model.cond_dim == 64 + 2 + 1
    model.mouth.shape_mean.copy_(torch.tensor([0.2, 0.8]))
    model.mouth.shape_std.copy_(torch.tensor([0.1, 0.05]))
    codes = torch.randn(3, 64)
    cond = model.condition(codes, torch.ones(3), torch.tensor([[0.2, 0.8], [0.3, 0.8], [0.2, 0.7]]))
    assert torch.equal(cond[:, :64], codes)
    assert torch.allclose(cond[:, 64:66], torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, -2.0]]), atol=1e-5)
    assert torch.allclose(model.condition(codes, None)[:, 64:66], torch.zeros(3, 2))  # None: the mean shape


def test_frame_codes_use_the_predicted_shape_and_a_checkpoint_keeps_the_fit():
    from nerf.model import ModelConfig
    from nerf.pipeline import RenderConfig
    from tests.test_model import FAST, SMALL

    feats, shape = _speech(d=13)
    cfg = _Cfg(ModelConfig(**{**SMALL, "mouth": True}), RenderConfig(**FAST))
    pipe = build_pipeline(cfg, ModelMeta(13, CLASSES, AABB, mouth_train=(feats[:300], shape[:300])))
    cond = pipe.frame_codes(feats, torch.arange(300, 400))
    want = pipe.model.mouth.normalise(pipe.model.mouth(feats[300:]))
    assert torch.allclose(cond[:, 64:66], want, atol=1e-5)
    assert np.corrcoef(cond[:, 64].numpy(), shape[300:, 0].numpy())[0, 1] > 0.9
    told = pipe.frame_codes(feats, torch.arange(300, 400), mouth=shape[300:400])  # evaluate.py --mouth_shape measured
    assert torch.allclose(told[:, 64:66], pipe.model.mouth.normalise(shape[300:400]), atol=1e-5)
    assert torch.equal(told[:, :64], cond[:, :64])

    again = build_pipeline(cfg, ModelMeta(13, CLASSES, AABB))  # no training frames: the fit comes from the state
    assert not torch.allclose(again.model.mouth(feats[300:]), pipe.model.mouth(feats[300:]))
    again.load_state_dict(pipe.state_dict())
    assert torch.equal(again.model.mouth(feats[300:]), pipe.model.mouth(feats[300:]))


def _loud_speech(n=400, d=6, seed=3):
    """Features [n,16,d] whose dim 0 is the normalised log energy (mean -8, std 4) of an amplitude envelope a [n,16]
    with pauses, and a lip opening that follows the envelope linearly (0.5 a at the window's centre): [n,2]."""
    rng = np.random.default_rng(seed)
    a = np.clip(np.convolve(rng.normal(size=n * 2 + 40), np.ones(6) / 6, "same")[:n * 2 + 16], 0, None) + 1e-4
    steps = np.stack([a[2 * i: 2 * i + 16] for i in range(n)])  # [n,16]: frame i's window of 50 Hz steps
    feats = 0.3 * rng.normal(size=(n, 16, d))
    feats[:, :, 0] = (np.log(steps ** 2) + 8.0) / 4.0
    shape = np.stack([0.5 * steps[:, 8], 0.8 + 0.01 * rng.normal(size=n)], 1)
    return torch.tensor(feats, dtype=torch.float32), torch.tensor(shape, dtype=torch.float32)


def test_the_amplitude_envelope_predicts_an_opening_that_follows_loudness():
    feats, shape = _loud_speech()
    plain, env = MouthPredictor(aud_dim=6), MouthPredictor(aud_dim=6, envelope=True)
    env.set_energy(-8.0, 4.0)  # what aud_meta.json says of the MFCC log energy
    err = {}
    for name, pred in (("plain", plain), ("envelope", env)):
        pred.fit(feats[:300], shape[:300])
        err[name] = float(((pred(feats[300:])[:, 0] - shape[300:, 0]) ** 2).mean().sqrt())
    assert err["envelope"] < 0.6 * err["plain"], err
    assert "with its amplitude envelope" in env.describe() and "envelope" not in plain.describe()
    buffers = lambda on: dict(make("hash", mouth=True, mouth_envelope=on).model.mouth.named_buffers())  # noqa: E731
    assert "energy" in buffers(True) and "energy" not in buffers(False)  # checkpoints from before the key load


def test_without_an_mfcc_log_energy_the_envelope_is_left_out(tmp_path):
    from nerf.mouth_shape import log_energy_norm

    assert log_energy_norm(tmp_path) is None  # no aud_meta.json
    meta = {"extractor": "mfcc", "features": "log energy, mfcc c1-c12, deltas of all 13", "mean": [-8.0, 1.0],
            "std": [4.0, 2.0]}
    (tmp_path / "aud_meta.json").write_text(json.dumps(meta))
    assert log_energy_norm(tmp_path) == (-8.0, 4.0)
    (tmp_path / "aud_meta.json").write_text(json.dumps({**meta, "extractor": "deepspeech", "mean": None}))
    assert log_energy_norm(tmp_path) is None
    feats, shape = _speech()
    plain, env = MouthPredictor(aud_dim=6), MouthPredictor(aud_dim=6, envelope=True)  # energy never set
    plain.fit(feats[:300], shape[:300]), env.fit(feats[:300], shape[:300])
    assert torch.allclose(plain(feats[300:]), env(feats[300:]), atol=1e-4)
    assert "envelope" not in env.describe()


def _saturating_speech(n=500, d=2, seed=5):
    """Features [n,16,d] whose centre step's dim 0 is a loudness l, and a lip opening that follows it with a floor
    and a ceiling, as a jaw does: clip(l, 0, 0.4) (shut in pauses, no wider than the jaw opens) -> (feats, shape)."""
    rng = np.random.default_rng(seed)
    loud = np.convolve(rng.normal(size=n + 8), np.ones(5) / 5, "same")[4:n + 4] * 0.6
    feats = 0.1 * rng.normal(size=(n, 16, d))
    feats[:, 8, 0] = loud
    shape = np.stack([np.clip(loud, 0.0, 0.4) + 0.005 * rng.normal(size=n), 0.7 + 0.01 * rng.normal(size=n)], 1)
    return torch.tensor(feats, dtype=torch.float32), torch.tensor(shape, dtype=torch.float32)


def test_the_calibration_curve_reaches_a_shut_mouth_and_the_widest_opening():
    feats, shape = _saturating_speech()
    plain, cal = MouthPredictor(aud_dim=2), MouthPredictor(aud_dim=2, calibrate=True)
    plain.fit(feats[:350], shape[:350])
    info = cal.fit(feats[:350], shape[:350])
    assert info["calibrated"][0]
    truth, raw, curved = shape[350:, 0], plain(feats[350:])[:, 0], cal(feats[350:])[:, 0]
    rmse = lambda p: float(((p - truth) ** 2).mean().sqrt())  # noqa: E731
    assert rmse(curved) < 0.6 * rmse(raw), (rmse(curved), rmse(raw))
    shut, widest = truth < 0.01, truth > 0.39
    assert shut.sum() > 20 and widest.sum() > 5
    assert curved[shut].abs().mean() < 0.02 < 0.05 < raw[shut].abs().mean()  # a line opens a shut mouth
    assert curved[widest].mean() > 0.37 > 0.3 > raw[widest].mean()  # and falls short of the ceiling
    assert "the opening" in cal.describe() and "through a monotone curve" in cal.describe()
    teacher = torch.as_tensor(info["held_out"][:, 0])  # nested: each block's curve fitted on the other blocks
    assert ((teacher - shape[:350, 0]) ** 2).mean() < ((torch.as_tensor(plain.fit_info["held_out"][:, 0])
                                                         - shape[:350, 0]) ** 2).mean()


def test_an_output_the_curve_does_not_help_keeps_the_identity():
    """Held-out predictions that are already exact (width) keep the identity curve; a saturating opening gets one."""
    rng = np.random.default_rng(1)
    raw = rng.normal(size=300)
    y = np.stack([np.clip(raw, 0, 0.5), 0.7 + 0.05 * raw], 1)
    oof = np.stack([raw, y[:, 1]], 1)
    pred = MouthPredictor(aud_dim=1, calibrate=True)
    pred.fit_info = {"held_out": oof.copy(), "calibrated": [False, False]}
    pred.fit_calibration(oof, y)
    assert pred.fit_info["calibrated"] == [True, False]
    assert torch.equal(pred.calib_x[1], pred.calib_y[1])
    x = torch.linspace(-3, 3, 50, dtype=torch.float64)
    from nerf.mouth_shape import interp

    curve = interp(x, pred.calib_x[0].double(), pred.calib_y[0].double())
    assert curve.min() > -0.01 and curve.max() < 0.51 and np.all(np.diff(curve.numpy()) >= 0)


def test_interp_is_numpys_interp():
    from nerf.mouth_shape import interp

    rng = np.random.default_rng(0)
    xp = np.sort(rng.normal(size=9))
    xp[4] = xp[3]  # a tie, as quantiles of repeated predictions give
    fp = np.cumsum(rng.random(9))
    x = np.concatenate([rng.normal(scale=2, size=50), xp])
    got = interp(torch.tensor(x), torch.tensor(xp), torch.tensor(fp)).numpy()
    ok = np.abs(x - xp[3]) > 1e-9  # numpy's value at a tied knot is either side's
    np.testing.assert_allclose(got[ok], np.interp(x, xp, fp)[ok], atol=1e-12)


def test_read_mouth_shape(tmp_path):
    ids = np.array([0, 2])
    got, why = read_mouth_shape(tmp_path, ids)
    assert got is None and "landmarks.npy" in why
    np.save(tmp_path / "landmarks.npy", mouth_landmarks(3))
    got, why = read_mouth_shape(tmp_path, ids)
    m = np.array([mouth_opening(0), mouth_opening(2)])
    assert np.allclose(got, np.stack([0.05 + 0.3 * m, 0.6 - 0.1 * m], 1), atol=1e-5) and "measured" in why
    got, why = read_mouth_shape(tmp_path, np.array([0, 5]))  # a frame past the file's end
    assert got is None and "[3, 478, 3]" in why
    lms = mouth_landmarks(3)
    lms[2, 13] = np.nan  # an upper inner-lip point lost in frame 2
    np.save(tmp_path / "landmarks.npy", lms)
    got, why = read_mouth_shape(tmp_path, ids)
    assert got is None and "in 1 of the split's frames" in why


def test_training_without_landmarks_turns_the_input_off(tmp_path, capsys):
    from nerf.config import parse
    from nerf.trainer import Trainer
    from tests.nerf_fixtures import make_tiny_dataset

    root = make_tiny_dataset(tmp_path / "d", n_frames=12)
    cfg = parse(["--datadir", str(root), "--preset", "none", "--img_size", "16", "--iters", "1",
                        "--basedir", str(tmp_path / "logs"), "--expname", "x"])
    trainer = Trainer(cfg)
    assert not trainer.cfg.model.mouth and trainer.pipeline.model.mouth is None
    assert "without the mouth input" in capsys.readouterr().out


def test_a_trained_run_takes_the_input_and_keeps_its_fit(tmp_path, capsys):
    from nerf.runs import load_run
    from tests.render_fixtures import train_tiny

    tiny = train_tiny(tmp_path)  # its landmarks.npy: the mouth opens with the audio
    out = capsys.readouterr().out
    assert "mouth input: audio with its amplitude envelope -> lip opening / width" in out
    assert "the envelope's pre-emphasis undone" in out  # its aud_meta.json: the mfcc extractor's settings
    assert "mouth = true" in (tiny["run_dir"] / "config.txt").read_text()
    run = load_run(["--config", str(tiny["config"])])
    assert run.model.mouth is not None and run.model.cond_dim == 2 + 1  # the default: no learned audio code
    assert float(run.model.mouth.weight.abs().sum()) > 0  # the fit came back from the checkpoint
    assert run.model.mouth.deemphasis and float(run.model.mouth.band_gain.max()) > 100  # ... and the read-out


def test_zero_audio_control_trains_without_the_input(tmp_path, capsys):
    from nerf.config import parse
    from nerf.trainer import Trainer
    from tests.render_fixtures import tiny_subject

    root = tiny_subject(tmp_path / "d")  # has landmarks: the input would be on
    cfg = parse(["--datadir", str(root), "--preset", "none", "--img_size", "16", "--iters", "1", "--zero_audio",
                 "true", "--basedir", str(tmp_path / "logs"), "--expname", "x"])
    trainer = Trainer(cfg)
    assert trainer.pipeline.model.mouth is None and "zero_audio -> training without the mouth input" in \
        capsys.readouterr().out


def test_without_the_audio_code_the_field_hears_the_audio_through_the_shape_alone():
    feats, shape = _speech(d=13)
    pipe = make("hash", mouth=True, eyes=False, audio_code=False)
    model = pipe.model
    assert model.cond_dim == 2 and not hasattr(model, "audio_net") and not hasattr(model, "audio_att")
    model.mouth.fit(feats[:300], shape[:300])
    assert model.audio_codes(torch.randn(3, 9, 16, 13), use_attention=True).shape == (3, 0)
    cond = pipe.frame_codes(feats, torch.arange(300, 310))
    assert torch.allclose(cond, model.mouth.normalise(model.mouth(feats[300:310])), atol=1e-5)
    o = torch.tensor([0.0, 0.0, 1.0]).expand(4, 3).clone()
    d = torch.tensor([0.0, 0.0, -1.0]).expand(4, 3).clone()
    near, far = torch.full((4,), 0.6), torch.full((4,), 1.4)
    out = pipe.render_rays(o, d, near, far, cond[:4], torch.zeros(4, 6), torch.rand(4, 3), perturb=False)
    (out["rgb"].sum() + out["deform_l2"]).backward()  # the gradient reaches the field through the shape alone
    assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith("field.density_net"))
    with pytest.raises(ValueError, match="audio_code = false needs the mouth input"):
        make("hash", mouth=False, audio_code=False)


def test_a_run_without_the_mouth_input_hears_the_audio_through_the_code(tmp_path, capsys):
    from nerf.runs import load_run
    from tests.render_fixtures import train_tiny

    tiny = train_tiny(tmp_path, extra=("--mouth", "false"))
    assert "no mouth input -> the field hears the audio through a learned audio code" in capsys.readouterr().out
    saved = (tiny["run_dir"] / "config.txt").read_text()
    assert "audio_code = true" in saved and "mouth = false" in saved
    run = load_run(["--config", str(tiny["config"])])
    assert run.model.mouth is None and run.model.cond_dim == 64 + 1  # the code and the eye input


def test_the_teacher_shapes_training_frames_see(tmp_path):
    """train.mouth_teacher: held_out = the regression's held-out predictions, measured = the landmarks' shape, mix
    = the measured shape plus mouth_teacher_mix of the difference."""
    from nerf.config import parse
    from nerf.trainer import Trainer
    from tests.render_fixtures import tiny_subject

    root = tiny_subject(tmp_path / "d", n_frames=12)
    seen = {}
    for teacher in ("held_out", "measured", "mix"):
        cfg = parse(["--datadir", str(root), "--preset", "none", "--img_size", "16", "--iters", "1", "--basedir",
                     str(tmp_path / "logs"), "--expname", teacher, "--mouth_teacher", teacher,
                     "--mouth_teacher_mix", "0.25"])
        trainer = Trainer(cfg)
        seen[teacher] = trainer.train_mouth
    measured = trainer.train_ds.mouth
    held_out = torch.from_numpy(trainer.pipeline.model.mouth.fit_info["held_out"]).float()
    assert torch.equal(seen["measured"], measured) and torch.equal(seen["held_out"], held_out)
    assert not torch.allclose(held_out, measured, atol=1e-4)
    assert torch.allclose(seen["mix"], 0.75 * measured + 0.25 * held_out, atol=1e-6)
    with pytest.raises(ValueError, match=r"mouth_teacher_mix = 1.5: must lie in \[0, 1\]"):
        teacher_shares("mix", 1.5, [0.9, 0.9])


def test_auto_teaches_the_measured_shape_only_where_the_audio_predicts_it():
    """mouth_teacher = auto: per output, the measured shape where the held-out r reaches TRUST_R, else the held-out
    prediction; the log says which."""
    from nerf.mouth_shape import TRUST_R, teacher_note

    measured, held_out = torch.zeros(4, 2), torch.ones(4, 2)
    shares = teacher_shares("auto", 0.5, [TRUST_R + 0.1, TRUST_R - 0.1])
    assert shares == [0.0, 1.0]
    seen = teacher_shapes(shares, measured, held_out)
    assert torch.equal(seen[:, 0], measured[:, 0]) and torch.equal(seen[:, 1], held_out[:, 1])
    assert teacher_note(shares) == "training frames see the measured opening, the held-out width"
    assert teacher_shares("auto", 0.5, [-0.35, float("nan")]) == [1.0, 1.0]  # a silent clip: nothing to trust
    assert teacher_shares("mix", 0.25, [0.9, 0.9]) == [0.25, 0.25]


@pytest.mark.parametrize("key, attr, buffer", [("mouth_envelope", "envelope", "energy"),
                                               ("mouth_deemphasis", "deemphasis", "band_gain"),
                                               ("mouth_calibrate", "calibrate", "calib_x")])
def test_a_checkpoint_from_before_a_predictor_key_loads_without_it(tmp_path, key, attr, buffer):
    """A run with the mouth input whose checkpoint predates mouth_envelope / mouth_calibrate (trained without it,
    the key not in its fingerprint) loads with it off (pipeline.BEFORE_KEY): the same predictor, no such buffer."""
    from nerf.runs import load_run
    from tests.render_fixtures import train_tiny

    tiny = train_tiny(tmp_path, extra=(f"--{key}", "false"))
    before = load_run(["--config", str(tiny["config"])]).model.mouth
    ckpt = tiny["run_dir"] / "ckpt" / "latest.pt"
    state = torch.load(ckpt, weights_only=True)
    del state["fingerprint"][key]
    torch.save(state, ckpt)
    text = (tiny["run_dir"] / "config.txt").read_text()
    (tiny["run_dir"] / "config.txt").write_text("\n".join(ln for ln in text.splitlines() if not ln.startswith(key)))
    after = load_run(["--config", str(tiny["config"])]).model.mouth
    assert not getattr(after, attr) and buffer not in dict(after.named_buffers())
    feats = torch.randn(5, 16, (before.feat_mean.numel() - (16 if before.envelope else 0)) // 16)
    assert torch.equal(after(feats), before(feats))


def _vowel(formants: tuple[int, ...], seconds: float = 0.8, sr: int = 16000) -> np.ndarray:
    """A 120 Hz pulse train through formant resonators [T], scaled to RMS 0.1."""
    from scipy import signal

    x = np.zeros(int(seconds * sr))
    x[:: sr // 120] = 1.0
    for k, f in enumerate(formants):
        r = np.exp(-np.pi * (60 + 40 * k) / sr)
        x = signal.lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * f / sr), r * r], x)
    return 0.1 * x / np.sqrt((x ** 2).mean())


def test_the_envelope_without_the_pre_emphasis_hears_a_u_as_loud_as_an_i():
    """The MFCC log energy is taken after a pre-emphasis filter, which weakens low frequencies, so a 'u' (formants
    330 / 800 Hz) reads half as loud as an 'i' (300 / 2200 Hz) of the same RMS; read through the features' own
    cepstrum (mouth_deemphasis), the envelope gives both the waveform's RMS within 10%."""
    from common.audio_features import add_stats, band_readout, finish, make_meta, raw_steps

    u, i = _vowel((330, 800, 2300)), _vowel((300, 2200, 2900))
    gap = np.zeros(8000)
    wav = np.concatenate([gap, u, gap, i, gap])  # frames 12.5-32.5: the 'u', 45-65: the 'i' (25 fps)
    meta = make_meta("mfcc")
    steps = raw_steps(wav, meta, 2 * (len(wav) // 640 + 1))
    add_stats(meta, steps)
    feats = torch.from_numpy(finish(steps, meta))
    amps = {}
    for de in (False, True):
        pred = MouthPredictor(aud_dim=feats.shape[-1], envelope=True, deemphasis=de)
        pred.set_energy(meta["mean"][0], meta["std"][0])
        pred.set_bands(band_readout(meta))
        amp = pred.amplitude(feats)[:, 8].double()  # each frame's own step
        amps[de] = (float(amp[16:29].mean()), float(amp[48:62].mean()))
    assert amps[False][1] / amps[False][0] > 1.7, amps  # the bias by vowel
    rms = 0.1 * np.sqrt((np.hamming(400) ** 2).sum() / 2)  # the log energy's power: half the windowed sum of squares
    assert all(abs(v / rms - 1) < 0.1 for v in amps[True]), (amps, rms)
    assert band_readout({**meta, "extractor": "hubert"}) is None and band_readout({**meta, "mean": None}) is None


def test_a_refit_follows_the_new_shapes_and_keeps_the_fields_scale():
    """MouthPredictor.refit (train.mouth_refine's corrected shapes): the regression predicts the new targets, the
    z-scoring the field was trained with stays."""
    feats, shape = _speech()
    pred = MouthPredictor(aud_dim=6)
    pred.fit(feats[:300], shape[:300])
    mean, std = pred.shape_mean.clone(), pred.shape_std.clone()
    moved = shape * torch.tensor([1.5, 0.5]) + torch.tensor([0.1, -0.2])
    pred.refit(feats[:300], moved[:300])
    assert torch.equal(pred.shape_mean, mean) and torch.equal(pred.shape_std, std)
    got = pred(feats[300:])
    assert float((got - moved[300:]).abs().mean()) < 0.2 * float((shape[300:] - moved[300:]).abs().mean())
