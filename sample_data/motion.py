"""Motion and expression of the sample clip's head (sample_data/clip.py renders them).

- Head motion: smooth random yaw / pitch / roll and a small own offset; the torso shifts and tilts partly with it.
- Expression spans: a few spans (EXPR_FRAMES long) in which the head holds perfectly still (its pose curves are
  blended to the span's centre pose HOLD_RAMP frames before and after, and constant inside) while the jaw drops
  fully and the brows rise: an expression bump rises from 0 at the span's start to 1 in its middle third and back.
  The brows lift the forehead, the brows and (less) the upper eyelids (`brow_offset`), and an open jaw pulls the
  cheeks and the lower face oval down a little (`cheek_offset`), as on a real face. A tracker that reads this as
  head motion fails the sample's test: inside a span the true rotation is constant.
- Lip shapes (`lip_width_offset`): the lips spread sideways (and back a little) at width 1 and round (in and
  forward) at width -1; the speech's visemes drive it (sample_data/speech.py).
- Blinks (`blink_closure`, `blink_offset`): about 17 a minute outside the expression spans, and one in the last
  twentieth of the clip (the validation frames), 200-320 ms each; the upper lids come down to meet the lower ones
  (which rise a little) and the skin above the lids follows halfway.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from common.constants import FPS

MAX_ANGLES = (14.0, 10.0, 12.0)  # degrees, peak |yaw|, |pitch|, |roll| (people nod less than they turn)
TORSO_FOLLOW = (0.02, 0.006, 1 / 3)  # torso shift x, y (image widths at peak yaw, pitch), tilt (share of roll)
EXPR_FRAMES = 40  # frames of one expression span (1.6 s)
HOLD_RAMP = 12  # frames over which the pose blends into / out of the held pose around a span
BROW_RAISE = 0.012  # head units the brows rise at brow = 1 (outer eye corners are 0.1 apart)
CHEEK_DROP = 0.005  # head units the cheeks and lower face oval move down at mouth = 1
BROWS = [46, 52, 53, 55, 63, 65, 66, 70, 105, 107, 276, 282, 283, 285, 293, 295, 296, 300, 334, 336]
EYE_CORNERS = [33, 133, 263, 362]
FOREHEAD_TOP = 10
# mediapipe eye contours, paired from the outer to the inner corner: upper lid, lower lid, crease above the upper lid
UPPER_LIDS = [246, 161, 160, 159, 158, 157, 173, 466, 388, 387, 386, 385, 384, 398]
LOWER_LIDS = [7, 163, 144, 145, 153, 154, 155, 249, 390, 373, 374, 380, 381, 382]
CREASES = [247, 30, 29, 27, 28, 56, 190, 467, 260, 259, 257, 258, 286, 414]
LID_MEET = 0.85  # share of the lid gap the upper lid covers when closed (the lower lid covers the rest)
LIP_SPREAD = 0.22  # share of its sideways distance from the mouth's centre a lip point moves out at width = 1
LIP_PROTRUDE = 0.005  # head units the lips move back at width = 1 (forward, toward the camera, at width = -1)
BLINKS_PER_MIN = 17.0
BLINK_FRAMES = (5, 8)  # 200-320 ms


def smooth_curve(n: int, rng: np.random.Generator, peak: float, f_lo: float = 0.06, f_hi: float = 0.45) -> np.ndarray:
    """Sum of three slow sinusoids with random phases, [n] at 25 fps, scaled so max |value| == peak."""
    t = np.arange(n) / FPS
    curve = np.zeros(n)
    for _ in range(3):
        curve += rng.uniform(0.4, 1.0) * np.sin(2 * np.pi * rng.uniform(f_lo, f_hi) * t + rng.uniform(0, 2 * np.pi))
    return peak * curve / max(np.abs(curve).max(), 1e-9)


def make_motion(n: int, rng: np.random.Generator, size: int) -> dict:
    """Per-frame head angles (deg), own head offset (units), torso shift (output px) and torso tilt (deg).

    The torso does not follow the head exactly: it shifts sideways with the yaw, a little up and down with the
    pitch and tilts with a third of the roll, so its motion is a function of the head pose, as a torso
    deformation conditioned on the pose assumes."""
    angles = np.stack([smooth_curve(n, rng, peak * rng.uniform(0.85, 1.0)) for peak in MAX_ANGLES], 1)
    head_off = np.stack([smooth_curve(n, rng, p) for p in (0.006, 0.004, 0.02)], 1)
    return {"angles": angles, "head_off": head_off}


def torso_motion(motion: dict, size: int) -> None:
    """Add the torso's shift (px) and tilt (deg) to motion, from the (possibly held) head angles."""
    yaw, pitch, _ = (motion["angles"] / np.array(MAX_ANGLES)).T  # each in [-1, 1]
    motion["torso"] = np.stack([TORSO_FOLLOW[0] * size * yaw, TORSO_FOLLOW[1] * size * pitch], 1)
    motion["tilt"] = TORSO_FOLLOW[2] * motion["angles"][:, 2]


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """R = Ry(yaw) @ Rx(pitch) @ Rz(roll), degrees, axes of the head frame (x right, y down, z forward)."""
    return Rotation.from_euler("YXZ", [yaw, pitch, roll], degrees=True).as_matrix()


