"""Step 5: per-frame semantic class maps `parsing/<i>.png` (uint8 class index) + `parsing/classes.json`.

Offline default (no download), as GeneFace++ does it, from three sources:
- the face mesh (step 4's landmarks.npy): face oval, brows, eyes, nose, lips and the inner mouth, filled polygons;
- mediapipe selfie segmentation (shipped in the wheel): person vs background, averaged over 3 frames so that a
  region does not flicker from one frame to the next;
- geometry in the face's own axes (up = chin -> forehead, units of half face height / half width): person pixels
  below the chin and narrower than the jaw are neck, lower or wider are torso, pixels beside the face at eye to
  mouth height are ears, the rest of the person above the chin is hair, except parts of it that reach no higher
  than the face's centre and touch the hair above it at most through a sliver (a collar or shoulder that rises to
  the chin beside the neck): those are torso (`detached_from_the_head`).
The inner mouth is drawn only when the lips are apart (gap >= MIN_MOUTH_GAP of the mouth width and >= 1 pixel).
Hands (step 4's hands.npy: mediapipe's hand landmarks, their hulls grown as data_util.occlusion grows them) are
labelled `hands` over everything else, and the edges step 3 filled in a stabilised frame (stabilise.seen_masks)
`unseen`: training draws no ray on either (common.constants.UNTRAINED_CLASSES).
"""
from __future__ import annotations

import itertools
from collections import deque
from typing import Iterable, Iterator

import cv2
import numpy as np
from scipy.ndimage import distance_transform_edt
from tqdm import tqdm

from common.constants import CLASSES, FACE_OVAL

from .context import StepContext
from common.errors import PreprocessError
from common.fileio import save_json, save_image
from .landmarks import read_rgb
from .occlusion import hand_mask
from .person import person_probability
from .stabilise import seen_masks
from common.quiet import quiet_native_stderr

C = {name: i for i, name in enumerate(CLASSES)}

BROWS = [[46, 53, 52, 65, 55, 107, 66, 105, 63, 70], [276, 283, 282, 295, 285, 336, 296, 334, 293, 300]]
EYES = [[33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7],
        [263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249]]
NOSE = [168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327, 64, 294, 48, 278, 115, 344, 220, 440, 45, 275,
        219, 439, 129, 358, 49, 279, 122, 351, 193, 417]  # filled as their convex hull
OUTER_LIPS = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146]
INNER_LIPS = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95]
FOREHEAD, CHIN, CHEEK_R, CHEEK_L, LIP_UP, LIP_DOWN, MOUTH_R, MOUTH_L = 10, 152, 234, 454, 13, 14, 61, 291

MIN_MOUTH_GAP = 0.06  # inner-lip gap / mouth width below which the mouth counts as closed
NECK_HALF_WIDTH = 0.8  # half face widths
NECK_BOTTOM = -1.7  # half face heights below the face centre where the torso starts
SKIN_MAX_DIST = 3.0  # Mahalanobis distance in Lab chroma from the face's skin colour
EAR_BAND = (-0.35, 0.3, 0.9, 1.35)  # v_min, v_max, |h|_min, |h|_max of the ears beside the face
HAIR_TOP = 0.0  # a hair-labelled part that reaches no higher than this (half face heights) and is cut off from
#                 the hair above by the face, ears or background is torso
HAIR_LINK = 0.1  # links to the hair above narrower than about twice this (half face widths) count as cut


def smooth_in_time(maps: Iterable[np.ndarray], radius: int = 1) -> Iterator[np.ndarray]:
    """Centred moving average over 2*radius+1 frames (fewer at the ends) of a stream of [H,W] maps, holding
    only 2*radius+1 of them in memory."""
    window: deque[tuple[int, np.ndarray]] = deque()

    def mean_around(i: int) -> np.ndarray:
        near = [m for j, m in window if abs(j - i) <= radius]
        return np.mean(near, axis=0, dtype=np.float32)

    n = 0
    for j, m in enumerate(maps):
        window.append((j, m))
        n = j + 1
        if j - radius >= 0:
            yield mean_around(j - radius)
        while window and window[0][0] < j + 1 - 2 * radius:
            window.popleft()
    for i in range(max(0, n - radius), n):
        yield mean_around(i)


