"""Metrics of a trained run on its validation frames (what evaluate.py calls), and the audio-mouth check on new speech.

Validation frames are rendered with their own audio windows and poses. Reported: PSNR (all pixels, and per frame),
SSIM (skimage), LPIPS (nerf/lpips.py, from weight files on disk, never downloaded), PSNR per semantic region,
semantic mIoU, LMD (mean pixel distance of the 20 mouth points of the 68-point layout, landmark back-end on renders
vs ground truth) and a sync score (Pearson r over time of the mouth opening on renders vs on ground truth).
Writes logs/<expname>/eval/: metrics.json, side_by_side.mp4 (ground truth | render | error map), psnr.png,
mouth_opening.png.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from common.fileio import atomic_path, save_json
from nerf import metrics
from nerf.features import load_features
from nerf.mp4 import FPS, Mp4Writer, to_uint8
from nerf.render_video import iter_frames, render_poses
from nerf.runs import LoadedRun

MOUTH_68 = slice(48, 68)  # mouth points of the 68-point layout


# ---------------------------------------------------------------- small pure pieces
def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson r over the entries where both are finite; None with < 3 of them or no variation."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or a[ok].std() < 1e-12 or b[ok].std() < 1e-12:
        return None
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def frame_loudness(wav: np.ndarray, n_frames: int, hop: int = 640) -> np.ndarray:
    """RMS level in dB of each 1/25 s of 16 kHz audio (frame i: samples [i*hop, (i+1)*hop)) -> [n_frames]."""
    x = np.zeros(n_frames * hop)
    x[: min(len(wav), len(x))] = np.asarray(wav, np.float64)[: len(x)]
    rms = np.sqrt((x.reshape(n_frames, hop) ** 2).mean(1))
    return 20 * np.log10(rms + 1e-4)


def error_map(pred: np.ndarray, gt: np.ndarray, gain: float = 4.0) -> np.ndarray:
    """|pred - gt| averaged over channels, times gain, as an inferno-coloured uint8 [H,W,3] image."""
    import matplotlib

    err = np.clip(np.abs(pred.astype(np.float64) - gt).mean(-1) * gain, 0, 1)
    return (matplotlib.colormaps["inferno"](err)[..., :3] * 255).round().astype(np.uint8)


def lpips_scores(preds: np.ndarray, gts: np.ndarray, net=None, why: str = "skipped: no LPIPS weights") -> list[float] | str:
    """LPIPS per frame for float [V,H,W,3] in [0,1] with `net` (nerf.lpips.load_lpips); `why` when net is None."""
    if net is None:
        return why
    to_t = lambda a: torch.from_numpy(np.asarray(a)).float().permute(0, 3, 1, 2) * 2 - 1  # noqa: E731
    try:
        with torch.no_grad():
            return [float(net(to_t(p[None]), to_t(g[None]))[0]) for p, g in zip(preds, gts)]
    except RuntimeError as e:  # images too small for AlexNet's pooling
        return f"skipped: LPIPS could not run on {preds.shape[1]}x{preds.shape[2]} images ({str(e).splitlines()[0][:80]})"


# ---------------------------------------------------------------- landmarks: LMD and mouth opening
def _landmarks_api():
    """(detect_landmarks, to_68, mouth_opening) from data_util.landmarks, or a 'skipped: ...' string."""
    try:
        from data_util import landmarks as L
    except ImportError as e:
        return f"skipped: data_util.landmarks not available ({e})"
    opening = getattr(L, "mouth_opening", None) or getattr(L, "MOUTH_OPENING", None)
    if not hasattr(L, "detect_landmarks") or not hasattr(L, "to_68") or opening is None:
        return "skipped: data_util.landmarks lacks detect_landmarks / to_68 / mouth_opening"
    return L.detect_landmarks, L.to_68, opening


def mouth_series(frames: list[np.ndarray]) -> dict:
    """Landmarks on uint8 RGB frames -> {"mouth68": [N,20,2] (NaN where no face), "opening": [N]} or {"skipped"}."""
    api = _landmarks_api()
    if isinstance(api, str):
        return {"skipped": api}
    detect, to_68, opening = api
    lms = np.asarray(detect(frames), np.float32)  # [N,478,3], NaN rows where no face
    return {"mouth68": np.asarray(to_68(lms), np.float64)[:, MOUTH_68],
            "opening": np.asarray(opening(lms), np.float64).reshape(-1)}


def lmd_and_sync(pred_u8: list[np.ndarray], gt_u8: list[np.ndarray]) -> dict:
    """LMD (pixels) and sync (Pearson r of mouth opening render vs ground truth) with per-frame series (the openings,
    and each frame's LMD as `lmd_frames`: None where either image has no face)."""
    p, g = mouth_series(pred_u8), mouth_series(gt_u8)
    if "skipped" in p:
        return {"lmd": p["skipped"], "sync": p["skipped"], "opening_render": [], "opening_gt": [], "lmd_frames": []}
    dist = np.linalg.norm(p["mouth68"] - g["mouth68"], axis=-1).mean(-1)  # [N] NaN where either has no face
    ok = np.isfinite(dist)
    found = {"render": int(np.isfinite(p["opening"]).sum()), "gt": int(np.isfinite(g["opening"]).sum())}
    lmd = float(dist[ok].mean()) if ok.any() else f"skipped: no face found (faces in render {found['render']}, " \
                                                  f"in ground truth {found['gt']} of {len(dist)} frames)"
    sync = pearson(p["opening"], g["opening"])
    if sync is None:
        sync = "skipped: fewer than 3 frames with a face in both, or no mouth movement"
    return {"lmd": lmd, "sync": sync, "faces_found": found,
            "opening_render": _list(p["opening"]), "opening_gt": _list(g["opening"]), "lmd_frames": _list(dist)}


def _zscore(a: np.ndarray) -> np.ndarray:
    """(a - mean) / std over the finite entries; `a` itself when none is finite."""
    finite = a[np.isfinite(a)]
    return (a - finite.mean()) / (finite.std() + 1e-9) if finite.size else a


def _list(a: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), 5) for v in np.asarray(a).reshape(-1)]


