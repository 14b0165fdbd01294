"""Render a trained run with new speech (what render.py calls): poses, audio codes, the frame loop, the mp4.

Pipeline: logs/<expname>/ (config.txt + ckpt/latest.pt) -> model; the new audio -> features with the subject's
aud_meta.json extractor (or a given .npy [N,16,D]) -> per-frame codes with the attention smoothing over 2*smooth+1
neighbouring frames -> one frame per 1/25 s (N = ceil(duration * 25)) over the background -> H.264 yuv420p mp4
with the input audio muxed as AAC, exactly the audio's length within one frame.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from data_util.ffmpeg import ffmpeg_exe, last_error
from data_util.fileio import atomic_path, save_image

FPS = 25


# ---------------------------------------------------------------- pose schedules
def pingpong_indices(n_poses: int, n: int) -> np.ndarray:
    """Indices 0..n_poses-1, n_poses-2..1, 0..., repeated to length n -> int [n]."""
    if n_poses < 1:
        raise ValueError("no poses to render with")
    if n_poses == 1:
        return np.zeros(n, np.int64)
    cycle = np.concatenate([np.arange(n_poses), np.arange(n_poses - 2, 0, -1)])  # period 2 * n_poses - 2
    return cycle[np.arange(n) % len(cycle)]


def load_pose_file(path: str | Path) -> np.ndarray:
    """A JSON file of poses -> float32 [F,4,4] camera-to-world matrices (head frame, OpenGL camera).

    Accepts a list of 4x4 matrices or a transforms.json-like {"frames": [{"transform_matrix": 4x4}, ...]}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pose file not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if isinstance(data, dict):
        if not isinstance(data.get("frames"), list):
            raise ValueError(f"{path}: expected a list of 4x4 matrices or {{\"frames\": [{{\"transform_matrix\"}}]}}")
        try:
            data = [f["transform_matrix"] for f in data["frames"]]
        except (KeyError, TypeError):
            raise ValueError(f"{path}: every frame needs a 'transform_matrix'") from None
    try:
        poses = np.asarray(data, np.float32)
    except (ValueError, TypeError):
        raise ValueError(f"{path}: poses must be 4x4 number matrices") from None
    if poses.ndim != 3 or poses.shape[1:] != (4, 4) or len(poses) == 0:
        raise ValueError(f"{path}: expected [F,4,4] poses, got shape {list(poses.shape)}")
    if not np.isfinite(poses).all():
        raise ValueError(f"{path}: poses contain NaN or inf")
    return poses


def pose_schedule(mode: str, train_c2w: np.ndarray, n: int, static_index: int = 0) -> np.ndarray:
    """The n camera poses [n,4,4] to render: `train` (ping-ponged), `static` (frame static_index), or a JSON file
    (ping-ponged too)."""
    train_c2w = np.asarray(train_c2w, np.float32)
    if mode == "train":
        return train_c2w[pingpong_indices(len(train_c2w), n)]
    if mode == "static":
        if not -len(train_c2w) <= static_index < len(train_c2w):
            raise ValueError(f"--pose_index {static_index}: the training split has {len(train_c2w)} poses")
        return np.repeat(train_c2w[static_index][None], n, axis=0)
    poses = load_pose_file(mode)
    return poses[pingpong_indices(len(poses), n)]


