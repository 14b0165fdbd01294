"""The mouth-shape input: lip opening and width per frame, from the landmarks when training, from the audio when
rendering (docs/DESIGN.md section 6, "Mouth").

A field that sees only a learned audio code must learn from a few hundred frames how speech moves the lips, and on
unheard speech it under-opens the mouth (benchmarks/NOTES.md, 2026-12-04). Two numbers say most of what a viseme
is, and the landmarks measure them on every training frame (data_util.landmarks.mouth_shape: inner-lip gap and
corner-to-corner width over the eye-corner distance). So the field is conditioned on them as well, and a ridge
regression from the frame's audio features to the shape, fitted once on the training frames (the regularisation
chosen by blocked cross-validation), gives the shape of any new speech. A training frame shows the field the shape
the regression predicts for it from a fit on the other blocks (`held_out_predictions`; train.mouth_teacher), so
the field learns how far the prediction can be trusted, as it will be used; or its measured shape. The regression
is a few thousand numbers kept in the checkpoint (`MouthPredictor`'s buffers).

The amplitude envelope (`envelope`, model key mouth_envelope): how far the lips part follows the speech's amplitude
envelope (Chandrasekaran et al. 2009, "The natural statistics of audiovisual speech"), a loudness on a linear
scale, while the MFCC extractor gives its log. A linear read-out of the log does not follow it, so the predictor also
reads exp(log energy / 2) of the window's 16 steps (an RMS amplitude) when the subject's extractor is the MFCC
one (dim 0 of its steps is the log energy, normalised with the mean and std of aud_meta.json); with other
extractors those 16 inputs are zero and get no weight. On the 24 s sample it cuts the held-out error of the
opening by a fifth to a third (benchmarks/NOTES.md, 2026-12-06, third session).

The pre-emphasis undone (`deemphasis`, model key mouth_deemphasis): the MFCC extractor takes its log energy after a
pre-emphasis filter (1 - 0.97 z^-1), which weakens the low frequencies, so a "u" (formants 330 / 800 Hz) came out
half as loud as an "i" (300 / 2200 Hz) of the same RMS, a bias by vowel that a linear read-out cannot undo. The
features' c1..c12 give each step's spectral shape over the mel bands back, so the envelope is corrected by the
filter's inverse gain averaged over that shape (common.audio_features.band_readout): on the 24 s sample it follows
the waveform's own RMS at r 0.997 instead of 0.90, and the held-out opening error drops from 0.023 to 0.020
(benchmarks/NOTES.md, 2026-12-06 fifth session).

The calibration (`calibrate`, model key mouth_calibrate): a linear read-out cannot saturate, while the lips have a
floor (shut on pauses and bilabials) and a ceiling (the jaw's widest opening): it opens a shut mouth a little and
falls short of the widest openings. So each output of the ridge is mapped through a monotone curve, the isotonic
regression of the measured shape on the held-out blocks' predictions, kept as CALIB_KNOTS knots at quantiles of
those predictions (linear between them, flat beyond). An output keeps the identity curve when the curve does not
lower its error on held-out blocks of the held-out predictions themselves (nested, as the field will use it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

LAMBDAS = (1.0, 10.0, 100.0, 1000.0, 10000.0)  # ridge penalties tried (features standardised)
WEAK_R = 0.3  # held-out r below this on both outputs: the training log says the audio hardly predicts the mouth
FOLDS = 5  # contiguous blocks of frames: neighbouring frames are near copies, so random folds would overfit
CALIB_KNOTS = 33  # knots of the monotone calibration curve of each output
N_CEPS, N_BANDS = 12, 26  # mouth_deemphasis: MFCC c1..c12 read back onto the extractor's 26 mel bands
TRUST_R = 0.8  # mouth_teacher = auto: an output whose held-out r reaches this is taught by its measured shape


def read_mouth_shape(root: Path, img_ids: np.ndarray) -> tuple[np.ndarray | None, str]:
    """(shape float32 [F,2] = (opening, width) of the split's frames, where it came from) or (None, why not)."""
    from data_util.landmarks import mouth_shape

    path = root / "landmarks.npy"
    if not path.is_file():
        return None, f"no {path.name} (process_data.sh writes it)"
    lms = np.load(path)
    if lms.ndim != 3 or lms.shape[1] < 468 or len(lms) <= int(img_ids.max()):
        return None, f"{path.name} has shape {list(lms.shape)}, not [frames, 478, 3] covering the split"
    shape = mouth_shape(lms[img_ids])
    out = np.stack([shape["opening"], shape["width"]], 1).astype(np.float32)
    bad = int((~np.isfinite(out).all(1)).sum())
    if bad:  # process_data.sh fills the frames without a face; a NaN would make the whole regression NaN
        return None, f"{path.name} has no finite mouth points in {bad} of the split's frames"
    return out, f"measured on {path.name}"


def log_energy_norm(root: Path) -> tuple[float, float] | None:
    """(mean, std) that normalised the log energy (dim 0) of the subject's MFCC features, from aud_meta.json, or
    None when its extractor gives no log energy (deepspeech, hubert, given features) or the file is missing."""
    from common.fileio import read_json

    path = root / "aud_meta.json"
    if not path.is_file():
        return None
    meta = read_json(path)  # a broken file: one line naming it
    if meta.get("extractor") != "mfcc" or not str(meta.get("features", "log energy")).startswith("log energy"):
        return None
    mean, std = meta.get("mean"), meta.get("std")
    return (float(mean[0]), float(std[0])) if mean and std else (0.0, 1.0)


def band_readout_of(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The subject's spectrum read-out (common.audio_features.band_readout) from its aud_meta.json, or None (other
    extractors, or no file)."""
    from common.audio_features import band_readout
    from common.fileio import read_json

    path = root / "aud_meta.json"
    return band_readout(read_json(path)) if path.is_file() and log_energy_norm(root) is not None else None


def ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Ridge regression of y [N,k] on standardised x [N,K] with an unpenalised intercept -> W [K+1,k] (last row:
    the intercept). Solved in the dual when K > N (audio features of a large extractor)."""
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    if x.shape[1] > x.shape[0]:
        w = xc.T @ np.linalg.solve(xc @ xc.T + lam * np.eye(len(x)), yc)
    else:
        w = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ yc)
    return np.vstack([w, ym - xm @ w])


