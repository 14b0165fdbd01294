"""A tiny generated `dataset/<name>/` folder (docs/DESIGN.md section 4) for the nerf tests.

The scene is analytic, in the head-frame units of docs/DESIGN.md section 5: a sphere "head" of radius 0.1 at the
origin (hair on top and back, eyes that can close, lips and a mouth whose opening follows the audio), and a "neck" and
"torso" box that stay fixed in camera space (so in the head frame they move when the head turns, as a real
torso does). Each frame's head pose is a few degrees of rotation; the camera sits ~0.5 away.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from common.fileio import save_image, save_json, save_npy

CLASSES = ["background", "face", "brows", "eyes", "ears", "nose", "inner_mouth", "lips", "neck", "torso", "hair"]
COLOURS = {  # class index -> RGB albedo
    1: (0.85, 0.65, 0.55), 3: (0.1, 0.1, 0.35), 6: (0.3, 0.05, 0.05), 7: (0.75, 0.2, 0.25),
    8: (0.8, 0.6, 0.5), 9: (0.2, 0.3, 0.7), 10: (0.25, 0.15, 0.08),
}
HEAD_R = 0.1
T0 = np.array([0.0, -0.03, 0.5])  # head translation in camera space at rest (OpenCV: y down, z forward)
BOXES = {  # class -> (centre, half size) in the body frame (camera space minus T0)
    8: (np.array([0.0, 0.11, 0.01]), np.array([0.045, 0.04, 0.045])),
    9: (np.array([0.0, 0.21, 0.05]), np.array([0.16, 0.07, 0.08])),
}


def euler_to_R(euler: np.ndarray) -> np.ndarray:
    """X-Y-Z euler angles (radians) -> rotation [3,3] (R = Rz @ Ry @ Rx)."""
    x, y, z = euler
    rx = np.array([[1, 0, 0], [0, math.cos(x), -math.sin(x)], [0, math.sin(x), math.cos(x)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(z), -math.sin(z), 0], [math.sin(z), math.cos(z), 0], [0, 0, 1]])
    return rz @ ry @ rx


def head_pose(i: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame i's head rotation [3,3] and translation [3] (X_cam = R @ X_head + t)."""
    phase = 2 * math.pi * i / max(n, 1)
    euler = np.radians([3.0 * math.cos(phase), 6.0 * math.sin(phase), 2.0 * math.sin(2 * phase)])
    t = T0 + np.array([0.004 * math.sin(phase), 0.0, 0.0])
    return euler_to_R(euler), t


