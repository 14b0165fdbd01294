"""The sample clip's scene: a textured head mesh built from scikit-image's astronaut photo, a torso layer, a
synthetic background, and the rasteriser that draws the posed mesh (sample_data/clip.py renders the frames).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay

from common.constants import FACE_OVAL
from common.errors import PreprocessError
from common.quiet import quiet_native_stderr

SS = 2                      # supersampling factor (render at SS x size, then downsample)
FOCAL_PER_SIZE = 1.5        # focal = 1.5 * size pixels
FACE_FRACTION = 0.42        # face oval height / frame height
EYE_DIST = 0.1              # head-frame units: outer eye corners (33, 263) are 0.1 apart
JAW_DROP = 0.040            # lower-lip drop at mouth opening 1 from closed lips, head units
JAW_DIR = np.array([0.0, 1.0, 0.25]) / np.hypot(1.0, 0.25)  # direction the jaw drops in, head frame
DEPTH_SCALE = 1.0          # scale of the mesh depth (mediapipe z) relative to x, y
UPPER_INNER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LOWER_INNER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
INNER_LIP = UPPER_INNER + LOWER_INNER[-2:0:-1]          # closed loop, 20 points
UPPER_INNER_MID, LOWER_INNER_MID = 13, 14  # mesh points at the middle of the inner lips
LEFT_EYE = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246]
RIGHT_EYE = [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466]
MOUTH_COLOR = np.array([52, 18, 20], np.float32)       # dark mouth interior, RGB


@dataclass
class Head:
    """A textured head mesh in head-frame units (X_cam = R @ X + t)."""
    verts: np.ndarray      # [V, 3] rest vertices, head frame; the first 478 are mediapipe's landmarks
    uv: np.ndarray         # [V, 2] texture coordinates, photo pixels (continuous, pixel i spans [i, i+1])
    tris: np.ndarray       # [T, 3] int, counter-clockwise in the photo
    jaw_w: np.ndarray      # [V] how much each vertex follows the jaw (0 rigid .. 1)
    jaw_dir: np.ndarray    # [3] unit direction the jaw moves, head frame
    texture: np.ndarray    # [H, W, 4] uint8 RGBA photo; alpha = head region
    pivot: np.ndarray      # [3] rotation centre (top of the neck), head frame
    px_to_unit: float      # head units per photo pixel


# ---------------------------------------------------------------------------------------------------------------
# Building the head, torso and background from the photo
# ---------------------------------------------------------------------------------------------------------------

def photo_landmarks(photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mediapipe on the photo: 478 points [478, 3] (x*w, y*h, z*w) and the person mask [H, W] float in [0, 1]."""
    import mediapipe as mp

    h, w = photo.shape[:2]
    with quiet_native_stderr(), mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True) as fm:
        res = fm.process(photo)
    if not res.multi_face_landmarks:
        raise PreprocessError("sample clip: mediapipe found no face in the astronaut photo")
    pts = np.array([[p.x * w, p.y * h, p.z * w] for p in res.multi_face_landmarks[0].landmark], np.float64)
    with quiet_native_stderr(), mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
        mask = seg.process(photo).segmentation_mask.astype(np.float32)
    return pts, refine_person(photo, mask > 0.5, pts)


