"""Step 7: head pose by bundle adjustment of the face-mesh landmarks -> `track_params.pt`.

Unknowns: the focal length f (cx = w/2, cy = h/2), one shared 3D face shape and per-frame rotation and
translation, fitted by `scipy.optimize.least_squares` (soft-L1 loss, sparse finite-difference Jacobian through
`jac_sparsity`) to the landmarks' pixel positions x, y and, with weight Z_WEIGHT, to mediapipe's relative depth
z*w (predicted as the point's camera depth relative to the face centre times f / t_z).

- Why the depth term: from 2D points alone, under +-15 degree rotations, the shape's depth and the out-of-plane
  rotation angles trade off (a deeper face turning less looks almost the same), and mediapipe's 2D points move a
  little less than the true surface points when the head turns. On the sample clip, 2D-only tracking found only
  45-55% of the true yaw and pitch (median error 3.3 degrees, focal -31%); with the depth term, median 1.1 degrees
  (module docs in the report). The depth term trusts mediapipe's depth scale ("roughly the scale of x").
- Expression: the pose is fitted on rigid points only (forehead, temples, nose, eye corners, upper face oval:
  everything above the bottom of the nose except eyelids, brows and irises), subsampled to MAX_POSE_POINTS; mouth,
  lips, jaw and chin are left out. The soft-L1 loss takes care of what moves a little anyway (cheeks, blinks).
- Focal length / depth: the shape's scale is fixed (outer eye corners 0.1 apart), so the face's size in the image
  fixes f / t_z and only perspective distortion tells f from t_z. As AD-NeRF does, f is found by a 1-D search:
  bundle adjustment at fixed f (shape and poses free) on SEARCH_FRAMES frames for f = 0.5 .. 8 x the image size in
  2x steps, then the sqrt(2) neighbours of the best, then the vertex of a parabola through the three best costs in
  log f. The focal is then fixed. The translations are parametrised as t = f exp(q) (a, b, 1), which makes the
  problem well conditioned along the focal / distance valley. When the cost curve is flat (a far camera, nearly
  orthographic), any f in the flat part explains the video equally well and the camera distance follows f; the
  printed cost rise around the chosen focal tells how sharp the choice was. On the sample clip (+-14 degree
  turns, camera 7 head widths away) the curve is flat within ~2-7% over 0.5x..2x and the chosen focal depends on
  the solver settings: -4% of the truth as set here (SEARCH_NFEV 60, Z_WEIGHT 0.35), but anywhere from -20% to
  +23% with other iteration counts and depth weights. Rotations are robust to it (median 1.2-1.5 degrees).
- Poses of all frames: one more least-squares fit with the shape and focal fixed, from per-frame PnP starts
  (cv2.solvePnP on the shape).
- Smoothness: a soft-L1 penalty on frame-to-frame changes of rotation and translation, weighted as the pixel
  motion they cause (SMOOTH), keeps landmark jitter out of the poses without flattening real motion.
- Gauge: after solving, the shape is scaled so the outer eye corners (33, 263) are 0.1 apart, centred on the mean
  of the 468 mesh points, and rotated so the mean head rotation over the clip is the identity (the head frame's
  axes follow the head's average pose: x right, y down, z away from the camera, like OpenCV). The remaining mesh
  points (mouth, jaw, ...) are placed by least squares under the fixed poses (the clip's mean expression).

Output (docs/INTERFACES.md "Coordinates"; plain tensors, `torch.load(weights_only=True)`): `focal` [1] (pixels),
`euler` [N,3] (radians, X-Y-Z: R = Rz @ Ry @ Rx, scipy's 'xyz'), `trans` [N,3], `id` [478,3] (head frame),
`image_size` [2] (h, w), `reproj_err` [N] (mean pixel error on the rigid points), `rigid` [K] (the indices of the
rigid points). `X_cam = R(euler) @ X_head + trans`.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import scipy.optimize
import scipy.sparse
from scipy.spatial.transform import Rotation

from .context import StepContext
from .errors import PreprocessError

N_MESH = 468  # face-mesh points without the irises
EYE_OUTER = (33, 263)  # outer eye corners: their distance fixes the head-frame unit
EYE_DIST = 0.1  # head-frame units between the outer eye corners (docs/INTERFACES.md)
NOSE_BOTTOM = 2  # subnasale: rigid points lie above it
EYELIDS = [7, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246,  # eye contours without corners
           249, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466]
BROWS = [46, 52, 53, 55, 63, 65, 66, 70, 105, 107, 276, 282, 283, 285, 293, 295, 296, 300, 334, 336]
MAX_POSE_POINTS = 120  # rigid points used in the bundle adjustment (subsampled evenly)
SEARCH_FRAMES = 40  # frames used by the focal search, which also gives the shape
SEARCH_NFEV = 60  # evaluations per bundle adjustment of the search (20 ranks the focal lengths by noise)
POSE_NFEV = 30  # evaluations of the final pose fit on all frames
FOCAL_GRID = 2.0 ** np.arange(-1, 4)  # 0.5 ... 8 x the image size max(h, w): coarse focal search grid
FIT_POINTS_FRAMES = 60  # frames used to place the non-rigid points of the shape
SMOOTH = 2.0  # weight of the temporal smoothness residuals (pixel motion of a point 0.1 from the origin)
Z_WEIGHT = 0.35  # weight of mediapipe's relative depth residuals against the pixel residuals (0: 2D only)


@dataclass
class Track:
    focal: float
    rotvec: np.ndarray  # [N,3] axis-angle, X_cam = R @ X + t
    trans: np.ndarray  # [N,3]
    shape: np.ndarray  # [P,3] shape of the points it was fitted on
    cost: float  # final robust cost (0.5 * sum rho(r^2))


# ---------------------------------------------------------------- points and initial shape
def rigid_indices(shape: np.ndarray) -> np.ndarray:
    """Indices [K] of the rigid face-mesh points: above the bottom of the nose, no eyelids, brows or irises.

    shape: [478,3] any frontal-ish shape with y pointing down (image or head frame)."""
    above = np.nonzero(shape[:N_MESH, 1] <= shape[NOSE_BOTTOM, 1])[0]
    return np.setdiff1d(above, EYELIDS + BROWS)


def pose_points(rigid: np.ndarray, k: int | None = None) -> np.ndarray:
    """An even subsample of the rigid indices [<=k, default MAX_POSE_POINTS] that always keeps the outer eye corners."""
    k = k or MAX_POSE_POINTS
    pick = rigid[np.linspace(0, len(rigid) - 1, min(k, len(rigid))).round().astype(int)]
    return np.union1d(pick, EYE_OUTER)


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """(scale, rot [3,3], src mean, dst mean) of the similarity that best maps src [P,3] onto dst [P,3] (Umeyama):
    x -> scale * rot @ (x - src mean) + dst mean."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, s, vt = np.linalg.svd(b.T @ a)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    return float(np.trace(np.diag(s) @ d) / (a**2).sum()), u @ d @ vt, ms, md