def c2w_from_pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Camera-to-world in the head frame, OpenGL camera (docs/DESIGN.md section 5): inv([R|t]) @ diag(1,-1,-1,1)."""
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = R, t
    return np.linalg.inv(w2c) @ np.diag([1.0, -1.0, -1.0, 1.0])


def mouth_opening(i: int) -> float:
    """How open the mouth is in frame i, in [0, 1] (what the audio encodes)."""
    return 0.5 + 0.5 * math.sin(1.7 * i + 0.3)


def eye_openness(i: int) -> float:
    """How open the eyes are in frame i (make_tiny_dataset(eyes=True)), in [0.2, 1]: not in step with the mouth."""
    return 0.6 + 0.4 * math.sin(2.9 * i + 1.1)


def _head_class(n: np.ndarray, opening: float, eye_open: float = 1.0) -> np.ndarray:
    """Class of points on the head sphere from their unit normals n [M,3] (head frame: -z faces the camera); the
    eyes are discs, cut to a band of eye_open of their height (the lids are skin)."""
    cls = np.full(len(n), 1, np.int64)
    cls[(n[:, 1] < -0.55) | (n[:, 2] > 0.2)] = 10  # hair: top and back
    for sx in (-1, 1):
        eye = np.array([0.35 * sx, -0.2, -0.91])
        eye /= np.linalg.norm(eye)
        cls[(n @ eye > 0.985) & (np.abs(n[:, 1] - eye[1]) < 0.175 * eye_open)] = 3
    lips = (np.abs(n[:, 0]) < 0.32) & (np.abs(n[:, 1] - 0.45) < 0.1) & (n[:, 2] < 0)
    cls[lips] = 7
    inner = (np.abs(n[:, 0]) < 0.24) & (np.abs(n[:, 1] - 0.45) < 0.01 + 0.07 * opening) & (n[:, 2] < 0)
    cls[inner] = 6
    return cls


def _box_hit(o: np.ndarray, d: np.ndarray, centre: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Ray-box entry distance [M] (inf where missed)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (centre - half - o) / d
        t2 = (centre + half - o) / d
    tmin = np.nanmax(np.minimum(t1, t2), axis=1)
    tmax = np.nanmin(np.maximum(t1, t2), axis=1)
    return np.where((tmax >= tmin) & (tmax > 0), np.maximum(tmin, 0), np.inf)


def render_frame(c2w: np.ndarray, R: np.ndarray, t: np.ndarray, focal: float, size: int, bg: np.ndarray,
                 opening: float, eye_open: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast the scene: (image float [H,W,3] in [0,1], parsing uint8 [H,W])."""
    j, i = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    c = size / 2
    d_cam = np.stack([(i + 0.5 - c) / focal, -(j + 0.5 - c) / focal, -np.ones_like(i, float)], -1).reshape(-1, 3)
    d = d_cam @ c2w[:3, :3].T  # head frame
    o = np.broadcast_to(c2w[:3, 3], d.shape)
    # head sphere, in the head frame
    b = (o * d).sum(1)
    a = (d * d).sum(1)
    disc = b * b - a * ((o * o).sum(1) - HEAD_R**2)
    t_head = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / a, np.inf)
    # boxes, in the body frame (camera space - T0)
    o_b = o @ R.T + t - T0
    d_b = d @ R.T
    hits = [t_head] + [_box_hit(o_b, d_b, *BOXES[k]) for k in (8, 9)]
    t_all = np.stack(hits, 1)
    which = np.argmin(t_all, 1)
    hit = np.isfinite(t_all.min(1))
    cls = np.zeros(len(d), np.int64)
    p = o + t_head[:, None] * d
    n = p / HEAD_R
    head = hit & (which == 0)
    cls[head] = _head_class(n[head], opening, eye_open)
    cls[hit & (which == 1)] = 8
    cls[hit & (which == 2)] = 9
    albedo = np.zeros((len(d), 3))
    for k, col in COLOURS.items():
        albedo[cls == k] = col
    shade = np.ones(len(d))
    dn = d / np.linalg.norm(d, axis=1, keepdims=True)
    shade[head] = 0.55 + 0.45 * np.clip(-(dn[head] * n[head]).sum(1), 0, 1)
    torso = cls == 9
    stripes = 0.85 + 0.15 * np.sign(np.sin(60 * (o_b[torso] + t_all[torso, 2:3] * d_b[torso])[:, 0]))
    shade[torso] = stripes
    rgb = albedo * shade[:, None]
    rgb[~hit] = bg.reshape(-1, 3)[~hit]
    return rgb.reshape(size, size, 3), cls.reshape(size, size).astype(np.uint8)