# ---------------------------------------------------------------- mp4 writing
class Mp4Writer:
    """H.264 yuv420p mp4 from RGB frames piped to ffmpeg's stdin, with an optional audio track muxed (AAC).

    Written to a temp name beside `path` and renamed on success; odd sizes are padded to even. The audio is not
    cut (`-shortest` is not used): the caller renders ceil(duration * fps) frames so both streams match within a
    frame. audio_start/audio_dur select a segment of the audio file (seconds).
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: int = FPS, audio: str | Path | None = None,
                 audio_start: float = 0.0, audio_dur: float | None = None, crf: int = 18):
        self.path, self.size = Path(path), (int(width), int(height))
        self._atomic = atomic_path(self.path)
        self.tmp = self._atomic.__enter__()
        self._err = tempfile.TemporaryFile()
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", str(fps), "-i", "-"]
        if audio is not None:
            if audio_start > 0:
                cmd += ["-ss", f"{audio_start:.4f}"]
            if audio_dur is not None:
                cmd += ["-t", f"{audio_dur:.4f}"]
            cmd += ["-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-b:a", "128k"]
        cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(crf),
                "-preset", "fast", "-movflags", "+faststart", str(self.tmp)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._err)
        self.n_frames = 0

    def _error(self) -> str:
        self._err.seek(0)
        return last_error(self._err.read())

    def write(self, frame: np.ndarray) -> None:
        """frame: uint8 [H,W,3] RGB."""
        if frame.shape != (self.size[1], self.size[0], 3) or frame.dtype != np.uint8:
            raise ValueError(f"{self.path}: frame {frame.shape} {frame.dtype}, expected uint8 "
                             f"[{self.size[1]},{self.size[0]},3]")
        try:
            self.proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            self.proc.wait()
            raise RuntimeError(f"{self.path}: ffmpeg stopped: {self._error()}") from None
        self.n_frames += 1

    def close(self) -> None:
        """Finish the file and move it into place; RuntimeError (and no file) if ffmpeg failed."""
        ok = False
        try:
            self.proc.stdin.close()
            rc = self.proc.wait()
            if rc != 0:
                raise RuntimeError(f"{self.path}: ffmpeg failed (exit {rc}): {self._error()}")
            ok = True
        finally:
            self._err.close()
            if ok:
                self._atomic.__exit__(None, None, None)
            else:
                self._atomic.__exit__(RuntimeError, None, None)

    def abort(self) -> None:
        """Stop ffmpeg and remove the temp file; the destination is left as it was."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._err.close()
        self._atomic.__exit__(RuntimeError, None, None)

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# ---------------------------------------------------------------- audio -> features -> codes
def load_features(aud: str | Path, datadir: str | Path, aud_dim: int) -> tuple[np.ndarray, np.ndarray | None]:
    """New speech -> (features float32 [N,16,D], wav float32 [T] 16 kHz or None for a .npy).

    A .wav (or any audio/video file) goes through data_util.audio.load_audio and the extractor that the subject's
    aud_meta.json records; a .npy must already be [N,16,D] with the model's D."""
    from data_util.audio_features import validate_given

    aud = Path(aud)
    if aud.suffix.lower() == ".npy":
        feats = validate_given(aud)
        wav = None
    else:
        from data_util.audio import load_audio
        from data_util.audio_features import extract_features

        wav = load_audio(aud)
        meta_path = Path(datadir) / "aud_meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: missing, so new audio cannot be converted like the training "
                                    "audio; pass its features as a .npy [N,16,D]")
        meta = json.loads(meta_path.read_text())
        if "extractor" not in meta:
            raise ValueError(f"{meta_path}: no 'extractor' recorded; pass the new audio's features as a .npy [N,16,D]")
        feats = extract_features(wav, meta)
    if feats.shape[2] != aud_dim:
        raise ValueError(f"{aud}: audio features have D = {feats.shape[2]} but the model was trained on D = {aud_dim} "
                         "(use the extractor of the subject's aud_meta.json)")
    return feats.astype(np.float32), wav


def audio_windows(feats: Tensor, smooth: int) -> Tensor:
    """feats [N,16,D] -> [N, 2*smooth+1, 16, D]: each frame's neighbours, clamped at the ends."""
    idx = (torch.arange(len(feats))[:, None] + torch.arange(-smooth, smooth + 1)).clamp(0, len(feats) - 1)
    return feats[idx]


@torch.no_grad()
def audio_codes(model, feats: Tensor, smooth: int, use_attention: bool, batch: int = 256) -> Tensor:
    """Per-frame audio codes [N, A] (attention smoothing over neighbours when use_attention)."""
    dev = next(model.parameters()).device
    if not use_attention:  # codes of each frame's own window
        return torch.cat([model.audio_codes(feats[i:i + batch, None].to(dev), False)
                          for i in range(0, len(feats), batch)])
    win = audio_windows(feats, smooth)
    return torch.cat([model.audio_codes(win[i:i + batch].to(dev), True) for i in range(0, len(win), batch)])


