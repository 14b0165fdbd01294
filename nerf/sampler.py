"""Which training pixels each batch uses: AD-NeRF's uniform sampling and SSP-NeRF's semantic-aware sampling.

Both return `(frame [n], y [n], x [n], cls [n])` as long tensors (frame indexes the training split; cls is the
pixel's parsing class, -1 without parsing). Random draws use a numpy Generator whose state is in state_dict,
so a resumed run draws the same rays.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from common.constants import MOUTH_CLASSES, UNTRAINED_CLASSES, class_ids

FLAT_INDEX_LIMIT = 1 << 24  # up to this many training pixels, keep per-class flat pixel index arrays
MOUTH_MARGIN = 0.5  # sampler_mouth_share: the mouth box grows by this share of its width on every side


def _key(name: str) -> dict:
    """Config key `sampler_<name>`, with the bare name kept as an alias (nerf/config.py)."""
    return {"key": f"sampler_{name}", "aliases": (name,)}


@dataclass
class SamplerConfig:
    """The `sampler` section; keys `sampler_<field>` (the old bare names are aliases)."""
    sampling: str = field(default="semantic", metadata={"choices": ("semantic", "uniform")})  # semantic (SSP-NeRF) | uniform (AD-NeRF: face_share of the rays in face_rect)
    alpha: float = field(default=0.5, metadata=_key("alpha"))  # semantic: p_c ~ area_c^alpha * (L_c / mean L)^beta; alpha=1, beta=0 is area-uniform
    beta: float = field(default=1.0, metadata=_key("beta"))  # semantic: exponent of the relative class loss
    p_min: float = field(default=0.01, metadata=_key("p_min"))  # semantic: floor on each present class's share of rays
    update_every: int = field(default=10, metadata=_key("update_every"))  # semantic: recompute the shares every k iterations
    ema: float = field(default=0.9, metadata=_key("ema"))  # semantic: running mean of each class's per-ray loss, L <- ema*L + (1-ema)*batch mean
    eye_share: float = field(default=0.05, metadata=_key("eye_share"))  # semantic: share of the rays drawn around the eyes (squares of the eye radius about the projected eye centres), from frames weighted by how far their eye openness is from open (0.05 + |1 - eye|): the few blink frames get most of them; needs the eye input and the eye region, else 0
    face_share: float = field(default=0.95, metadata=_key("face_share"))  # uniform: share of rays inside the frame's face_rect (AD-NeRF); 0: whole image
    mouth_share: float = field(default=0.0, metadata=_key("mouth_share"))  # semantic: share of the rays drawn in a box about each training frame's mouth (its lips and inner-mouth pixels, grown by half the box's width on every side: the lip corners, chin and cheeks that move with the jaw)
    face_mix: float = field(default=0.0, metadata=_key("face_mix"))  # semantic: share of the rays drawn as AD-NeRF draws its face rays (a random frame, uniform inside its face_rect); the class shares split the rest


def class_shares(area: np.ndarray, loss: np.ndarray, alpha: float, beta: float, p_min: float) -> np.ndarray:
    """p_c ~ area_c^alpha (L_c / mean_L)^beta over classes with area > 0, floored at p_min, summing to 1.

    area [C] (pixel shares), loss [C] (running per-ray loss). Absent classes get 0.
    """
    present = area > 0
    p = np.zeros_like(area, dtype=np.float64)
    if not present.any():
        return p
    mean_l = loss[present].mean()
    w = np.zeros_like(p)
    w[present] = area[present] ** alpha * (np.maximum(loss[present], 1e-12) / max(mean_l, 1e-12)) ** beta
    p_min = min(p_min, 1.0 / present.sum())
    fixed = np.zeros_like(present)
    while True:
        rest = present & ~fixed
        p[fixed] = p_min
        p[rest] = w[rest] / w[rest].sum() * (1.0 - p_min * fixed.sum()) if rest.any() else 0.0
        low = rest & (p < p_min)
        if not low.any():
            return p
        fixed |= low


def _split_counts(n: int, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integer counts [C] summing to n with E[count] ~ n*p: floor, then the remainder by fractional parts."""
    exact = n * p
    counts = np.floor(exact).astype(np.int64)
    rem = n - counts.sum()
    if rem > 0:
        frac = exact - counts
        extra = rng.choice(len(p), size=rem, replace=False, p=frac / frac.sum())
        counts[extra] += 1
    return counts