def apply_similarity(pts: np.ndarray, sim: tuple[float, np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    scale, rot, ms, md = sim
    return scale * (pts - ms) @ rot.T + md


def initial_shape(lms: np.ndarray) -> np.ndarray:
    """[478,3] head-unit shape from mediapipe's 3D landmarks [N,478,3] (x, y, z*w pixels): frames aligned onto
    the middle frame on their rigid points (similarity), averaged, centred, scaled to EYE_DIST."""
    ref = lms[len(lms) // 2].astype(np.float64)
    idx = rigid_indices(ref)
    acc = np.zeros_like(ref)
    step = max(1, len(lms) // 50)
    frames = lms[::step].astype(np.float64)
    for pts in frames:
        acc += apply_similarity(pts, similarity(pts[idx], ref[idx]))
    shape = acc / len(frames)
    return normalise_shape(shape)


def normalise_shape(shape: np.ndarray) -> np.ndarray:
    """Centre on the 468 mesh points' mean and scale so the outer eye corners are EYE_DIST apart."""
    shape = shape - shape[:N_MESH].mean(0)
    return shape * (EYE_DIST / np.linalg.norm(shape[EYE_OUTER[0]] - shape[EYE_OUTER[1]]))


# ---------------------------------------------------------------- projection and bundle adjustment
def project(rotvec: np.ndarray, trans: np.ndarray, shape: np.ndarray, focal: float, c: np.ndarray) -> np.ndarray:
    """Pixels [N,P,2] of shape [P,3] under poses rotvec, trans [N,3]; c = (cx, cy)."""
    cam = np.matmul(shape, Rotation.from_rotvec(rotvec).as_matrix().transpose(0, 2, 1)) + trans[:, None]
    return focal * cam[..., :2] / cam[..., 2:3] + c


def pnp_init(shape: np.ndarray, obs: np.ndarray, focal: float, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame pose (rotvec [N,3], trans [N,3]) of shape [P,3] from pixels obs [N,P,2] by cv2.solvePnP."""
    k = np.array([[focal, 0, c[0]], [0, focal, c[1]], [0, 0, 1]], np.float64)
    rvecs, tvecs = np.zeros((len(obs), 3)), np.zeros((len(obs), 3))
    r, t = np.zeros((3, 1)), np.array([[0.0], [0.0], [1.0]])
    for i, uv in enumerate(obs):
        ok, r, t = cv2.solvePnP(shape, uv.astype(np.float64), k, None, rvec=r.copy(), tvec=t.copy(),
                                useExtrinsicGuess=i > 0, flags=cv2.SOLVEPNP_ITERATIVE if i > 0 else cv2.SOLVEPNP_EPNP)
        if i == 0:
            ok, r, t = cv2.solvePnP(shape, uv.astype(np.float64), k, None, rvec=r, tvec=t, useExtrinsicGuess=True,
                                    flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok:
            raise PreprocessError(f"tracking: solvePnP failed on frame {i}")
        rvecs[i], tvecs[i] = r.ravel(), t.ravel()
    return rvecs, tvecs


def _sparsity(n: int, p: int, ch: int, free_focal: bool, free_shape: bool, smooth: bool) -> scipy.sparse.csr_matrix:
    """Jacobian pattern of bundle_adjust's residuals: data rows (frame, point, channel x y [z]), then smoothness
    rows (frame pair, 6). Columns: [focal], [shape P*3], poses N*6."""
    off_s = int(free_focal)
    off_p = off_s + 3 * p * int(free_shape)
    rows, cols = [], []
    frame, point = np.meshgrid(np.arange(n), np.arange(p), indexing="ij")
    for xy in range(ch):
        r = ((frame * p + point) * ch + xy).ravel()
        for j in range(3 if free_shape else 0):
            rows.append(r)
            cols.append(off_s + 3 * point.ravel() + j)
        for j in range(6):
            rows.append(r)
            cols.append(off_p + 6 * frame.ravel() + j)
        if free_focal:
            rows.append(r)
            cols.append(np.zeros_like(r))
    n_rows = ch * n * p
    if smooth and n > 1:
        pair, j = np.meshgrid(np.arange(n - 1), np.arange(6), indexing="ij")
        r = n_rows + (pair * 6 + j).ravel()
        rows += [r, r]
        cols += [off_p + 6 * pair.ravel() + j.ravel(), off_p + 6 * (pair.ravel() + 1) + j.ravel()]
        n_rows += 6 * (n - 1)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    data = np.ones(len(rows), bool)
    return scipy.sparse.csr_matrix((data, (rows, cols)), shape=(n_rows, off_p + 6 * n))


def bundle_adjust(obs: np.ndarray, shape: np.ndarray, rotvec: np.ndarray, trans: np.ndarray, focal: float,
                  c: np.ndarray, free_focal: bool, smooth: float, f_scale: float, max_nfev: int = 50,
                  free_shape: bool = True) -> Track:
    """Fit poses [N,3]+[N,3], the shape [P,3] if free_shape and the focal if free_focal to landmarks obs [N,P,3] (pixels x, y and
    mediapipe's relative depth z*w, centred per frame; the depth residuals are weighted by Z_WEIGHT).

    Translations are parametrised as t = f * exp(q) * (a, b, 1), so that moving the focal length at fixed (a, b, q)
    follows the focal / depth valley (the image barely changes): this keeps the problem well conditioned. The depth
    prediction is (R (X - X0))_z * f / t_z, with X0 the initial shape's centroid (the residual pins the shape there)."""
    n, p = obs.shape[:2]
    ch = 3 if Z_WEIGHT > 0 else 2
    z = float(np.median(trans[:, 2]))
    w_pose = smooth * focal * np.array([EYE_DIST / z] * 3 + [1.0, 1.0, EYE_DIST / z])  # pixel motion per unit
    centre = shape.mean(0)

    def unpack(x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        f = focal * np.exp(x[0]) if free_focal else focal
        k = int(free_focal)
        if not free_shape:
            return f, shape, x[k:].reshape(n, 6)
        return f, x[k:k + 3 * p].reshape(p, 3), x[k + 3 * p:].reshape(n, 6)

    def to_trans(f: float, pose: np.ndarray) -> np.ndarray:  # [N,3]
        return f * np.exp(pose[:, 5:6]) * np.hstack([pose[:, 3:5], np.ones((n, 1))])

    def residuals(x: np.ndarray) -> np.ndarray:
        f, s, pose = unpack(x)
        rot = Rotation.from_rotvec(pose[:, :3]).as_matrix()  # [N,3,3]
        cam = np.matmul(s, rot.transpose(0, 2, 1)) + to_trans(f, pose)[:, None]  # [N,P,3]
        res = [f * cam[..., :2] / cam[..., 2:3] + c - obs[..., :2]]
        if ch == 3:
            depth = np.matmul(s - centre, rot[:, 2:3].transpose(0, 2, 1))  # [N,P,1]: (R (X - X0))_z
            res.append(Z_WEIGHT * (depth * np.exp(-pose[:, None, 5:6]) - obs[..., 2:3]))
        res = [np.concatenate(res, -1).ravel()]
        if smooth > 0 and n > 1:
            res.append((np.diff(pose, axis=0) * w_pose).ravel())
        return np.concatenate(res)

    abq = np.hstack([trans[:, :2] / trans[:, 2:], np.log(trans[:, 2:] / focal)])
    x0 = np.concatenate([[0.0] if free_focal else [], shape.ravel() if free_shape else [],
                         np.hstack([rotvec, abq]).ravel()])
    sol = scipy.optimize.least_squares(
        residuals, x0, jac_sparsity=_sparsity(n, p, ch, free_focal, free_shape, smooth > 0), loss="soft_l1", f_scale=f_scale,
        x_scale="jac", tr_solver="lsmr", max_nfev=max_nfev, xtol=1e-10, ftol=1e-8, method="trf")
    f, s, pose = unpack(sol.x)
    return Track(focal=f, rotvec=pose[:, :3], trans=to_trans(f, pose), shape=s, cost=float(sol.cost))


def search_focal(obs: np.ndarray, shape: np.ndarray, c: np.ndarray, size: float, f_scale: float,
                 verbose: bool = True) -> Track:
    """1-D search for the focal length (AD-NeRF's approach) on SEARCH_FRAMES frames of obs [N,P,3]: bundle
    adjustment at fixed f (shape and poses free) on a coarse log grid (2x steps), then the sqrt(2) neighbours of
    the best, then a parabola through the best three costs in log f. Returns the fit at the chosen focal."""
    sub = np.linspace(0, len(obs) - 1, min(SEARCH_FRAMES, len(obs))).round().astype(int)
    o = obs[sub]
    fits: dict[float, Track] = {}

    def fit_at(f: float) -> Track:
        if f not in fits:
            rv, tr = pnp_init(shape, o[..., :2], f, c)
            fits[f] = bundle_adjust(o, shape, rv, tr, f, c, False, 0.0, f_scale, max_nfev=SEARCH_NFEV)
        return fits[f]

    for k in FOCAL_GRID:
        fit_at(float(k * size))
    best = min(fits, key=lambda f: fits[f].cost)
    for f in (best / np.sqrt(2), best * np.sqrt(2)):
        fit_at(float(f))
    fs = sorted(fits)
    b = min(max(fs.index(min(fits, key=lambda f: fits[f].cost)), 1), len(fs) - 2)
    x = np.log(fs[b - 1:b + 2])
    y = np.array([fits[f].cost for f in fs[b - 1:b + 2]])
    a2, a1, _ = np.polyfit(x - x[1], y, 2)
    step = -a1 / (2 * a2) if a2 > 0 else 0.0
    focal = float(np.exp(x[1] + np.clip(step, x[0] - x[1], x[2] - x[1])))
    if verbose:
        rise = 100 * (y.max() / y.min() - 1)
        print(f"tracking: focal {focal:.1f} px ({focal / size:.2f} x image size) by 1-D search; the fit's cost "
              f"is {rise:.1f}% higher at {np.exp(x[0]):.0f} or {np.exp(x[2]):.0f} px")
    return fit_at(focal)


# ---------------------------------------------------------------- the whole fit
def fit_points(obs: np.ndarray, rotvec: np.ndarray, trans: np.ndarray, focal: float, c: np.ndarray,
               init: np.ndarray, f_scale: float) -> np.ndarray:
    """Head-frame positions [P,3] of points seen at obs [N,P,2] under fixed poses (triangulation by LSQ)."""
    n, p = obs.shape[:2]
    frame, point = np.meshgrid(np.arange(n), np.arange(p), indexing="ij")
    rows = np.concatenate([((frame * p + point) * 2 + xy).ravel() for xy in range(2) for _ in range(3)])
    cols = np.concatenate([(3 * point + j).ravel() for _ in range(2) for j in range(3)])
    pattern = scipy.sparse.csr_matrix((np.ones(len(rows), bool), (rows, cols)), shape=(2 * n * p, 3 * p))
    sol = scipy.optimize.least_squares(
        lambda x: (project(rotvec, trans, x.reshape(p, 3), focal, c) - obs).ravel(), init.ravel(),
        jac_sparsity=pattern, loss="soft_l1", f_scale=f_scale, x_scale="jac", tr_solver="lsmr", max_nfev=20)
    return sol.x.reshape(p, 3)


def fix_gauge(rotvec: np.ndarray, trans: np.ndarray, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same projections, canonical head frame: shape [478,3] centred, eye corners EYE_DIST apart, mean rotation I."""
    rots = Rotation.from_rotvec(rotvec)
    centre = shape[:N_MESH].mean(0)
    scale = EYE_DIST / np.linalg.norm(shape[EYE_OUTER[0]] - shape[EYE_OUTER[1]])
    q = rots.mean()  # X_cam = R_i X + t_i = (R_i q^-1)(q (X - centre)) + t_i + R_i centre
    new_shape = scale * q.apply(shape - centre)
    new_trans = scale * (trans + rots.apply(centre))
    return (rots * q.inv()).as_rotvec(), new_trans, new_shape


def track(lms: np.ndarray, h: int, w: int, verbose: bool = True) -> dict[str, np.ndarray]:
    """Head poses from landmarks [N,478,3] (pixels x, y and z*w) of h x w frames. Returns arrays of the contract."""
    lms = np.asarray(lms, np.float64)
    if lms.ndim != 3 or lms.shape[1:] != (478, 3):
        raise PreprocessError(f"tracking: landmarks must be [N, 478, 3], got {list(lms.shape)}")
    bad = np.nonzero(~np.isfinite(lms).all(axis=(1, 2)))[0]
    if len(bad):
        raise PreprocessError(f"tracking: landmarks missing (NaN) in {len(bad)} frames, first {bad[0]}; "
                              "rerun step 4 (landmarks)")
    c = np.array([w / 2.0, h / 2.0])
    size = float(max(h, w))
    f_scale = max(1.0, size / 512)  # pixels where the soft-L1 loss turns linear
    shape0 = initial_shape(lms)
    rigid = rigid_indices(shape0)
    pts = pose_points(rigid)
    obs = lms[:, pts].copy()
    obs[..., 2] -= obs[..., 2].mean(1, keepdims=True)

    search = search_focal(obs, shape0[pts], c, size, f_scale, verbose)
    rv, tr = pnp_init(search.shape, obs[..., :2], search.focal, c)
    fit = bundle_adjust(obs, search.shape, rv, tr, search.focal, c, False, SMOOTH, f_scale, max_nfev=POSE_NFEV,
                        free_shape=False)

    # The whole 478-point shape under the found poses: start from the initial shape aligned onto the fit.
    full0 = apply_similarity(shape0, similarity(shape0[pts], fit.shape))
    sub = np.linspace(0, len(lms) - 1, min(FIT_POINTS_FRAMES, len(lms))).round().astype(int)
    full = fit_points(lms[sub, :, :2], fit.rotvec[sub], fit.trans[sub], fit.focal, c, full0, f_scale)
    full[pts] = fit.shape
    rotvec, trans, shape = fix_gauge(fit.rotvec, fit.trans, full)

    err = np.linalg.norm(project(rotvec, trans, shape[rigid], fit.focal, c) - lms[:, rigid, :2], axis=-1)
    euler = Rotation.from_rotvec(rotvec).as_euler("xyz")
    if verbose:
        print(f"tracking: focal {fit.focal:.1f} px, camera distance {np.mean(trans[:, 2]):.3f}, "
              f"rigid reprojection error mean {err.mean():.2f} px, worst frame {err.mean(1).max():.2f} px")
    return {"focal": np.array([fit.focal]), "euler": euler, "trans": trans, "id": shape,
            "image_size": np.array([h, w]), "reproj_err": err.mean(1), "rigid": rigid}


def save_params(path, params: dict[str, np.ndarray]) -> None:
    """Write params as plain tensors (float32, int64 for indices/sizes), atomically."""
    import torch

    from .fileio import atomic_path

    out = {k: torch.from_numpy(np.ascontiguousarray(v)).to(
        torch.int64 if k in ("image_size", "rigid") else torch.float32) for k, v in params.items()}
    with atomic_path(path) as tmp:
        torch.save(out, tmp)


def load_params(path) -> dict[str, np.ndarray]:
    """track_params.pt -> numpy arrays."""
    import torch

    return {k: v.numpy() for k, v in torch.load(path, weights_only=True).items()}


def run(ctx: StepContext) -> None:
    lms_path = ctx.out_dir / "landmarks.npy"
    if not lms_path.is_file():
        raise PreprocessError(f"{lms_path}: not found; run step 4 (landmarks) first")
    lms = np.load(lms_path)
    frames = ctx.frame_paths()
    if not frames:
        raise PreprocessError(f"{ctx.img_dir}: no frames; run step 3 (video) first")
    if len(frames) != len(lms):
        raise PreprocessError(f"{lms_path}: {len(lms)} frames of landmarks but {len(frames)} images in {ctx.img_dir}")
    h, w = cv2.imread(str(frames[0]), cv2.IMREAD_GRAYSCALE).shape[:2]
    save_params(ctx.out_dir / "track_params.pt", track(lms, h, w))