# ---------------------------------------------------------------- expression spans
def expression_spans(n: int) -> list[tuple[int, int]]:
    """[(first, last)] frames of the spans: at 30% and 70% of a clip of >= 150 frames, mid-clip for >= 100 (none in shorter clips:
    the spans would be most of the clip)."""
    centres = [0.3, 0.7] if n >= 150 else [0.5] if n >= 100 else []
    out = []
    for c in centres:
        a = int(round(c * n - EXPR_FRAMES / 2))
        out.append((max(a, 0), min(a + EXPR_FRAMES, n) - 1))
    return out


def expression_bump(n: int, spans: list[tuple[int, int]]) -> np.ndarray:
    """[n] in [0, 1]: 0 outside the spans; inside, a smooth rise over the first third, 1, a fall over the last."""
    bump = np.zeros(n)
    for a, b in spans:
        u = (np.arange(a, b + 1) - a) / max(b - a, 1)  # 0..1 over the span
        bump[a:b + 1] = _smoothstep(np.minimum(u, 1 - u) * 3)
    return bump


def hold_still(motion: dict, spans: list[tuple[int, int]]) -> None:
    """Blend the head's angles and offset to each span's centre pose: constant inside, HOLD_RAMP frames around."""
    n = len(motion["angles"])
    t = np.arange(n)
    for a, b in spans:
        c = (a + b) // 2
        dist = np.maximum(np.maximum(a - t, t - b), 0)  # frames outside the span
        w = _smoothstep(1 - dist / HOLD_RAMP)[:, None]
        for key in ("angles", "head_off"):
            motion[key] = (1 - w) * motion[key] + w * motion[key][c]