def face_axes(lms: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(v, u) [H,W] pixel coordinates in the face's frame: v up the face in half face heights (0 at the centre,
    +1 forehead, -1 chin), u across it in half face widths (sign-free: |u| = distance from the mid-line); and the
    half face width in pixels."""
    top, chin = lms[FOREHEAD, :2], lms[CHIN, :2]
    centre = (top + chin) / 2
    half_h = max(np.linalg.norm(top - chin) / 2, 1e-3)
    up = (top - chin) / (2 * half_h)
    across = np.array([-up[1], up[0]])
    half_w = max(abs(np.dot(lms[CHEEK_L, :2] - lms[CHEEK_R, :2], across)) / 2, 1e-3)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xs - centre[0], ys - centre[1]
    return (dx * up[0] + dy * up[1]) / half_h, np.abs(dx * across[0] + dy * across[1]) / half_w, float(half_w)


def fill(label: np.ndarray, lms: np.ndarray, loop: list[int], cls: int, hull: bool = False) -> None:
    """Paint the polygon through mesh points `loop` (their convex hull if `hull`) with class `cls`, in place."""
    pts = np.round(lms[loop, :2] * 16).astype(np.int32)  # 4 bits of sub-pixel precision
    if hull:
        pts = cv2.convexHull(pts)[:, 0]
    cv2.fillPoly(label, [pts], int(cls), lineType=cv2.LINE_8, shift=4)


def mouth_is_open(lms: np.ndarray) -> bool:
    gap = np.linalg.norm(lms[LIP_UP, :2] - lms[LIP_DOWN, :2])
    width = np.linalg.norm(lms[MOUTH_R, :2] - lms[MOUTH_L, :2])
    return gap >= max(1.0, MIN_MOUTH_GAP * width)


def skin_like(image: np.ndarray, face: np.ndarray, where: np.ndarray, max_dist: float = SKIN_MAX_DIST) -> np.ndarray:
    """bool [K]: which of the K pixels of bool mask `where` [H,W] have a colour (CIE Lab chroma a, b) within
    `max_dist` standard deviations of the face skin's (the pixels of bool mask `face` [H,W]); lightness is left free
    for a neck in shadow."""
    ab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)[..., 1:]
    skin = ab[face].astype(np.float32)
    if len(skin) < 20:
        return np.ones(int(where.sum()), bool)
    mean, cov = skin.mean(0), np.cov(skin.T) + np.eye(2, dtype=np.float32) * 4.0
    d = ab[where].astype(np.float32) - mean
    return np.einsum("ki,ij,kj->k", d, np.linalg.inv(cov), d) <= max_dist ** 2


def detached_from_the_head(hair: np.ndarray, ears: np.ndarray, v: np.ndarray, neck_px: int,
                           top: float = HAIR_TOP) -> np.ndarray:
    """bool [H,W]: the pixels of the bool mask `hair` [H,W] that belong to no part (8-connected) of hair or `ears`
    [H,W] reaching higher than `top` on the face's axis v [H,W] (face_axes), once links narrower than 2 * neck_px + 1
    pixels are cut (the mask eroded by a disk of that radius; each pixel goes with the nearest part that is left):
    person pixels above the chin that are not the hair on the head, such as a collar joined to it by a sliver
    beside the jaw. Long hair, joined to the head as wide as it hangs (over the ears' band too), stays hair."""
    low = hair & (v <= top)
    if not low.any():  # no hair below the face's centre (most short hair): nothing to decide
        return low
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * neck_px + 1, 2 * neck_px + 1))
    core = cv2.erode((hair | ears).astype(np.uint8), disk) > 0
    n, comp = cv2.connectedComponents(core.astype(np.uint8), connectivity=8)
    if n <= 1:  # nothing wider than a link: leave the labels as they are
        return np.zeros_like(hair)
    reaches_up = np.bincount(comp[core & (v > top)], minlength=n) > 0  # [n]: the part has a point above `top`
    _, (iy, ix) = distance_transform_edt(~core, return_indices=True)
    on_head = reaches_up[comp[iy, ix]]  # [H,W]: the nearest part reaches above `top`
    return low & ~on_head