# ---------------------------------------------------------------- a trained run
@dataclass
class LoadedRun:
    model: torch.nn.Module
    cfg: object  # nerf.config.Config of the run (config.txt + command-line overrides)
    ds: object  # nerf.dataset.TalkingDataset, train split, frames not preloaded
    device: torch.device
    iteration: int
    use_attention: bool
    class_names: list[str]
    run_dir: Path


def _strip_config(argv: list[str]) -> list[str]:
    """argv without `--config FILE` / `--config=FILE`."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--config":
            skip = True
        elif not a.startswith("--config="):
            out.append(a)
    return out


def _same_path(a: str, b: str) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def load_run(argv: list[str], split: str = "train") -> LoadedRun:
    """The trained run named by the config flags in argv (--config, --expname, --basedir, --device, any key).

    The run's resolved config.txt is the base; flags given on the command line override it (e.g. --img_size,
    --chunk); the --config file only names the subject and run and must be for the same dataset."""
    from nerf.checkpoint import check_fingerprint, load_checkpoint
    from nerf.config import parse
    from nerf.dataset import TalkingDataset
    from nerf.model import SSPNeRF
    from nerf.trainer import model_fingerprint, pick_device

    user = parse(argv)
    run_dir = Path(user.train.basedir) / user.train.expname
    ckpt, run_cfg_path = run_dir / "ckpt" / "latest.pt", run_dir / "config.txt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: no checkpoint (train first: python train.py --config ... "
                                f"--expname {user.train.expname})")
    if not run_cfg_path.is_file():
        raise FileNotFoundError(f"{run_cfg_path}: the run's resolved config is missing")
    trained = parse(["--config", str(run_cfg_path)])
    if user.data.datadir and not _same_path(user.data.datadir, trained.data.datadir):
        where = user.config_file or "the command line"
        raise ValueError(f"{where}: datadir {user.data.datadir} is another subject than run {run_dir} "
                         f"(trained on {trained.data.datadir}); pass the matching --config or --expname")
    cfg = parse(["--config", str(run_cfg_path), *_strip_config(argv)])
    cfg.sections["data"] = dataclasses.replace(cfg.data, preload=False, datadir=trained.data.datadir)
    device = pick_device(cfg.train.device)
    ds = TalkingDataset(cfg.data, split)
    names = ds.class_names or []
    state = load_checkpoint(ckpt, map_location=device)
    try:  # the same shapes as in training (trainer.model_fingerprint), else a one-line error
        check_fingerprint(ckpt, state["fingerprint"], model_fingerprint(cfg, ds.aud_dim, len(names)))
    except ValueError as e:
        raise ValueError(str(e).replace("made with a different config", "made with a different config or subject"))
    torso = [names.index(n) for n in ("neck", "torso") if n in names]
    model = SSPNeRF(cfg.model, cfg.render, ds.aud_dim, len(names), state["model"]["aabb"], torso)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    it = int(state["iteration"])
    return LoadedRun(model, cfg, ds, device, it, it >= cfg.train.att_start, names if model.n_classes else [], run_dir)


# ---------------------------------------------------------------- frames
def palette(n: int) -> np.ndarray:
    """n distinct colours uint8 [n,3] for label images (background black)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    pal = np.array([cmap(i % 20)[:3] for i in range(max(n, 1))]) * 255
    pal[0] = 0
    return pal.round().astype(np.uint8)


@torch.no_grad()
def render_frame(run: LoadedRun, c2w: Tensor, code: Tensor) -> dict[str, Tensor]:
    """One frame: rgb float [H,W,3] in [0,1] (over the background) and, with the semantic head, labels [H,W]."""
    from nerf.dataset import get_rays
    from nerf.model import pose6

    ds, dev = run.ds, run.device
    c2w = c2w.to(dev).float()
    rays_o, rays_d = get_rays(ds.h, ds.w, ds.focal, ds.cx, ds.cy, c2w)
    m = rays_o.shape[0]
    out = run.model.render_image(rays_o, rays_d, torch.full((m,), ds.near, device=dev),
                                 torch.full((m,), ds.far, device=dev), code.to(dev), pose6(c2w),
                                 ds.bg.reshape(-1, 3).to(dev), int(run.cfg.render.chunk))
    res = {"rgb": out["rgb"].reshape(ds.h, ds.w, 3).clamp(0, 1).cpu()}
    if "sem" in out:
        res["labels"] = out["sem"].argmax(-1).reshape(ds.h, ds.w).cpu()
    return res