def blink_closure(n: int, spans: list[tuple[int, int]], seed: int) -> np.ndarray:
    """[n] eyelid closure in [0, 1] (1 = shut): blinks at ~BLINKS_PER_MIN outside the spans, one near the end."""
    rng = np.random.default_rng(seed + 7919)  # its own stream: the other curves of a seed stay as they were
    closure = np.zeros(n)
    starts, t = [], int(rng.integers(FPS // 2, 2 * FPS))
    while t < n:
        starts.append(t)
        t += int(FPS * 60 / BLINKS_PER_MIN * rng.uniform(0.6, 1.4))
    if n >= 2 * FPS:
        starts.append(n - int(0.05 * n) - BLINK_FRAMES[1] // 2)  # in the validation split (the last 1/11)
    for a in starts:
        length = int(rng.integers(BLINK_FRAMES[0], BLINK_FRAMES[1] + 1))
        for s0, s1 in spans:  # a blink that would fall in a span comes right after it
            if s0 - length - 2 <= a <= s1 + 2:
                a = s1 + 3
        if a < 0 or a + length >= n:
            continue
        u = np.arange(length + 1) / length  # closing over the first third, opening over the rest
        shape = np.where(u < 1 / 3, _smoothstep(3 * u), _smoothstep(1.5 * (1 - u)))
        closure[a:a + length + 1] = np.maximum(closure[a:a + length + 1], shape[:n - a])
    return closure


def blink_offset(verts: np.ndarray) -> np.ndarray:
    """[V,3] head-frame displacement at closure = 1: the upper lids down to LID_MEET of the gap, the lower lids up
    the rest, the creases half as far as the lid below them."""
    off = np.zeros_like(verts)
    gap = verts[LOWER_LIDS] - verts[UPPER_LIDS]  # [K,3]
    off[UPPER_LIDS] = LID_MEET * gap
    off[LOWER_LIDS] = -(1 - LID_MEET) * gap
    off[CREASES] = 0.5 * LID_MEET * gap
    return off


def lip_width_offset(verts: np.ndarray) -> np.ndarray:
    """[V,3] head-frame displacement at lip width = 1 (spread): the lips move away from the mouth's centre line in
    proportion to their distance (LIP_SPREAD) and back by LIP_PROTRUDE at the centre; the weight is 1 on the lips
    and falls to exactly 0 before the nose, half-way to the chin and just past the corners. Only the 478 face-mesh
    points move (the teeth stay with the skull)."""
    lm = verts[:478]
    xc, yc = lm[[61, 291], 0].mean(), lm[[13, 14, 61, 291], 1].mean()
    half = abs(lm[291, 0] - lm[61, 0]) / 2
    dx, dy = verts[:, 0] - xc, verts[:, 1] - yc
    fall = (_smoothstep((dy + 0.35 * half) / (0.2 * half)) * _smoothstep((0.7 * half - dy) / (0.35 * half))
            * _smoothstep((1.5 * half - np.abs(dx)) / (0.5 * half)))
    off = np.zeros_like(verts)
    off[:, 0] = LIP_SPREAD * dx * fall
    off[:, 2] = LIP_PROTRUDE * fall * (1 - np.clip(np.abs(dx) / half, 0, 1)) ** 2
    off[478:] = 0.0
    return off


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def expression_offsets(verts: np.ndarray, jaw_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(brow_offset, cheek_offset) [V,3] head units at brow = 1 and mouth = 1, for the head's vertices verts
    [V,3] (head frame, y down; the first 478 are mediapipe's landmarks) and their jaw weights [V]."""
    lm = verts[:478]
    y_brow, y_eye = lm[BROWS, 1].mean(), lm[EYE_CORNERS, 1].mean()
    y_top, y_nose, y_mouth = lm[FOREHEAD_TOP, 1], lm[2, 1], lm[[61, 291], 1].mean()
    half_face = np.abs(lm[[33, 263], 0]).max()
    x, y = verts[:, 0] - lm[:468, 0].mean(), verts[:, 1]
    across = _smoothstep((1.35 * half_face - np.abs(x)) / (0.35 * half_face))  # fades out past the temples
    # Brows: full lift from a little below the brow line up; fades to 0 at the eye line and to 40% at the top.
    rise = _smoothstep((y_eye - y) / (y_eye - y_brow)) * (1 - 0.6 * _smoothstep((y_brow - y) / (y_brow - y_top)))
    brow = np.zeros_like(verts)
    brow[:, 1] = -BROW_RAISE * rise * across
    # Cheeks: between the eye line and the mouth corners, at the sides (not the nose), not already on the jaw.
    down = _smoothstep((y - y_eye) / (y_mouth - y_eye)) * _smoothstep((y_mouth + 0.02 - y) / 0.02)
    side = _smoothstep((np.abs(x) - 0.25 * half_face) / (0.35 * half_face))
    cheek = np.zeros_like(verts)
    cheek[:, 1] = CHEEK_DROP * down * side * across * (1 - jaw_w) * (y > y_nose - 0.02)
    return brow, cheek