def _rect(mask: np.ndarray, pad: int = 1) -> list[int]:
    """[x, y, w, h] bounding box of a boolean mask (pixels), padded."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    x0, y0 = max(int(xs.min()) - pad, 0), max(int(ys.min()) - pad, 0)
    x1, y1 = min(int(xs.max()) + pad, w - 1), min(int(ys.max()) + pad, h - 1)
    return [x0, y0, x1 - x0 + 1, y1 - y0 + 1]


def mouth_landmarks(n_frames: int) -> np.ndarray:
    """[n,478,3] mesh points whose mouth shape (data_util.landmarks.mouth_shape) follows frame i: inner-lip gap
    0.05 + 0.3 * mouth_opening(i), width 0.6 - 0.1 * mouth_opening(i), over outer eye corners 1 apart; both eyes
    open alike in every frame (eye aspect ratio 1/3)."""
    from common.eyes import MEDIAPIPE_EYES
    from data_util.landmarks import LOWER_INNER_LIP, MOUTH_LEFT, MOUTH_RIGHT, UPPER_INNER_LIP

    opening = np.array([mouth_opening(i) for i in range(n_frames)], np.float32)
    lms = np.zeros((n_frames, 478, 3), np.float32)
    for (outer, up1, up2, inner, low2, low1), x0, sign in zip(MEDIAPIPE_EYES, (0.0, 1.0), (1.0, -1.0)):
        x = lambda share: x0 + sign * 0.3 * share  # noqa: E731 (from the outer corner towards the nose)
        for k, share, y in ((outer, 0, 0), (inner, 1, 0), (up1, 1 / 3, -0.05), (up2, 2 / 3, -0.05),
                            (low1, 1 / 3, 0.05), (low2, 2 / 3, 0.05)):
            lms[:, k, 0], lms[:, k, 1] = x(share), y
    lms[:, UPPER_INNER_LIP, 1], lms[:, LOWER_INNER_LIP, 1] = 2.0, 2.05 + 0.3 * opening
    half = (0.6 - 0.1 * opening) / 2
    lms[:, MOUTH_LEFT, 0], lms[:, MOUTH_RIGHT, 0] = 0.5 - half, 0.5 + half
    return lms


def make_tiny_dataset(root: str | Path, n_frames: int = 12, size: int = 32, adnerf: bool = False,
                      aud_dim: int | None = None, eyes: bool = False) -> Path:
    """Write the folder; `adnerf=True` writes only AD-NeRF's files (no parsing/, aud_meta.json, h/w, lips_rect);
    `eyes=True`: the eyes close by eye_openness(i), written as each frame's `eye` (else always open, no `eye`)."""
    root = Path(root)
    (root / "ori_imgs").mkdir(parents=True, exist_ok=True)
    focal = 1.25 * size
    yy, xx = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    bg = np.stack([0.3 + 0.4 * xx, 0.5 + 0.2 * yy, 0.45 + 0.1 * xx * yy], -1)
    save_image(root / "bc.jpg", (bg * 255).round().astype(np.uint8))

    d = aud_dim or (29 if adnerf else 16)
    rng = np.random.default_rng(0)
    pattern = rng.normal(size=(16, d)).astype(np.float32)
    aud = np.stack([mouth_opening(i) * pattern + 0.05 * rng.normal(size=(16, d)) for i in range(n_frames)])
    save_npy(root / "aud.npy", aud.astype(np.float32))

    frames = []
    for i in range(n_frames):
        R, t = head_pose(i, n_frames)
        c2w = c2w_from_pose(R, t)
        rgb, cls = render_frame(c2w, R, t, focal, size, bg, mouth_opening(i), eye_openness(i) if eyes else 1.0)
        save_image(root / "ori_imgs" / f"{i}.jpg", (rgb * 255).round().astype(np.uint8))
        frame = {"img_id": i, "aud_id": i, "transform_matrix": c2w.tolist(),
                 "face_rect": _rect(np.isin(cls, [1, 3, 6, 7, 10]))}
        if eyes:
            frame["eye"] = eye_openness(i)
        if not adnerf:
            save_image(root / "parsing" / f"{i}.png", cls)
            frame["lips_rect"] = _rect(np.isin(cls, [6, 7]))
        frames.append(frame)

    n_train = (10 * n_frames) // 11
    for split, part in (("train", frames[:n_train]), ("val", frames[n_train:])):
        meta = {"focal_len": focal, "cx": size / 2, "cy": size / 2, "frames": part}
        if not adnerf:
            meta.update(h=size, w=size)
        save_json(root / f"transforms_{split}.json", meta)
    if not adnerf:
        save_json(root / "parsing" / "classes.json", {"classes": CLASSES})
        save_json(root / "aud_meta.json", {"backend": "synthetic", "dim": d, "windows": 16})
    if eyes:
        save_face_shape(root)
    return root


def eye_centres() -> np.ndarray:
    """[2,3] the centres of the sphere's eye discs in the head frame."""
    n = np.array([[sx * 0.35, -0.2, -0.91] for sx in (-1, 1)])
    return HEAD_R * n / np.linalg.norm(n, axis=1, keepdims=True)


def save_face_shape(root: Path) -> None:
    """track_params.pt with a face shape `id` [478,3] whose eye points (common.eyes.MEDIAPIPE_EYES) outline the
    sphere's eye discs (the rest of the shape is zeros: only the eyes are used)."""
    import torch

    from common.eyes import MEDIAPIPE_EYES

    shape = np.zeros((478, 3))
    half = HEAD_R * np.arccos(0.985)  # the disc's radius on the sphere
    for centre, idx in zip(eye_centres(), MEDIAPIPE_EYES):  # outer corner, upper, upper, inner corner, lower, lower
        sx = 1 if centre[0] > 0 else -1
        offsets = [(sx * half, 0), (0.3 * sx * half, -0.5 * half), (-0.3 * sx * half, -0.5 * half), (-sx * half, 0),
                   (-0.3 * sx * half, 0.5 * half), (0.3 * sx * half, 0.5 * half)]
        for k, (dx, dy) in zip(idx, offsets):
            shape[k] = centre + [dx, dy, 0.0]
    torch.save({"id": torch.tensor(shape, dtype=torch.float32)}, root / "track_params.pt")


def add_hands(root: Path) -> int:
    """Add a `hands` class (step 5 labels hands; never trained) to a tiny folder's parsing: a 16 x 16 block of each
    map (a hand over the face and the background, a quarter of a 32-px frame). Returns its class index."""
    import imageio.v3 as iio

    names = json.loads((root / "parsing" / "classes.json").read_text())["classes"] + ["hands"]
    save_json(root / "parsing" / "classes.json", {"classes": names})
    for path in (root / "parsing").glob("*.png"):
        par = iio.imread(path)
        par[8:24, 4:20] = len(names) - 1
        iio.imwrite(path, par)
    return len(names) - 1