def blocks(n: int):
    """(held-out rows, the other rows) for each of FOLDS contiguous blocks of n frames."""
    for b in np.array_split(np.arange(n), FOLDS):
        yield b, np.setdiff1d(np.arange(n), b)


def held_out_predictions(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Each of FOLDS contiguous blocks of frames predicted by the ridge fitted on the others -> [N,k]."""
    out = np.empty_like(y)
    for b, fit in blocks(len(x)):
        w = ridge(x[fit], y[fit], lam)
        out[b] = x[b] @ w[:-1] + w[-1]
    return out


def choose_lambda(x: np.ndarray, y: np.ndarray) -> tuple[float, dict[float, float]]:
    """The penalty of LAMBDAS with the lowest held-out mean squared error (held_out_predictions; y standardised
    so both outputs count alike) -> (lambda, {lambda: error})."""
    ys = (y - y.mean(0)) / y.std(0).clip(1e-6)
    err = {lam: float(((held_out_predictions(x, ys, lam) - ys) ** 2).mean()) for lam in LAMBDAS}
    return min(err, key=err.get), err


def isotonic_knots(pred: np.ndarray, y: np.ndarray, k: int = CALIB_KNOTS) -> tuple[np.ndarray, np.ndarray]:
    """The isotonic (non-decreasing) regression of y [N] on pred [N], as k knots (x at quantiles of pred, y on
    the fitted curve) -> (kx [k], ky [k])."""
    from scipy.optimize import isotonic_regression

    order = np.argsort(pred, kind="stable")
    fitted = isotonic_regression(y[order]).x
    kx = np.quantile(pred, np.linspace(0.0, 1.0, k))
    return kx, np.interp(kx, pred[order], fitted)


def nested_calibration(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each of FOLDS contiguous blocks of pred [N] calibrated by the curve fitted on the other blocks -> [N]."""
    out = np.empty_like(pred)
    for b, fit in blocks(len(pred)):
        out[b] = np.interp(pred[b], *isotonic_knots(pred[fit], y[fit]))
    return out


def interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear curve through knots (xp [K] non-decreasing, fp [K]) at x [F] -> [F]; flat beyond the ends
    (numpy.interp in torch)."""
    i = torch.searchsorted(xp, x.contiguous()).clamp(1, len(xp) - 1)
    x0, x1, f0, f1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    t = ((x - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0.0, 1.0)
    return f0 + t * (f1 - f0)


def teacher_shares(teacher: str, mix: float, cv_r: list[float]) -> list[float]:
    """Per output (opening, width), the share of the held-out prediction's error a training frame's shape carries
    (train.mouth_teacher): 0 measured, 1 held_out, `mix`; auto: 0 where the held-out r of that output (cv_r) is at
    least TRUST_R, else 1 (taught the measured shape, a field draws whatever the prediction says, which only pays
    when the prediction is good: on a clip whose audio does not predict its mouth it drew a wide-open mouth on a
    smile, benchmarks/NOTES.md 2026-12-06 fourth session)."""
    if teacher == "mix" and not 0.0 <= mix <= 1.0:
        raise ValueError(f"mouth_teacher_mix = {mix}: must lie in [0, 1] (0: measured, 1: held-out)")
    if teacher == "auto":
        return [0.0 if r >= TRUST_R else 1.0 for r in cv_r]  # NaN (a shape that never changes): held-out
    return [{"measured": 0.0, "held_out": 1.0}.get(teacher, mix)] * 2


def hardly_predicted(cv_r: list[float]) -> bool:
    """True when the audio hardly predicts the mouth: the held-out r of neither output (opening, width) reaches WEAK_R
    (NaN, a shape that never changes, does not reach it)."""
    with np.errstate(invalid="ignore"):
        return not np.nanmax(np.asarray(cv_r, float)) >= WEAK_R if np.isfinite(cv_r).any() else True


def frame_code_note(cv_r: list[float], dim: int) -> str | None:
    """With frame_code and audio_code left unset: the log line that turns a learned per-frame code of `dim` channels
    on (RAD-NeRF / ER-NeRF's individual codes, here a function of the frame's time: SSPNeRF.frame_code), when the
    audio hardly predicts the mouth (held-out r of both outputs below WEAK_R: a silent or dubbed clip, or
    expressions its speech does not carry); else None. With only the shape, which then
    says nothing of the frame, the field cannot tell such a clip's frames apart and draws a blend of its
    expressions: smeared faces in renders at those poses (wolfgang: training frames 22.5 dB; benchmarks/NOTES.md
    2026-12-07)."""
    if not hardly_predicted(cv_r) or not np.isfinite(cv_r).any():  # (a shape that never changes needs no code)
        return None
    return (f"mouth input: the audio hardly predicts this clip's mouth (held-out r {cv_r[0]:.2f} / {cv_r[1]:.2f}), "
            "so the field also gets a learned code of the frame's time in the clip to tell its frames apart "
            f"(frame_code = {dim}; --frame_code 0 keeps it off)")


def teacher_note(shares: list[float]) -> str:
    """What training frames see, for the log: 'training frames see the measured opening, the held-out width'."""
    name = {0.0: "measured", 1.0: "held-out"}
    parts = [f"{name.get(s, f'measured + {s:g} x the error of the held-out')} {what}"
             for s, what in zip(shares, ("opening", "width"))]
    return "training frames see the " + ", the ".join(parts)


def teacher_shapes(shares: list[float], measured: Tensor, held_out: Tensor) -> Tensor:
    """The mouth shape [F,2] training frames see: the measured one [F,2] plus each output's share (teacher_shares)
    of the held-out prediction's [F,2] error."""
    w = torch.tensor(shares, dtype=measured.dtype).expand_as(measured)
    return torch.lerp(measured, held_out, w)  # exactly held_out at share 1 (lerp's formula above 0.5)


class MouthPredictor(nn.Module):
    """Audio features of a frame [F,16,D] -> its mouth shape [F,2] (opening, width); `normalise` turns a shape into
    the field's input (z-scores over the training frames). With `envelope` the regression also reads the window's
    amplitude envelope [F,16] (module docs; `set_energy` says how to undo the log energy's normalisation); with
    `calibrate` each output goes through a monotone curve (module docs). All state is buffers: `fit` sets them, a
    checkpoint restores them."""

    def __init__(self, aud_dim: int, envelope: bool = False, calibrate: bool = False, deemphasis: bool = False):
        super().__init__()
        self.envelope, self.calibrate = envelope, calibrate
        self.deemphasis = envelope and deemphasis
        k = 16 * aud_dim + (16 if envelope else 0)
        if envelope:  # mean, std of the log energy (dim 0); std 0: none (not an MFCC extractor)
            self.register_buffer("energy", torch.zeros(2))
        if self.deemphasis:  # common.audio_features.band_readout; zeros and ones: the envelope as it was
            self.register_buffer("band_weight", torch.zeros(N_CEPS, N_BANDS))
            self.register_buffer("band_bias", torch.zeros(N_BANDS))
            self.register_buffer("band_gain", torch.ones(N_BANDS))
        self.register_buffer("feat_mean", torch.zeros(k))
        self.register_buffer("feat_std", torch.ones(k))
        self.register_buffer("weight", torch.zeros(k, 2))
        self.register_buffer("bias", torch.zeros(2))
        self.register_buffer("shape_mean", torch.zeros(2))
        self.register_buffer("shape_std", torch.ones(2))
        if calibrate:  # knots [2,K] of each output's curve (identity until fitted)
            self.register_buffer("calib_x", torch.linspace(-1.0, 1.0, CALIB_KNOTS).repeat(2, 1))
            self.register_buffer("calib_y", self.calib_x.clone())

    def set_energy(self, mean: float, std: float) -> None:
        """The normalisation of the features' log energy (dim 0): raw = feature * std + mean (log_energy_norm); a
        predictor without the envelope ignores it."""
        if self.envelope:
            self.energy.copy_(torch.tensor([mean, std]))

    def set_bands(self, readout: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> None:
        """The read-out of the spectrum from the features (common.audio_features.band_readout) that lets the
        envelope undo the pre-emphasis; ignored without `deemphasis`, or for a read-out of another size."""
        if self.deemphasis and readout is not None and readout[0].shape == (N_CEPS, N_BANDS):
            for name, v in zip(("band_weight", "band_bias", "band_gain"), readout):
                getattr(self, name).copy_(torch.from_numpy(np.asarray(v)).float())

    def amplitude(self, feats: Tensor) -> Tensor:
        """feats [F,16,D] -> the speech's RMS amplitude per step [F,16]: exp(log energy / 2), times the square root
        of the pre-emphasis undone over the step's mel bands (with `deemphasis`)."""
        mean, std = self.energy.to(feats.dtype)
        amp = torch.exp(0.5 * (feats[:, :, 0] * std + mean))
        if not self.deemphasis or feats.shape[-1] < 1 + N_CEPS:
            return amp
        w, b, gain = (t.to(feats.dtype) for t in (self.band_weight, self.band_bias, self.band_gain))
        bands = torch.softmax(feats[:, :, 1:1 + N_CEPS] @ w + b, -1)  # [F,16,B] share of the energy per mel band
        return amp * (bands @ gain).sqrt()

    @property
    def reads_envelope(self) -> bool:
        """Whether the envelope inputs carry anything: the model key is on and the extractor gave a log energy."""
        return self.envelope and bool(self.energy[1] > 0)

    def inputs(self, feats: Tensor) -> Tensor:
        """feats [F,16,D] -> the regression's inputs [F,16*D (+16)]: the window, then its amplitude envelope."""
        x = feats.reshape(len(feats), -1)
        if not self.envelope:
            return x
        if not self.reads_envelope:
            return torch.cat([x, torch.zeros_like(feats[:, :, 0])], 1)
        return torch.cat([x, self.amplitude(feats)], 1)

    def fit(self, feats: Tensor, shape: Tensor) -> dict:
        """feats [F,16,D] of the training frames, their measured shape [F,2] -> {"lambda", "cv_error", "cv_r"
        (Pearson r of the held-out blocks' predicted opening and width with the measured ones), "held_out" (those
        predictions [F,2])}; the buffers are set and the result kept as `fit_info`."""
        x = self.inputs(feats.double().cpu()).numpy()
        y = shape.double().cpu().numpy()
        mean, std = x.mean(0), x.std(0).clip(1e-6)
        xs = (x - mean) / std
        lam, err = choose_lambda(xs, y)
        oof = held_out_predictions(xs, y, lam)
        cv_r = [float(np.corrcoef(oof[:, j], y[:, j])[0, 1]) if y[:, j].std() > 0 else float("nan") for j in (0, 1)]
        w = ridge(xs, y, lam)
        for name, v in (("feat_mean", mean), ("feat_std", std), ("weight", w[:-1]), ("bias", w[-1]),
                        ("shape_mean", y.mean(0)), ("shape_std", y.std(0).clip(1e-3))):
            getattr(self, name).copy_(torch.from_numpy(np.asarray(v)).float())
        self.fit_info = {"lambda": lam, "cv_error": err, "cv_r": cv_r, "held_out": oof, "calibrated": [False, False]}
        if self.calibrate:
            self.fit_calibration(oof, y)
        return self.fit_info

    def refit(self, feats: Tensor, shape: Tensor) -> dict:
        """`fit` on other shapes of the same frames (train.mouth_refine's corrected ones), keeping the normalisation
        (shape_mean, shape_std) the field was trained with, so that its input keeps its scale."""
        mean, std = self.shape_mean.clone(), self.shape_std.clone()
        info = self.fit(feats, shape)
        self.shape_mean.copy_(mean)
        self.shape_std.copy_(std)
        return info

    def fit_calibration(self, oof: np.ndarray, y: np.ndarray) -> None:
        """Each output's monotone curve from the held-out predictions oof [F,2] and the measured shape y [F,2],
        kept where its nested held-out error is lower than the raw prediction's (else the identity); the field's
        held-out teacher then sees the nested calibrated predictions."""
        for j in range(2):
            kx, ky = isotonic_knots(oof[:, j], y[:, j])
            nested = nested_calibration(oof[:, j], y[:, j])
            if ((nested - y[:, j]) ** 2).mean() < ((oof[:, j] - y[:, j]) ** 2).mean():
                self.fit_info["held_out"][:, j] = nested
                self.fit_info["calibrated"][j] = True
            else:
                ky = kx
            self.calib_x[j] = torch.from_numpy(kx).float()
            self.calib_y[j] = torch.from_numpy(ky).float()

    def describe(self) -> str:
        """One line for the training log: how well the audio predicts the mouth on frames the fit did not see."""
        info = getattr(self, "fit_info", None)
        if info is None:
            return "mouth input: the fit of the checkpoint"
        r = info["cv_r"]
        env = " with its amplitude envelope" if self.reads_envelope else ""
        undone = bool(env) and self.deemphasis and bool((self.band_gain != 1).any())
        pre = ", the envelope's pre-emphasis undone" if undone else ""
        cal = [name for name, on in zip(("opening", "width"), info["calibrated"]) if on]
        cal = f", the {' and '.join(cal)} through a monotone curve" if cal else ""
        line = (f"mouth input: audio{env} -> lip opening / width by ridge regression (penalty {info['lambda']:g})"
                f"{cal}{pre};"
                f" on held-out blocks of the training frames r = {r[0]:.2f} / {r[1]:.2f}")
        if hardly_predicted(r):
            line += (f" (below {WEAK_R}: the audio hardly predicts this clip's mouth, so renders of new speech will "
                     "barely move it; is the audio track the video's own speech?)")
        return line

    def forward(self, feats: Tensor) -> Tensor:  # [F,16,D] -> [F,2]
        x = (self.inputs(feats) - self.feat_mean) / self.feat_std
        raw = x @ self.weight + self.bias
        if not self.calibrate:
            return raw
        return torch.stack([interp(raw[:, j], self.calib_x[j], self.calib_y[j]) for j in range(2)], 1)

    def normalise(self, shape: Tensor) -> Tensor:  # [F,2] -> [F,2] z-scores of the training frames
        return (shape - self.shape_mean) / self.shape_std