def iter_frames(run: LoadedRun, codes: Tensor, poses: Tensor, desc: str = "render"):
    """Render frame i with codes[i] [A] and poses[i] [4,4]; yields render_frame's dicts, with a progress bar."""
    from tqdm import tqdm

    for i in tqdm(range(len(codes)), desc=desc, unit="frame", dynamic_ncols=True):
        yield render_frame(run, poses[i], codes[i])


def to_uint8(img: Tensor | np.ndarray) -> np.ndarray:
    a = img.numpy() if isinstance(img, Tensor) else np.asarray(img)
    return (np.clip(a, 0, 1) * 255).round().astype(np.uint8)


def render_video(run: LoadedRun, aud: str | Path, out: str | Path, pose: str = "train", pose_index: int = 0,
                 save_frames: str | Path | None = None, semantic_video: bool = False) -> dict:
    """Render new speech to `out` (.mp4). Returns {"frames", "seconds", "fps", "out", "semantic_out"}."""
    import time

    out = Path(out)
    feats, wav = load_features(aud, run.ds.root, run.ds.aud_dim)
    if run.cfg.data.zero_audio:  # a control model trained without audio sees none here either
        feats = np.zeros_like(feats)
    n = len(feats)  # = ceil(T / 640) = ceil(duration * 25) for a wav
    poses = torch.from_numpy(pose_schedule(pose, run.ds.c2w.numpy(), n, pose_index))
    smooth = int(run.cfg.model.smooth)
    codes = audio_codes(run.model, torch.from_numpy(feats), smooth, run.use_attention)  # [N, A]
    audio_file = None if wav is None else Path(aud)
    sem_out = out.with_name(out.stem + "_semantic.mp4") if semantic_video else None
    if semantic_video and not run.class_names:
        raise ValueError(f"{run.run_dir}: --semantic_video needs a model with the semantic head")
    writers = [Mp4Writer(out, run.ds.w, run.ds.h, audio=audio_file)]
    if sem_out is not None:
        writers.append(Mp4Writer(sem_out, run.ds.w, run.ds.h, audio=audio_file))
    pal = palette(len(run.class_names))
    if save_frames is not None:
        Path(save_frames).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        for i, res in enumerate(iter_frames(run, codes, poses)):
            frame = to_uint8(res["rgb"])
            writers[0].write(frame)
            if sem_out is not None:
                writers[1].write(pal[res["labels"].numpy()])
            if save_frames is not None:
                save_image(Path(save_frames) / f"{i:06d}.png", frame)
    except BaseException:
        for w in writers:
            w.abort()
        raise
    seconds = time.perf_counter() - t0
    for w in writers:
        w.close()
    return {"frames": n, "seconds": seconds, "fps": n / max(seconds, 1e-9), "out": str(out),
            "semantic_out": None if sem_out is None else str(sem_out),
            "audio_seconds": None if wav is None else len(wav) / 16000}


def read_back(path: str | Path) -> dict:
    """Decode an mp4 again: {"frames": video frames, "width", "height", "audio_s": decoded audio seconds or None}."""
    from data_util.ffmpeg import probe, read_ffmpeg

    info = probe(path)
    raw = read_ffmpeg(["-i", str(path), "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "gray", "-"], str(path))
    frames = len(raw) // (info["width"] * info["height"])
    audio_s = None
    if info["has_audio"]:
        pcm = read_ffmpeg(["-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", "16000", "-f", "s16le", "-"],
                          str(path))
        audio_s = len(pcm) / 2 / 16000
    return {"frames": frames, "width": info["width"], "height": info["height"], "audio_s": audio_s}
