"""Bundle adjustment of face-mesh landmarks: projection, PnP starts, the sparse least-squares fit of poses, shape
and focal (data_util/tracking.py explains the model and how it is used).

Every fit takes optional per-observation weights `weight [N,P]` (0: the point is not seen in that frame, e.g. a
hand covers it; data_util/occlusion.py), which multiply its pixel and depth residuals.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import scipy.optimize
import scipy.sparse
from scipy.spatial.transform import Rotation

from common.errors import PreprocessError

EYE_DIST = 0.1  # head-frame units between the outer eye corners (docs/DESIGN.md)
Z_WEIGHT = 0.35  # weight of mediapipe's relative depth residuals against the pixel residuals (0: 2D only)


@dataclass
class Track:
    focal: float
    rotvec: np.ndarray  # [N,3] axis-angle, X_cam = R @ X + t
    trans: np.ndarray  # [N,3]
    shape: np.ndarray  # [P,3] shape of the points it was fitted on
    cost: float  # final robust cost (0.5 * sum rho(r^2))


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
                  free_shape: bool = True, weight: np.ndarray | None = None) -> Track:
    """Fit poses [N,3]+[N,3], the shape [P,3] if free_shape and the focal if free_focal to landmarks obs [N,P,3] (pixels x, y and
    mediapipe's relative depth z*w, centred per frame; the depth residuals are weighted by Z_WEIGHT).

    Translations are parametrised as t = f * exp(q) * (a, b, 1), so that moving the focal length at fixed (a, b, q)
    follows the focal / depth valley (the image barely changes): this keeps the problem well conditioned. The depth
    prediction is (R (X - X0))_z * f / t_z, with X0 the initial shape's centroid (the residual pins the shape there).
    weight [N,P] (optional) multiplies each observation's residuals (0: not seen)."""
    n, p = obs.shape[:2]
    wt = np.ones((n, p, 1)) if weight is None else np.asarray(weight, np.float64)[..., None]
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
        res = [(np.concatenate(res, -1) * wt).ravel()]
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


def fit_points(obs: np.ndarray, rotvec: np.ndarray, trans: np.ndarray, focal: float, c: np.ndarray,
               init: np.ndarray, f_scale: float, weight: np.ndarray | None = None) -> np.ndarray:
    """Head-frame positions [P,3] of points seen at obs [N,P,2] under fixed poses (triangulation by LSQ);
    weight [N,P] (optional) multiplies each observation's residual."""
    n, p = obs.shape[:2]
    wt = np.ones((n, p, 1)) if weight is None else np.asarray(weight, np.float64)[..., None]
    frame, point = np.meshgrid(np.arange(n), np.arange(p), indexing="ij")
    rows = np.concatenate([((frame * p + point) * 2 + xy).ravel() for xy in range(2) for _ in range(3)])
    cols = np.concatenate([(3 * point + j).ravel() for _ in range(2) for j in range(3)])
    pattern = scipy.sparse.csr_matrix((np.ones(len(rows), bool), (rows, cols)), shape=(2 * n * p, 3 * p))
    sol = scipy.optimize.least_squares(
        lambda x: ((project(rotvec, trans, x.reshape(p, 3), focal, c) - obs) * wt).ravel(), init.ravel(),
        jac_sparsity=pattern, loss="soft_l1", f_scale=f_scale, x_scale="jac", tr_solver="lsmr", max_nfev=20)
    return sol.x.reshape(p, 3)