def parse_frame(lms: np.ndarray, person: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
    """uint8 [H,W] class map from the mesh [478,3] (pixels), the person probability [H,W] and, if given, the
    RGB frame [H,W,3] (then only skin-coloured pixels below the chin are neck, the rest is torso)."""
    h, w = person.shape
    v, u, half_w = face_axes(lms, h, w)
    label = np.zeros((h, w), np.uint8)
    is_person = person > 0.5
    label[is_person] = C["hair"]
    v0, v1, u0, u1 = EAR_BAND
    label[is_person & (v >= v0) & (v <= v1) & (u >= u0) & (u <= u1)] = C["ears"]
    label[is_person & (v < -1.0)] = C["torso"]
    label[is_person & (v < -0.3) & (v >= NECK_BOTTOM) & (u <= NECK_HALF_WIDTH)] = C["neck"]
    fill(label, lms, FACE_OVAL, C["face"])
    fill(label, lms, NOSE, C["nose"], hull=True)
    for loop in BROWS:
        fill(label, lms, loop, C["brows"])
    for loop in EYES:
        fill(label, lms, loop, C["eyes"])
    fill(label, lms, OUTER_LIPS, C["lips"])
    if mouth_is_open(lms):
        fill(label, lms, INNER_LIPS, C["inner_mouth"])
    link = max(1, round(HAIR_LINK * half_w)) if np.isfinite(half_w) else 1
    label[detached_from_the_head(label == C["hair"], label == C["ears"], v, link)] = C["torso"]
    if image is not None:
        neck = label == C["neck"]
        label[neck] = np.where(skin_like(image, label == C["face"], neck), C["neck"], C["torso"])
    return label


def run(ctx: StepContext) -> None:
    if ctx.parsing_backend != "mediapipe":
        raise PreprocessError(f"parsing back-end {ctx.parsing_backend!r} is not built in this version; "
                              "use --parsing_backend mediapipe")
    lms_path = ctx.out_dir / "landmarks.npy"
    if not lms_path.is_file():
        raise PreprocessError(f"{lms_path}: not found; run step 4 (landmarks) first")
    lms = np.load(lms_path)
    paths = ctx.frame_paths()
    if len(paths) != len(lms):
        raise PreprocessError(f"{lms_path}: {len(lms)} frames of landmarks but {len(paths)} images in {ctx.img_dir}")
    hands_path = ctx.out_dir / "hands.npy"  # (a dataset whose step 4 ran before hands were kept has none)
    hands = np.load(hands_path) if hands_path.is_file() else np.full((len(paths), 0, 21, 2), np.nan, np.float32)
    frames, frames_again = itertools.tee(read_rgb(p) for p in paths)  # each frame decoded once (tee holds ~3)
    prob = smooth_in_time(person_probability(frames))
    handed = unseen = pixels = 0
    with quiet_native_stderr() as stderr:  # (person_probability's own would swallow the bar)
        for path, pts, pr, image, hand, seen in tqdm(zip(paths, lms, prob, frames_again, hands,
                                                         seen_masks(ctx.out_dir, len(paths))),
                                                     total=len(paths), desc="parsing", unit="frame", file=stderr):
            label = parse_frame(pts, pr, image)
            pixels += label.size
            on_hand = hand_mask(hand, *label.shape)
            label[on_hand] = C["hands"]
            handed += bool(on_hand.any())
            if seen is not None:
                label[~seen] = C["unseen"]
                unseen += int((~seen).sum())
            save_image(ctx.parsing_dir / f"{path.stem}.png", label)
    save_json(ctx.parsing_dir / "classes.json", {"classes": CLASSES})
    share = unseen / max(pixels, 1)
    print(f"parsing: {len(paths)} class maps in {ctx.parsing_dir}; hands in {handed} of them"
          + (f", {share:.1%} of the pixels filled by step 3 (unseen)" if unseen else "")
          + ("; no ray is drawn on them" if handed or unseen else ""))