# ---------------------------------------------------------------- the validation split
def select_frames(n: int, max_frames: int) -> list[int]:
    """All n frames, or max_frames of them evenly spread (keeping order)."""
    if max_frames <= 0 or max_frames >= n:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, max_frames).round().astype(int).tolist()))


def measured_mouth(run: LoadedRun, idx: list[int]) -> Tensor:
    """[V,2] the mouth shape measured on frames idx's own landmarks (ValueError when there is none or the model
    takes no mouth input)."""
    if run.model.mouth is None:
        raise ValueError(f"{run.run_dir}: the model has no mouth-shape input (mouth = false): nothing to measure")
    if run.ds.mouth is None:
        raise ValueError(f"{run.ds.root}: {run.ds.mouth_source}: no measured mouth shape for the held-out frames")
    return run.ds.mouth[torch.tensor(idx)]


def evaluate_run(run: LoadedRun, out_dir: str | Path, max_frames: int = 0, video: bool = True,
                 lpips: tuple = (None, "skipped: no LPIPS weights"), mouth_shape: str = "predicted") -> dict:
    """Render run.ds (the val split) frames with their own audio and pose; write metrics.json, video and plots.
    lpips: (network or None, the line saying which weights or why not) from nerf.lpips.load_lpips.
    mouth_shape: "predicted" from the frames' audio (what new speech gets) | "measured" on their own landmarks
    (how well the model draws a mouth it is told, apart from the audio's prediction of it)."""
    ds, out_dir = run.ds, Path(out_dir)
    idx = select_frames(len(ds), max_frames)
    eye = None if ds.eye is None else ds.eye[torch.tensor(idx)]  # the frames' own eye openness
    mouth = measured_mouth(run, idx) if mouth_shape == "measured" else None
    codes = run.pipeline.frame_codes(ds.aud, ds.aud_ids[torch.tensor(idx)], eye=eye, mouth=mouth,
                                     frames=ds.frame_numbers[torch.tensor(idx)])
    poses = ds.c2w[idx]
    preds, labels = [], []
    for res in iter_frames(run, codes, poses, desc="evaluate"):
        preds.append(res["rgb"].numpy())
        if "labels" in res:
            labels.append(res["labels"])
    preds = np.stack(preds)  # [V,H,W,3] float in [0,1]
    gts = np.stack([ds.image(f).numpy() for f in idx]).astype(np.float64) / 255.0
    psnr_frames = [metrics.psnr(p, g) for p, g in zip(preds, gts)]
    ssim_frames = [metrics.ssim(p, g) for p, g in zip(preds, gts)] if min(ds.h, ds.w) >= 7 else []
    res: dict = {
        "expname": run.cfg.train.expname, "iteration": run.iteration, "datadir": str(ds.root), "split": ds.split,
        "frames": len(idx), "img_ids": [int(ds.img_ids[f]) for f in idx], "size": [ds.h, ds.w],
        "mouth_shape": mouth_shape if run.model.mouth is not None else "none (no mouth input)",
        "psnr": metrics.psnr(preds, gts),
        "psnr_frame_mean": float(np.mean(psnr_frames)),
        "ssim": float(np.mean(ssim_frames)) if ssim_frames else "skipped: image smaller than 7 px",
    }
    lp = lpips_scores(preds, gts, *lpips)
    res["lpips"] = float(np.mean(lp)) if isinstance(lp, list) else lp
    res["lpips_weights"] = lpips[1]
    if ds.class_names:
        par = torch.stack([ds.parsing_map(f) for f in idx]).long()  # [V,H,W]
        res["region_psnr"] = metrics.region_psnr(preds.reshape(-1, ds.w, 3), gts.reshape(-1, ds.w, 3),
                                                 par.reshape(-1, ds.w), ds.class_names)
        res["miou"] = metrics.class_miou(torch.stack(labels), par, ds.class_names) if labels else \
            "skipped: model has no semantic head"
    else:
        res["region_psnr"], res["miou"] = "skipped: no parsing/ in the dataset", "skipped: no parsing/ in the dataset"
    pred_u8, gt_u8 = [to_uint8(p) for p in preds], [to_uint8(g) for g in gts]
    mouth = lmd_and_sync(pred_u8, gt_u8)
    res.update(lmd=mouth["lmd"], sync=mouth["sync"], faces_found=mouth.get("faces_found"))
    res["per_frame"] = {"psnr": [round(v, 4) for v in psnr_frames], "ssim": [round(v, 5) for v in ssim_frames],
                        "mouth_opening_render": mouth["opening_render"], "mouth_opening_gt": mouth["opening_gt"],
                        "lmd": mouth["lmd_frames"]}
    out_dir.mkdir(parents=True, exist_ok=True)
    if video:
        write_side_by_side(out_dir / "side_by_side.mp4", pred_u8, gt_u8, preds, gts, ds, idx)
    plot_psnr(out_dir / "psnr.png", res["img_ids"], psnr_frames)
    plot_opening(out_dir / "mouth_opening.png", res["img_ids"], mouth["opening_render"], mouth["opening_gt"],
                 None if isinstance(mouth["sync"], str) else mouth["sync"])
    save_json(out_dir / "metrics.json", _clean(res))
    return res