def refine_person(photo: np.ndarray, person: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Clean the selfie mask [H, W] bool into a soft alpha [H, W] float32: GrabCut drops the light backdrop the
    mask swallowed (e.g. between hair and collar), then only the largest connected part is kept."""
    gc = np.where(person, cv2.GC_PR_FGD, cv2.GC_BGD).astype(np.uint8)
    gc[cv2.erode(person.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0] = cv2.GC_FGD
    cv2.fillPoly(gc, [np.round(pts[FACE_OVAL, :2]).astype(np.int32)], cv2.GC_FGD)
    cv2.setRNGSeed(0)                                                    # GrabCut's k-means init is random
    cv2.grabCut(np.ascontiguousarray(photo[..., ::-1]), gc, None, np.zeros((1, 65)), np.zeros((1, 65)), 3,
                cv2.GC_INIT_WITH_MASK)
    grab = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    light = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY) > 110                 # the photo's backdrop is light
    fg = (person & ~(light & ~grab)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=4)
    fg = labels == 1 + np.argmax(stats[1:, cv2.CC_STAT_AREA])
    return cv2.GaussianBlur(fg.astype(np.float32), (0, 0), 0.7)


def mesh_triangles() -> np.ndarray:
    """Mediapipe's face-mesh triangles [T, 3], recovered as the 3-cliques of FACEMESH_TESSELATION's edges."""
    import mediapipe as mp

    adj: dict[int, set[int]] = {}
    edges = mp.solutions.face_mesh.FACEMESH_TESSELATION
    for a, b in edges:
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    tris = {tuple(sorted((a, b, c))) for a, b in edges for c in adj[a] & adj[b]}
    return np.array(sorted(tris), np.int64)


def fill_polygon(loop: list[int], pts2d: np.ndarray) -> np.ndarray:
    """Triangles [K, 3] (indices into the loop's points) filling a closed polygon: Delaunay, inside ones kept."""
    poly = pts2d[loop].astype(np.float32)
    tri = Delaunay(poly).simplices
    inside = [cv2.pointPolygonTest(poly, tuple(map(float, poly[t].mean(0))), False) > 0 for t in tri]
    return np.array(loop)[tri[np.array(inside)]]


def _ccw(tris: np.ndarray, pts2d: np.ndarray) -> np.ndarray:
    """Reorder each triangle so its signed area in pts2d (x right, y down) is positive."""
    a, b, c = (pts2d[tris[:, k]] for k in range(3))
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    out = tris.copy()
    out[area < 0] = tris[area < 0][:, [0, 2, 1]]
    return out


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def jaw_weights(pts: np.ndarray, lms: np.ndarray) -> np.ndarray:
    """Jaw weight [N] of photo points [N, >=2] given the photo landmarks [478, >=2]: 1 on the lower lip and
    chin, 0 above the mouth's mid-line, falling off sideways."""
    mid = (lms[UPPER_INNER, :2] + lms[LOWER_INNER, :2]) / 2              # mouth mid-line, 11 points
    mid = mid[np.argsort(mid[:, 0])]
    half_w = np.linalg.norm(lms[61, :2] - lms[291, :2]) / 2
    below = pts[:, 1] - np.interp(pts[:, 0], mid[:, 0], mid[:, 1])
    sy = _smoothstep(below / (0.18 * half_w))
    sx = np.exp(-0.5 * ((pts[:, 0] - mid[:, 0].mean()) / (1.6 * half_w)) ** 2)
    return sy * sx


def build_scene(photo: np.ndarray) -> tuple[Head, np.ndarray, dict]:
    """The head mesh, the torso layer (RGBA in photo pixels) and photo facts (face box) from the photo."""
    pts, person = photo_landmarks(photo)
    h, w = photo.shape[:2]
    xy = pts[:, :2]

    # Ring of vertices past the face oval (hair, ears), pushed out radially and back in depth.
    oval = pts[FACE_OVAL]
    centre = oval[:, :2].mean(0)
    half_width = (oval[:, 0].max() - oval[:, 0].min()) / 2
    u = (oval[:, :2] - centre) / np.linalg.norm(oval[:, :2] - centre, axis=1, keepdims=True)
    ext = half_width * (0.75 + 0.75 * np.maximum(0.0, -u[:, 1]))           # longer at the top (hair)
    rings = []
    for frac in (0.35, 1.0):
        ring = oval.copy()
        ring[:, :2] += u * (frac * ext)[:, None]
        ring[:, 2] += 0.8 * frac * ext
        rings.append(ring)

    # Teeth patch: the photo's open-mouth region, rigid with the skull, a little behind and larger than the hole.
    lip = pts[INNER_LIP]
    lip_c = lip.mean(0)
    teeth = lip.copy()
    teeth[:, :2] = lip_c[:2] + 1.12 * (lip[:, :2] - lip_c[:2])
    teeth[:, 2] += 0.06 * half_width

    n0 = len(pts)
    n_ring = len(FACE_OVAL)
    ring_idx = [np.array(FACE_OVAL), n0 + np.arange(n_ring), n0 + n_ring + np.arange(n_ring)]
    teeth_idx = n0 + 2 * n_ring + np.arange(len(INNER_LIP))
    verts_px = np.concatenate([pts, rings[0], rings[1], teeth])

    tris = [mesh_triangles(), fill_polygon(LEFT_EYE, xy), fill_polygon(RIGHT_EYE, xy)]
    for a, b in zip(ring_idx[:-1], ring_idx[1:]):                       # quads between consecutive loops
        a1, b1 = np.roll(a, -1), np.roll(b, -1)
        tris += [np.stack([a, b, b1], 1), np.stack([a, b1, a1], 1)]
    teeth_tris = fill_polygon(list(range(len(INNER_LIP))), lip[:, :2])
    tris.append(teeth_idx[teeth_tris])
    tris = _ccw(np.concatenate(tris), verts_px[:, :2])

    jaw_w = jaw_weights(verts_px, pts)
    jaw_w[n0 + n_ring:] = 0.0               # ring next to the jaw follows it
    ring_outer = rings[1][:, :2]

    # Head-frame units: centred on the mesh, outer eye corners EYE_DIST apart, axes as the photo (y down, z away).
    px_to_unit = EYE_DIST / np.linalg.norm(pts[33] - pts[263])
    origin = pts[:468].mean(0)
    verts = (verts_px - origin) * px_to_unit * np.array([1.0, 1.0, DEPTH_SCALE])
    # The photo's mouth is open (teeth show): raise the lower lip and chin so that mouth 0 has the lips shut.
    gap = verts[LOWER_INNER_MID, 1] - verts[UPPER_INNER_MID, 1]
    verts -= (0.97 * gap / (JAW_DIR[1] * max(jaw_w[LOWER_INNER_MID], 1e-3))) * jaw_w[:, None] * JAW_DIR
    chin_y = (pts[152, 1] - origin[1]) * px_to_unit
    pivot = np.array([0.0, chin_y, 0.8 * EYE_DIST])

    # Alpha of the head layer in the photo: the face oval, plus the person above the mouth-corner line.
    yy = np.arange(h, dtype=np.float32)[:, None]
    oval_mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(oval_mask, [np.round(oval[:, :2] * 16 - 8).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    ring_mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(ring_mask, [np.round(ring_outer * 16 - 8).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    y_cut = max(pts[61, 1], pts[291, 1]) + 0.1 * half_width
    above = np.clip((y_cut - yy) / 3.0, 0.0, 1.0) * np.ones((1, w), np.float32)
    head_alpha = np.maximum(oval_mask, person * above * ring_mask)
    texture = np.dstack([photo, np.round(head_alpha * 255).astype(np.uint8)])

    # Torso layer: the person minus the head region, with the neck continued up under the chin (in shadow).
    torso_rgb = photo.astype(np.float32).copy()
    torso_alpha = person * (1.0 - np.maximum(oval_mask, above))
    beside_jaw = (yy < pts[152, 1]) & (np.arange(w)[None] >= oval[:, 0].min()) & (np.arange(w)[None] <= oval[:, 0].max())
    not_dark = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY) > 80               # keep the dark collar there
    torso_alpha[beside_jaw & not_dark] = 0.0                             # hair tips / backdrop beside the jaw
    _neck_under_chin(photo, torso_rgb, torso_alpha, oval_mask, pts, half_width)
    torso = np.dstack([np.clip(torso_rgb, 0, 255), torso_alpha * 255]).astype(np.uint8)

    head = Head(verts=verts, uv=verts_px[:, :2].copy(), tris=tris, jaw_w=jaw_w,
                jaw_dir=JAW_DIR, texture=texture, pivot=pivot,
                px_to_unit=px_to_unit)
    face = {"origin_px": origin, "top": oval[:, 1].min(), "bottom": oval[:, 1].max(), "cx": centre[0]}
    return head, torso, face


def _neck_under_chin(photo: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, oval_mask: np.ndarray,
                     pts: np.ndarray, half_width: float) -> None:
    """Continue the neck up under the chin (in place, torso layer rgb [H, W, 3] float, alpha [H, W]), so no gap
    opens when the head lifts or turns: each column repeats the skin just below the chin, shaded darker upwards,
    faded out at the neck's sides."""
    h = photo.shape[0]
    cx, top = pts[152, 0], int(pts[13, 1])
    x_lo, x_hi = int(cx - 0.6 * half_width), int(cx + 0.6 * half_width) + 1
    y_chin_max = top
    for x in range(x_lo, x_hi + 1):
        col = np.nonzero(oval_mask[:, x] > 0.5)[0]
        if len(col) == 0:
            continue
        y_chin = int(col.max())
        y_chin_max = max(y_chin_max, y_chin)
        rows = np.arange(top, y_chin + 3)
        shade = 0.65 + 0.35 * _smoothstep((rows - (y_chin - 12)) / 15.0)
        side = _smoothstep((0.6 * half_width - abs(x - cx)) / (0.2 * half_width))
        rgb[rows, x] = photo[min(h - 1, y_chin + 4), x].astype(np.float32) * shade[:, None]
        alpha[rows, x] = np.maximum(alpha[rows, x], side)
    rows = slice(top, y_chin_max + 3)
    rgb[rows, x_lo:x_hi + 1] = cv2.GaussianBlur(rgb[rows, x_lo:x_hi + 1], (0, 0), 1.5)


def make_background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A static synthetic backdrop [size, size, 3] float32 RGB: a smooth gradient with a few soft blobs."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(60, 200, 3), rng.uniform(60, 200, 3)
    bg = c0 * (1 - yy[..., None]) + c1 * yy[..., None] + 20 * (xx[..., None] - 0.5)
    for _ in range(5):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.3)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        bg += blob[..., None] * rng.uniform(-40, 40, 3)
    return np.clip(bg, 0, 255).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Motion
# ---------------------------------------------------------------------------------------------------------------

def rasterise(head: Head, cam_pts: np.ndarray, uv_dst: np.ndarray, mouth_poly: np.ndarray, n: int) -> np.ndarray:
    """Render the head layer RGBA float32 [n, n, 4] (premultiplied) at render resolution.

    cam_pts [V, 3] camera-space vertices; uv_dst [V, 2] their projections in render pixels (continuous coords);
    mouth_poly [K, 2] the inner-lip contour in render pixels (filled dark under the mesh).
    """
    ids = np.full((n, n), -1, np.int32)
    mouth_id = len(head.tris)
    cv2.fillPoly(ids, [np.round((mouth_poly - 0.5) * 16).astype(np.int32)], mouth_id, cv2.LINE_8, 4)
    d = uv_dst[head.tris]                                                # [T, 3, 2]
    area = ((d[:, 1, 0] - d[:, 0, 0]) * (d[:, 2, 1] - d[:, 0, 1])
            - (d[:, 1, 1] - d[:, 0, 1]) * (d[:, 2, 0] - d[:, 0, 0]))
    depth = cam_pts[head.tris, 2].mean(1)
    order = [i for i in np.argsort(-depth) if area[i] > 1e-6]          # back to front, front-facing only
    poly = np.round((d - 0.5) * 16).astype(np.int32)
    for i in order:
        cv2.fillConvexPoly(ids, poly[i], int(i), cv2.LINE_8, 4)

    # Per-triangle affine map render pixel -> photo pixel: [T, 2, 3] = S_h @ inv(D_h).
    src = head.uv[head.tris]
    d_h = np.concatenate([d, np.ones((len(d), 3, 1))], 2).transpose(0, 2, 1)       # [T, 3, 3]
    ok = np.abs(np.linalg.det(d_h)) > 1e-9
    aff = np.zeros((len(d) + 1, 2, 3))
    aff[:-1][ok] = src[ok].transpose(0, 2, 1) @ np.linalg.inv(d_h[ok])
    tid = np.where(ids < 0, mouth_id, ids)
    gy, gx = np.mgrid[0:n, 0:n].astype(np.float64) + 0.5
    a = aff[tid]                                                         # [n, n, 2, 3]
    map_x = (a[..., 0, 0] * gx + a[..., 0, 1] * gy + a[..., 0, 2] - 0.5).astype(np.float32)
    map_y = (a[..., 1, 0] * gx + a[..., 1, 1] * gy + a[..., 1, 2] - 0.5).astype(np.float32)
    inside = (ids >= 0) & (ids != mouth_id)
    map_x[~inside] = -10
    map_y[~inside] = -10
    rgba = cv2.remap(head.texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=(0, 0, 0, 0)).astype(np.float32) / 255.0
    rgba[..., :3] *= rgba[..., 3:]
    mouth = ids == mouth_id
    rgba[mouth, :3] = MOUTH_COLOR / 255.0
    rgba[mouth, 3] = 1.0
    return rgba


def project(pts: np.ndarray, focal: float, c: float) -> np.ndarray:
    """Pinhole projection of camera points [N, 3] -> pixels [N, 2] (continuous coords, cx = cy = c)."""
    return focal * pts[:, :2] / pts[:, 2:3] + c