def check_placed_shares(cfg: SamplerConfig) -> None:
    """The semantic sampler's rays drawn by place (eye_share, mouth_share, face_mix) must each be in [0, 1) and
    leave some rays to the class shares; else one line naming the keys."""
    shares = {"sampler_eye_share": cfg.eye_share, "sampler_mouth_share": cfg.mouth_share,
              "sampler_face_mix": cfg.face_mix}
    for key, v in shares.items():
        if not 0.0 <= v < 1.0:
            raise ValueError(f"{key} = {v}: must be in [0, 1)")
    if sum(shares.values()) >= 1.0:
        raise ValueError(f"{' + '.join(shares)} = {sum(shares.values()):g}: must stay below 1 (the rest of the "
                         "rays go to the class shares)")


def without_untrained(rays: tuple[Tensor, Tensor, Tensor, Tensor], names: list[str] | None
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(frame, y, x, cls) [n] each, less the rays on an untrained class (a hand, a filled edge: UNTRAINED_CLASSES)."""
    ids = class_ids(names or [], UNTRAINED_CLASSES)
    if not ids:
        return rays
    keep = ~torch.isin(rays[3], torch.tensor(ids, dtype=rays[3].dtype))
    return tuple(a[keep] for a in rays)


def in_face_rect(ds, frame: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(x [k], y [k]): a pixel uniform inside each given frame's face_rect (x, y, w, h), clipped to the image."""
    r = ds.face_rect[frame]  # [k,4]
    x = np.clip(r[:, 0] + (rng.random(len(frame)) * r[:, 2]).astype(np.int64), 0, ds.w - 1)
    y = np.clip(r[:, 1] + (rng.random(len(frame)) * r[:, 3]).astype(np.int64), 0, ds.h - 1)
    return x, y


class UniformSampler:
    """AD-NeRF: each ray from a random training frame; `face_share` of them inside its face_rect; those that fall on
    an untrained class (a hand, a filled edge) are dropped."""

    def __init__(self, dataset, cfg: SamplerConfig, seed: int = 0):
        self.ds, self.cfg = dataset, cfg
        self.rng = np.random.default_rng(seed)
        n_cls = dataset.n_classes
        self.drawn = np.zeros(max(n_cls, 1), np.float64)  # rays drawn per class, for shares()

    def sample(self, n: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        ds, rng = self.ds, self.rng
        frame = rng.integers(0, len(ds), n)
        y = rng.integers(0, ds.h, n)
        x = rng.integers(0, ds.w, n)
        n_face = int(round(n * self.cfg.face_share)) if ds.face_rect is not None else 0
        if n_face > 0:
            x[:n_face], y[:n_face] = in_face_rect(ds, frame[:n_face], rng)
            for _ in range(10):  # the other rays outside the rectangle (AD-NeRF), by rejection
                r = ds.face_rect[frame[n_face:]]
                xo, yo = x[n_face:], y[n_face:]
                inside = (xo >= r[:, 0]) & (xo < r[:, 0] + r[:, 2]) & (yo >= r[:, 1]) & (yo < r[:, 1] + r[:, 3])
                if not inside.any():
                    break
                idx = np.flatnonzero(inside) + n_face
                x[idx] = rng.integers(0, ds.w, len(idx))
                y[idx] = rng.integers(0, ds.h, len(idx))
        f, yy, xx = (torch.from_numpy(a) for a in (frame, y, x))
        cls = ds.labels(f, yy, xx)
        if cls is None:
            cls = torch.full((n,), -1, dtype=torch.long)
        return without_untrained((f, yy, xx, cls), ds.class_names)

    def update(self, cls: Tensor, loss: Tensor) -> None:
        """Counts the classes drawn (uniform sampling does not adapt)."""
        c = cls[cls >= 0].cpu().numpy()
        if len(c):
            self.drawn += np.bincount(c, minlength=len(self.drawn))[: len(self.drawn)]

    def shares(self) -> dict[str, float]:
        """Share of the rays drawn so far per class (empty without parsing)."""
        if not self.ds.class_names or self.drawn.sum() == 0:
            return {}
        p = self.drawn / self.drawn.sum()
        return {name: float(p[c]) for c, name in enumerate(self.ds.class_names)}

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "drawn": self.drawn.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.drawn = np.asarray(state["drawn"], np.float64).copy()


class SemanticSampler:
    """SSP-NeRF: each batch split across classes by `class_shares`; within a class, uniform over its pixels; none on
    a hand or a filled edge (UNTRAINED_CLASSES: their share is 0, and rays placed on one are dropped).
    With the eye input, `eye_share` of the rays go to squares about the eyes instead (`EyeRays`), `mouth_share` to
    boxes about the mouth (`MouthRays`), `face_mix` to the face rectangle (AD-NeRF's face rays)."""

    def __init__(self, dataset, cfg: SamplerConfig, seed: int = 0):
        if dataset.class_names is None:
            raise ValueError(f"{dataset.root}: semantic sampling needs parsing/ (use --sampling uniform)")
        self.ds, self.cfg = dataset, cfg
        self.rng = np.random.default_rng(seed)
        n_cls, hw = dataset.n_classes, dataset.h * dataset.w
        maps = [dataset.parsing_map(f).numpy().reshape(-1) for f in range(len(dataset))]
        self.counts = np.stack([np.bincount(m, minlength=n_cls) for m in maps])  # [F,C] pixels per frame/class
        self.area = self.counts.sum(0) / self.counts.sum()  # [C] pixel share a_c
        self.area[class_ids(dataset.class_names, UNTRAINED_CLASSES)] = 0.0  # (absent to the shares: never drawn)
        self.loss = np.ones(n_cls)  # [C] running per-ray loss L_c
        self.seen = np.zeros(n_cls, bool)
        self.calls = 0
        self.p = class_shares(self.area, self.loss, cfg.alpha, cfg.beta, cfg.p_min)
        self.flat = None  # per class: flat indices f*H*W + pixel, when the set is small enough
        if len(maps) * hw <= FLAT_INDEX_LIMIT:
            allpix = np.concatenate(maps)
            order = np.argsort(allpix, kind="stable").astype(np.int64)
            self.flat = np.split(order, np.cumsum(self.counts.sum(0))[:-1])
        self.eyes = EyeRays.of(dataset) if cfg.eye_share > 0 else None
        self.mouth = MouthRays.of(maps, dataset) if cfg.mouth_share > 0 else None
        check_placed_shares(cfg)

    def _draw_class(self, c: int, k: int) -> np.ndarray:
        """k flat pixel indices (f*H*W + y*W + x) uniform over all training pixels of class c."""
        hw = self.ds.h * self.ds.w
        if self.flat is not None:
            return self.flat[c][self.rng.integers(0, len(self.flat[c]), k)]
        frames = self.rng.choice(len(self.ds), size=k, p=self.counts[:, c] / self.counts[:, c].sum())
        out = np.empty(k, np.int64)
        for f in np.unique(frames):
            where = np.flatnonzero(frames == f)
            pix = np.flatnonzero(self.ds.parsing_map(int(f)).numpy().reshape(-1) == c)
            out[where] = f * hw + pix[self.rng.integers(0, len(pix), len(where))]
        return out

    def sample(self, n: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        n_eye = int(round(n * self.cfg.eye_share)) if self.eyes is not None else 0
        n_face = int(round(n * self.cfg.face_mix)) if self.ds.face_rect is not None else 0
        n_mouth = int(round(n * self.cfg.mouth_share)) if self.mouth is not None else 0
        counts = _split_counts(max(0, n - n_eye - n_face - n_mouth), self.p, self.rng)
        flat = np.concatenate([np.zeros(0, np.int64)] + [self._draw_class(c, k) for c, k in enumerate(counts) if k])
        cls = np.repeat(np.arange(len(counts)), counts)
        hw = self.ds.h * self.ds.w
        frame, pix = flat // hw, flat % hw
        y, x = pix // self.ds.w, pix % self.ds.w
        out = [torch.from_numpy(a.astype(np.int64)) for a in (frame, y, x, cls)]
        placed = []  # (frame, y, x) of the rays drawn by place, in this order (the draws' order is the RNG's)
        if n_eye:
            placed.append(self.eyes.draw(n_eye, self.rng))
        if n_mouth:
            placed.append(self.mouth.draw(n_mouth, self.rng))
        if n_face:
            frame = self.rng.integers(0, len(self.ds), n_face)
            x, y = in_face_rect(self.ds, frame, self.rng)
            placed.append(tuple(torch.from_numpy(a) for a in (frame, y, x)))
        for f, yy, xx in placed:
            out = [torch.cat([a, b]) for a, b in zip(out, (f, yy, xx, self.ds.labels(f, yy, xx)))]
        return without_untrained(tuple(out), self.ds.class_names)

    def update(self, cls: Tensor, loss: Tensor) -> None:
        """Fold the batch's per-ray losses [n] into each class's running loss; new shares every k calls."""
        cls_np = cls.detach().cpu().numpy()
        loss_np = loss.detach().float().cpu().numpy()
        n_cls = len(self.loss)
        total = np.bincount(cls_np, weights=loss_np, minlength=n_cls)[:n_cls]
        num = np.bincount(cls_np, minlength=n_cls)[:n_cls]
        has = num > 0
        mean = np.divide(total, num, out=np.zeros(n_cls), where=has)
        first, again = has & ~self.seen, has & self.seen
        self.loss[first] = mean[first]
        self.loss[again] = self.cfg.ema * self.loss[again] + (1 - self.cfg.ema) * mean[again]
        self.seen |= has
        self.calls += 1
        if self.calls % max(self.cfg.update_every, 1) == 0:
            self.p = class_shares(self.area, self.loss, self.cfg.alpha, self.cfg.beta, self.cfg.p_min)

    def shares(self) -> dict[str, float]:
        """The class shares that split the class-drawn rays (logged as `shares`); the eye_share, mouth_share and
        face_mix rays come on top, drawn by place, so a class's share of all rays can differ."""
        return {name: float(self.p[c]) for c, name in enumerate(self.ds.class_names)}

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "loss": self.loss.copy(), "seen": self.seen.copy(),
                "p": self.p.copy(), "area": self.area.copy(), "calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.loss = np.asarray(state["loss"], np.float64).copy()
        self.seen = np.asarray(state["seen"], bool).copy()
        self.p = np.asarray(state["p"], np.float64).copy()
        self.calls = int(state["calls"])


class EyeRays:
    """Rays about the eyes: a frame drawn with weight 0.05 + |1 - eye openness| (blinks are a few frames of a
    clip, so they get most of these rays), one of its two eyes, then a pixel uniform in the square of the eye's
    radius about its projected centre (nerf/blinks.eye_pixels)."""

    def __init__(self, centres: np.ndarray, radii: np.ndarray, eye: np.ndarray, h: int, w: int):
        self.centres, self.radii, self.h, self.w = centres, radii, h, w  # [F,2,2], [F,2]
        weight = 0.05 + np.abs(1.0 - eye.astype(np.float64))
        self.p = weight / weight.sum()  # [F]

    @classmethod
    def of(cls, ds) -> "EyeRays | None":
        """For a dataset with the eye input and the eye region, else None."""
        from nerf.blinks import eye_pixels

        if ds.eye is None or ds.eye_region is None:
            return None
        centres, radii = eye_pixels(ds.eye_region, ds.c2w, ds.focal, ds.cx, ds.cy)
        return cls(centres, radii, ds.eye.numpy(), ds.h, ds.w)

    def draw(self, n: int, rng: np.random.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """(frame [n], y [n], x [n]) long."""
        frame = rng.choice(len(self.p), size=n, p=self.p)
        side = rng.integers(0, 2, n)
        c, r = self.centres[frame, side], self.radii[frame, side]  # [n,2], [n]
        xy = c + (rng.random((n, 2)) * 2 - 1) * r[:, None]
        x = np.clip(np.floor(xy[:, 0]), 0, self.w - 1).astype(np.int64)
        y = np.clip(np.floor(xy[:, 1]), 0, self.h - 1).astype(np.int64)
        return torch.from_numpy(frame.astype(np.int64)), torch.from_numpy(y), torch.from_numpy(x)


class MouthRays:
    """Rays about the mouth: a training frame that shows a mouth, then a pixel uniform in its box: the bounding box
    of its lips and inner-mouth pixels grown by MOUTH_MARGIN of the box's width on every side, so the rays also
    fall on the lip corners, chin and cheeks that move with the jaw (where AD-NeRF's face rays carried the
    held-out mouth better than the lips' own pixels, benchmarks/NOTES.md 2026-12-06)."""

    def __init__(self, boxes: np.ndarray) -> None:
        self.boxes = boxes  # [F,4] int64 x0, y0, x1, y1 (x1, y1 exclusive); x1 == x0 for a frame without a mouth
        self.frames = np.flatnonzero(boxes[:, 2] > boxes[:, 0])  # [F'] frames that show one

    @classmethod
    def of(cls, maps: list[np.ndarray], ds) -> "MouthRays | None":
        """From the training frames' flat parsing maps [H*W] each; None when the classes are not parsed."""
        names = ds.class_names or []
        ids = class_ids(names, MOUTH_CLASSES)
        if not ids:
            return None
        boxes = np.zeros((len(maps), 4), np.int64)
        for f, m in enumerate(maps):
            ys, xs = np.nonzero(np.isin(m.reshape(ds.h, ds.w), ids))
            if len(xs):
                grow = MOUTH_MARGIN * (xs.max() + 1 - xs.min())
                boxes[f] = (max(0, int(xs.min() - grow)), max(0, int(ys.min() - grow)),
                            min(ds.w, int(np.ceil(xs.max() + 1 + grow))),
                            min(ds.h, int(np.ceil(ys.max() + 1 + grow))))
        out = cls(boxes)
        return out if len(out.frames) else None

    def draw(self, n: int, rng: np.random.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """(frame [n], y [n], x [n]) long."""
        frame = self.frames[rng.integers(0, len(self.frames), n)]
        b = self.boxes[frame]
        x = b[:, 0] + (rng.random(n) * (b[:, 2] - b[:, 0])).astype(np.int64)
        y = b[:, 1] + (rng.random(n) * (b[:, 3] - b[:, 1])).astype(np.int64)
        return torch.from_numpy(frame.astype(np.int64)), torch.from_numpy(y), torch.from_numpy(x)


def make_sampler(dataset, cfg: SamplerConfig, seed: int = 0):
    """The sampler `cfg.sampling` names."""
    if cfg.sampling == "semantic":
        return SemanticSampler(dataset, cfg, seed)
    if cfg.sampling == "uniform":
        return UniformSampler(dataset, cfg, seed)
    raise ValueError(f"sampling = {cfg.sampling!r}: expected semantic or uniform")
