"""Reads `dataset/<name>/` (ours or AD-NeRF's, docs/DESIGN.md section 4) and generates rays.

Images are kept as uint8 (preloaded, or read per frame with a small cache for big sets); intrinsics are scaled
by the downsample factor. Ray directions are not normalised (their camera-space z is -1, AD-NeRF's
convention), so `near`/`far` are depths along the camera axis.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from common.fileio import read_json
from nerf.audio import audio_windows
from nerf.blinks import eye_region, read_eye_openness
from nerf.mouth_shape import read_mouth_shape


@dataclass
class DataConfig:
    """The `data` section."""
    datadir: str = ""  # dataset/<name>/
    downsample: float = 1.0  # images are resized to round(size / downsample)
    img_size: int = 0  # >0: resize so the longer side is at most this many pixels (never enlarged; overrides downsample)
    train_supersample: int = 1  # training images this many times larger than img_size (never above the source): up to k^2 rays per rendered pixel; renders stay at img_size
    near: float = 0.0  # ray start depth; 0: mean camera distance - 0.2 (AD-NeRF)
    far: float = 0.0  # ray end depth; 0: mean camera distance + 0.4 (AD-NeRF)
    bg: str = field(default="image", metadata={"choices": ("image", "white", "black")})  # background behind the field: image (bc.jpg) | white | black
    preload: bool = True  # keep all images in memory (uint8); false: read frames on demand
    use_parsing: bool = True  # read parsing/ when present (semantic head and sampler need it)
    zero_audio: bool = False  # control experiment: every audio feature is 0, so the model cannot use the audio

    def for_training(self) -> "DataConfig":
        """The config of the training images: `train_supersample` times the size of img_size / downsample (never
        enlarged past the source; evaluation and renders keep img_size)."""
        k = self.train_supersample
        if k < 1:
            raise ValueError(f"train_supersample = {k}: must be >= 1")
        if k == 1:
            return self
        if self.img_size > 0:
            return dataclasses.replace(self, img_size=self.img_size * k)
        return dataclasses.replace(self, downsample=min(self.downsample, max(self.downsample / k, 1.0)))


def get_rays(h: int, w: int, focal: float, cx: float, cy: float, c2w: Tensor,
             pix_y: Tensor | None = None, pix_x: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Rays through pixel centres (docs/DESIGN.md section 5). c2w [4,4] or [M,4,4] (one per pixel).

    pix_y, pix_x: [M] rows/columns; None: every pixel, row-major (M = h*w). Returns rays_o [M,3], rays_d [M,3].
    """
    if pix_y is None or pix_x is None:
        pix_y, pix_x = torch.meshgrid(torch.arange(h, device=c2w.device), torch.arange(w, device=c2w.device),
                                      indexing="ij")
        pix_y, pix_x = pix_y.reshape(-1), pix_x.reshape(-1)
    x = (pix_x.to(c2w.dtype) + 0.5 - cx) / focal
    y = -(pix_y.to(c2w.dtype) + 0.5 - cy) / focal
    d_cam = torch.stack([x, y, -torch.ones_like(x)], -1)  # [M,3]
    rot = c2w[..., :3, :3]
    rays_d = (rot @ d_cam[..., None])[..., 0] if c2w.dim() == 3 else d_cam @ rot.T
    rays_o = c2w[..., :3, 3].expand_as(rays_d)
    return rays_o, rays_d