def _clean(obj):
    """NaN/inf -> None so metrics.json is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def write_side_by_side(path: Path, pred_u8, gt_u8, preds, gts, ds, idx: list[int]) -> None:
    """ground truth | render | error map, with the clip's own audio when the frames are consecutive."""
    audio, start, dur = None, 0.0, None
    wav = Path(ds.root) / "aud.wav"
    aud_ids = ds.aud_ids[idx].numpy()
    if wav.is_file() and len(idx) > 1 and np.all(np.diff(aud_ids) == 1):
        audio, start, dur = wav, float(aud_ids[0]) / FPS, len(idx) / FPS
    with Mp4Writer(path, 3 * ds.w, ds.h, audio=audio, audio_start=start, audio_dur=dur) as w:
        for p8, g8, p, g in zip(pred_u8, gt_u8, preds, gts):
            w.write(np.concatenate([g8, p8, error_map(p, g)], axis=1))


# ---------------------------------------------------------------- plots
def _save_fig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_psnr(path: Path, img_ids: list[int], psnr_frames: list[float]) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.plot(img_ids, psnr_frames, "o-", ms=3)
    ax.set_xlabel("frame (img_id)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"per-frame PSNR, mean {np.mean(psnr_frames):.2f} dB")
    fig.tight_layout()
    _save_fig(fig, path)


def plot_opening(path: Path, img_ids: list[int], render: list, gt: list, r: float | None,
                 label_gt: str = "ground truth") -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    nan = lambda v: [np.nan if x is None else x for x in v]  # noqa: E731
    if render:
        ax.plot(img_ids[:len(render)], nan(render), label="render")
        ax.plot(img_ids[:len(gt)], nan(gt), label=label_gt)
        ax.legend()
    else:
        ax.text(0.5, 0.5, "landmarks not available", ha="center", transform=ax.transAxes)
    ax.set_xlabel("frame")
    ax.set_ylabel("mouth opening")
    ax.set_title("mouth opening over time" + (f" (Pearson r = {r:.3f})" if r is not None else ""))
    fig.tight_layout()
    _save_fig(fig, path)


# ---------------------------------------------------------------- new speech: mouth opening vs loudness
def mouth_vs_loudness(run: LoadedRun, aud: str | Path, out_dir: str | Path, pose: str = "static",
                      max_frames: int = 0) -> dict:
    """Render new speech (a wav), measure the mouth opening on the renders and correlate it with the audio's
    per-frame loudness (dB). Returns {"r", "frames", ...}; writes new_audio_opening.png in out_dir."""
    feats, wav = load_features(aud, run.ds.root, run.ds.aud_dim)
    if wav is None:
        raise ValueError(f"{aud}: the loudness check needs an audio file, not features")
    n = len(feats) if max_frames <= 0 else min(len(feats), max_frames)
    poses, clip = render_poses(run, pose, n)
    codes = run.pipeline.frame_codes(torch.from_numpy(feats), torch.arange(n), frames=clip)
    frames = [to_uint8(r["rgb"]) for r in iter_frames(run, codes, poses, desc="new audio")]
    loud = frame_loudness(wav, n)
    m = mouth_series(frames)
    if "skipped" in m:
        return {"r": m["skipped"], "frames": n, "aud": str(aud)}
    r = pearson(m["opening"], loud)
    out = {"r": r if r is not None else "skipped: fewer than 3 frames with a face, or no variation",
           "frames": n, "faces_found": int(np.isfinite(m["opening"]).sum()), "aud": str(aud), "pose": pose,
           "opening": _list(m["opening"]), "loudness_db": [round(float(v), 3) for v in loud]}
    plot_opening(Path(out_dir) / "new_audio_opening.png", list(range(n)), _list(_zscore(m["opening"])),
                 _list(_zscore(loud)), r, label_gt="loudness (dB)")
    return out