def _read_image(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    if not path.is_file():
        raise FileNotFoundError(f"{path}: image missing")
    try:
        return iio.imread(path)
    except Exception as e:  # imageio raises many types
        raise ValueError(f"{path}: cannot read image ({type(e).__name__})") from None


def _resize(img: np.ndarray, h: int, w: int, nearest: bool) -> np.ndarray:
    import cv2

    if img.shape[:2] == (h, w):
        return img
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (is this a processed dataset folder?)")
    return read_json(path)


class TalkingDataset:
    """One split ("train" or "val") of a processed clip. Frame index f in [0, n_frames) of the split."""

    def __init__(self, cfg: DataConfig, split: str = "train", cache_frames: int = 64):
        self.cfg, self.split = cfg, split
        root = Path(cfg.datadir)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: dataset folder not found")
        self.root = root
        meta = _load_json(root / f"transforms_{split}.json")
        tf = root / f"transforms_{split}.json"
        for key in ("focal_len", "frames"):
            if key not in meta:
                raise ValueError(f"{tf}: no '{key}' field")
        frames = meta["frames"]
        if not frames:
            raise ValueError(f"{tf}: 'frames' is empty")
        for k, fr in enumerate(frames):
            if "img_id" not in fr or "transform_matrix" not in fr:
                raise ValueError(f"{tf}: frame {k} lacks img_id or transform_matrix")
        self.img_ids = np.array([int(f["img_id"]) for f in frames])
        self.frame_numbers = torch.from_numpy(self.img_ids).long()  # [F] in the clip: the per-frame code's input
        self.c2w = torch.tensor(np.array([f["transform_matrix"] for f in frames], np.float32))  # [F,4,4]
        if self.c2w.shape[1:] != (4, 4):
            raise ValueError(f"{tf}: transform_matrix must be 4x4")

        aud_path = root / "aud.npy"
        if not aud_path.is_file():
            raise FileNotFoundError(f"{aud_path}: audio features missing")
        aud = np.load(aud_path).astype(np.float32)
        if aud.ndim != 3 or aud.shape[1] != 16:
            raise ValueError(f"{aud_path}: expected shape [N, 16, D], got {list(aud.shape)}")
        self.aud = torch.from_numpy(aud)  # [N_aud,16,D]
        if cfg.zero_audio:
            self.aud.zero_()
        ids = [int(f.get("aud_id", f["img_id"])) for f in frames]
        self.aud_ids = torch.tensor(np.minimum(ids, len(aud) - 1))  # AD-NeRF clamps too
        eye, self.eye_source = read_eye_openness(root, frames, self.img_ids)
        self.eye = None if eye is None else torch.from_numpy(eye)  # [F] eye openness (nerf/blinks.py) or None
        self.eye_region = eye_region(root)  # [2,4] eye centres and radii in the head frame, or None
        mouth, self.mouth_source = read_mouth_shape(root, self.img_ids)
        self.mouth = None if mouth is None else torch.from_numpy(mouth)  # [F,2] opening, width (mouth_shape.py)

        first = _read_image(root / "ori_imgs" / f"{self.img_ids[0]}.jpg")
        h0 = int(meta.get("h", first.shape[0]))
        w0 = int(meta.get("w", first.shape[1]))
        factor = max(max(h0, w0) / cfg.img_size, 1.0) if cfg.img_size > 0 else cfg.downsample
        if factor <= 0:
            raise ValueError(f"downsample = {cfg.downsample}: must be > 0")
        self.h = max(1, round(h0 / factor))
        self.w = max(1, round(w0 / factor))
        sx, sy = self.w / w0, self.h / h0
        self.focal = float(meta["focal_len"]) * sx
        self.cx = float(meta.get("cx", w0 / 2)) * sx
        self.cy = float(meta.get("cy", h0 / 2)) * sy
        rects = [f.get("face_rect") for f in frames]
        if all(r is not None for r in rects):  # [x, y, w, h] pixels -> scaled
            self.face_rect = np.round(np.array(rects, np.float64) * [sx, sy, sx, sy]).astype(np.int64)
        else:
            self.face_rect = None

        self.class_names = self._read_classes() if cfg.use_parsing else None
        self._load = functools.lru_cache(maxsize=cache_frames)(self._load_frame)
        self.images = self.parsing = None
        if cfg.preload:
            from tqdm import tqdm

            loaded = [self._load_frame(int(i)) for i in tqdm(self.img_ids, desc=f"load {split}", leave=False,
                                                             disable=len(self.img_ids) < 200)]
            self.images = torch.from_numpy(np.stack([im for im, _ in loaded]))  # uint8 [F,H,W,3]
            if self.class_names is not None:
                self.parsing = torch.from_numpy(np.stack([p for _, p in loaded]))  # uint8 [F,H,W]
        self.bg = self._read_bg()  # float [H,W,3]
        self.near, self.far = self._bounds()

    # ---- files -------------------------------------------------------------------------------------------
    def _read_classes(self) -> list[str] | None:
        path = self.root / "parsing" / "classes.json"
        if not (self.root / "parsing").is_dir():
            return None
        names = _load_json(path).get("classes")
        if not isinstance(names, list) or not names:
            raise ValueError(f"{path}: expected {{\"classes\": [names...]}}")
        return [str(n) for n in names]

    def _load_frame(self, img_id: int) -> tuple[np.ndarray, np.ndarray | None]:
        img = _read_image(self.root / "ori_imgs" / f"{img_id}.jpg")
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, -1)
        img = _resize(np.ascontiguousarray(img[..., :3]), self.h, self.w, nearest=False)
        par = None
        if self.class_names is not None:
            path = self.root / "parsing" / f"{img_id}.png"
            par = _read_image(path)
            if par.ndim != 2:
                raise ValueError(f"{path}: parsing map must be single-channel class indices")
            if par.max() >= len(self.class_names):
                raise ValueError(f"{path}: class {par.max()} not in parsing/classes.json")
            par = _resize(par, self.h, self.w, nearest=True)
        return img, par

    def _read_bg(self) -> Tensor:
        if self.cfg.bg in ("white", "black"):
            return torch.full((self.h, self.w, 3), 1.0 if self.cfg.bg == "white" else 0.0)
        if self.cfg.bg != "image":
            raise ValueError(f"bg = {self.cfg.bg!r}: expected image, white or black")
        img = _read_image(self.root / "bc.jpg")
        img = _resize(np.ascontiguousarray(img[..., :3]), self.h, self.w, nearest=False)
        return torch.from_numpy(img).float() / 255.0

    def _bounds(self) -> tuple[float, float]:
        """near/far from the config, else AD-NeRF's mean camera distance - 0.2 / + 0.4."""
        mean_z = float(self.c2w[:, :3, 3].norm(dim=-1).mean())
        near = self.cfg.near if self.cfg.near > 0 else max(mean_z - 0.2, 0.05 * mean_z)
        far = self.cfg.far if self.cfg.far > 0 else mean_z + 0.4
        if far <= near:
            raise ValueError(f"far ({far}) must be larger than near ({near})")
        return near, far

    # ---- per frame ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.img_ids)

    @property
    def aud_dim(self) -> int:
        return int(self.aud.shape[-1])

    @property
    def n_classes(self) -> int:
        return len(self.class_names) if self.class_names else 0

    def image(self, f: int) -> Tensor:
        """uint8 [H,W,3] of split frame f."""
        return self.images[f] if self.images is not None else torch.from_numpy(self._load(int(self.img_ids[f]))[0])

    def parsing_map(self, f: int) -> Tensor | None:
        """uint8 [H,W] class indices of split frame f (None without parsing)."""
        if self.class_names is None:
            return None
        return self.parsing[f] if self.parsing is not None else torch.from_numpy(self._load(int(self.img_ids[f]))[1])

    def pixels(self, frame: Tensor, y: Tensor, x: Tensor) -> Tensor:
        """Ground-truth colours float [n,3] in [0,1] of pixels (frame [n], y [n], x [n])."""
        if self.images is not None:
            return self.images[frame, y, x].float() / 255.0
        out = torch.empty(len(frame), 3)
        for f in frame.unique().tolist():
            m = frame == f
            out[m] = self.image(f)[y[m], x[m]].float() / 255.0
        return out

    def labels(self, frame: Tensor, y: Tensor, x: Tensor) -> Tensor | None:
        """Class indices long [n] of pixels, or None without parsing."""
        if self.class_names is None:
            return None
        if self.parsing is not None:
            return self.parsing[frame, y, x].long()
        out = torch.empty(len(frame), dtype=torch.long)
        for f in frame.unique().tolist():
            m = frame == f
            out[m] = self.parsing_map(f)[y[m], x[m]].long()
        return out

    def rays(self, frame: Tensor, y: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """rays_o, rays_d [n,3] for pixels of (possibly different) frames."""
        return get_rays(self.h, self.w, self.focal, self.cx, self.cy, self.c2w[frame], y, x)

    def frame_rays(self, f: int) -> tuple[Tensor, Tensor]:
        """All rays of frame f, row-major: [H*W,3] each."""
        return get_rays(self.h, self.w, self.focal, self.cx, self.cy, self.c2w[f])

    def audio_windows(self, frame: Tensor, smooth: int) -> Tensor:
        """Audio windows [F, 2*smooth+1, 16, D] around each frame's aud_id (clamped at the clip's ends)."""
        return audio_windows(self.aud, self.aud_ids[frame], smooth)

    def aabb(self) -> Tensor:
        """[6] (min xyz, max xyz) of the volume the frusta cover between near and far."""
        ys = torch.tensor([0, 0, self.h - 1, self.h - 1])
        xs = torch.tensor([0, self.w - 1, 0, self.w - 1])
        pts = []
        for f in range(len(self)):
            o, d = get_rays(self.h, self.w, self.focal, self.cx, self.cy, self.c2w[f], ys, xs)
            pts += [o + self.near * d, o + self.far * d]
        pts = torch.cat(pts)
        return torch.cat([pts.min(0).values, pts.max(0).values])
