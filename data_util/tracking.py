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
- Expression, first defence (data_util/optical_flow.py): mediapipe's own mesh moves the nose, eye corners and
  temples by 1-2 px when the jaw drops or the brows rise, but their pixels do not move. So the pose points'
  x, y are first steadied by their optical flow (a least-squares blend: the flow sets the motion over ~2 s,
  mediapipe the level beyond). `run()` computes the flow from the frames; `track()` without it uses the
  landmarks alone.
- Expression, second defence: the pose is fitted on rigid points only. The candidates are everything above the
  bottom of the nose except eyelids, brows and irises (mouth, lips, jaw and chin are left out); the forehead
  helps the focal search (its depth extent) but not the per-frame poses (it rises with the brows). On a real face
  many of those still move with the expression: mediapipe's forehead, temples and upper face oval shift when the
  brows rise or the jaw drops, and a fit on them turns that shift into pitch. Optionally (RIGID_ROUNDS > 0; off by
  default, worse on the 3 s pipeline clip) the points are then chosen by how rigid they are on
  this clip: after a first fit, every candidate is placed in the head frame (least squares over the frames) and
  its spread is how far its observed position strays from that place over the clip (the 75th percentile of its
  per-frame residual after removing its median, pixels); the RIGID_SHARE least-spread candidates are kept and the
  poses fitted again, RIGID_ROUNDS times. The soft-L1 loss (a robust, iteratively reweighted fit) takes care of
  the rest (blinks, a hand over part of the face). `rigid_spread` in the output says how each candidate did.
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
- Cuts: a head rotation of more than JUMP_DEG between two frames is no head motion; one warning line names the
  frames (an edited video: one model needs one shot from one camera, which --start / --end can take).
- Gauge: after solving, the shape is scaled so the outer eye corners (33, 263) are 0.1 apart, centred on the mean
  of the 468 mesh points, and rotated so the mean head rotation over the clip is the identity (the head frame's
  axes follow the head's average pose: x right, y down, z away from the camera, like OpenCV). The remaining mesh
  points (mouth, jaw, ...) are placed by least squares under the fixed poses (the clip's mean expression).

Output (docs/DESIGN.md, coordinates; plain tensors, `torch.load(weights_only=True)`): `focal` [1] (pixels),
`euler` [N,3] (radians, X-Y-Z: R = Rz @ Ry @ Rx, scipy's 'xyz'), `trans` [N,3], `id` [478,3] (head frame),
`image_size` [2] (h, w), `reproj_err` [N] (mean pixel error on the rigid points), `rigid` [K] (the indices of the
rigid points). `X_cam = R(euler) @ X_head + trans`.
"""
from __future__ import annotations

import sys

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from .bundle_adjust import (EYE_DIST, Track, apply_similarity, bundle_adjust, fit_points, pnp_init, project,
                            similarity)
from .context import StepContext
from common.errors import PreprocessError
from .optical_flow import landmark_flow, read_gray, steady_points

N_MESH = 468  # face-mesh points without the irises
EYE_OUTER = (33, 263)  # outer eye corners: their distance fixes the head-frame unit
NOSE_BOTTOM = 2  # subnasale: rigid points lie above it
EYELIDS = [7, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246,  # eye contours without corners
           249, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466]
BROWS = [46, 52, 53, 55, 63, 65, 66, 70, 105, 107, 276, 282, 283, 285, 293, 295, 296, 300, 334, 336]
MAX_POSE_POINTS = 120  # rigid points used in the bundle adjustment (subsampled evenly)
RIGID_SHARE = 0.4  # share of the candidate points kept as the clip's rigid points (least spread first)
RIGID_MIN = 30  # ... but at least this many
RIGID_ROUNDS = 0  # rounds of (place the candidates, keep the least spread, fit the poses again)
SPREAD_FRAMES = 120  # frames used to place the candidates and measure their spread
SPREAD_PERCENTILE = 75  # a point's spread: this percentile over the frames of its distance from its usual place
SEARCH_FRAMES = 40  # frames used by the focal search, which also gives the shape
SEARCH_NFEV = 60  # evaluations per bundle adjustment of the search (20 ranks the focal lengths by noise)
POSE_NFEV = 30  # evaluations of the final pose fit on all frames
FOCAL_GRID = 2.0 ** np.arange(-1, 4)  # 0.5 ... 8 x the image size max(h, w): coarse focal search grid
FIT_POINTS_FRAMES = 60  # frames used to place the non-rigid points of the shape
SMOOTH = 2.0  # weight of the temporal smoothness residuals (pixel motion of a point 0.1 from the origin)
JUMP_DEG = 15.0  # a head rotation larger than this between two frames (375 deg/s at 25 fps) is a cut in the video


# ---------------------------------------------------------------- points and initial shape
def rigid_indices(shape: np.ndarray) -> np.ndarray:
    """Indices [K] of the rigid face-mesh points: above the bottom of the nose, no eyelids, brows or irises.

    shape: [478,3] any frontal-ish shape with y pointing down (image or head frame)."""
    above = np.nonzero(shape[:N_MESH, 1] <= shape[NOSE_BOTTOM, 1])[0]
    return np.setdiff1d(above, EYELIDS + BROWS)


def below_brows(shape: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """bool [len(idx)]: the points idx lie below the lowest brow point (not on the forehead, which rises with the
    brows). shape: [478,3], y pointing down."""
    return shape[idx, 1] > shape[BROWS, 1].max()


def pose_points(rigid: np.ndarray, k: int | None = None) -> np.ndarray:
    """An even subsample of the rigid indices [<=k, default MAX_POSE_POINTS] that always keeps the outer eye corners."""
    k = k or MAX_POSE_POINTS
    pick = rigid[np.linspace(0, len(rigid) - 1, min(k, len(rigid))).round().astype(int)]
    return np.union1d(pick, EYE_OUTER)


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


def pose_candidates(lms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(initial shape [478,3], the pose-point candidates [K]) of landmarks [N,478,3]: the points track() steadies
    by their optical flow and fits the poses on (run() computes the flow of these only)."""
    shape0 = initial_shape(lms)
    return shape0, rigid_indices(shape0)


def normalise_shape(shape: np.ndarray) -> np.ndarray:
    """Centre on the 468 mesh points' mean and scale so the outer eye corners are EYE_DIST apart."""
    shape = shape - shape[:N_MESH].mean(0)
    return shape * (EYE_DIST / np.linalg.norm(shape[EYE_OUTER[0]] - shape[EYE_OUTER[1]]))


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
def depth_centred(obs: np.ndarray) -> np.ndarray:
    """Landmarks [N,P,3] with mediapipe's depth centred per frame (it is relative to an unknown origin)."""
    obs = obs.astype(np.float64, copy=True)
    obs[..., 2] -= obs[..., 2].mean(1, keepdims=True)
    return obs


def fit_poses(obs: np.ndarray, shape: np.ndarray, focal: float, c: np.ndarray, f_scale: float,
              seen: np.ndarray | None = None) -> Track:
    """Poses of all frames for a fixed shape [P,3] and focal: per-frame PnP starts, then one smoothed fit.
    seen [N,P] bool (optional): points not seen in a frame (a hand over them) do not pull its pose."""
    rv, tr = pnp_init(shape, obs[..., :2], focal, c)
    return bundle_adjust(obs, shape, rv, tr, focal, c, False, SMOOTH, f_scale, max_nfev=POSE_NFEV, free_shape=False,
                         weight=seen)


def fit_shape(obs: np.ndarray, shape: np.ndarray, fit: Track, c: np.ndarray, f_scale: float,
              seen: np.ndarray | None = None) -> np.ndarray:
    """The shape [P,3] of the points seen at obs [N,P,3], fitted with the poses on SEARCH_FRAMES frames."""
    sub = np.linspace(0, len(obs) - 1, min(SEARCH_FRAMES, len(obs))).round().astype(int)
    return bundle_adjust(obs[sub], shape, fit.rotvec[sub], fit.trans[sub], fit.focal, c, False, 0.0, f_scale,
                         max_nfev=SEARCH_NFEV, weight=None if seen is None else seen[sub]).shape


def point_spread(obs: np.ndarray, fit: Track, init: np.ndarray, c: np.ndarray, f_scale: float,
                 seen: np.ndarray | None = None) -> np.ndarray:
    """How far each point strays from one head-frame place over the clip, pixels [P]: the points seen at obs
    [N,P,2] are placed under the fitted poses (least squares on SPREAD_FRAMES frames, from init [P,3]), then the
    75th percentile over the frames where it is seen of the distance of its residual from its median residual."""
    seen = np.ones(obs.shape[:2], bool) if seen is None else seen
    sub = np.linspace(0, len(obs) - 1, min(SPREAD_FRAMES, len(obs))).round().astype(int)
    placed = fit_points(obs[sub], fit.rotvec[sub], fit.trans[sub], fit.focal, c, init, f_scale, seen[sub])
    res = np.where(seen[..., None], project(fit.rotvec, fit.trans, placed, fit.focal, c) - obs, np.nan)  # [N,P,2]
    dist = np.linalg.norm(res - np.nanmedian(res, 0), axis=-1)
    spread = np.nanpercentile(np.where(seen.any(0), dist, 0.0), SPREAD_PERCENTILE, axis=0)
    return np.where(seen.sum(0) >= 2, spread, np.inf)


def n_rigid(candidates: np.ndarray) -> int:
    return min(len(candidates), max(RIGID_MIN, int(round(RIGID_SHARE * len(candidates)))))


def most_rigid(candidates: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """The n_rigid candidates [K] with the least spread, sorted by index."""
    return np.sort(candidates[np.argsort(spread, kind="stable")[:n_rigid(candidates)]])


def fix_gauge(rotvec: np.ndarray, trans: np.ndarray, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same projections, canonical head frame: shape [478,3] centred, eye corners EYE_DIST apart, mean rotation I."""
    rots = Rotation.from_rotvec(rotvec)
    centre = shape[:N_MESH].mean(0)
    scale = EYE_DIST / np.linalg.norm(shape[EYE_OUTER[0]] - shape[EYE_OUTER[1]])
    q = rots.mean()  # X_cam = R_i X + t_i = (R_i q^-1)(q (X - centre)) + t_i + R_i centre
    new_shape = scale * q.apply(shape - centre)
    new_trans = scale * (trans + rots.apply(centre))
    return (rots * q.inv()).as_rotvec(), new_trans, new_shape


def track(lms: np.ndarray, h: int, w: int, verbose: bool = True, covered: np.ndarray | None = None,
          flow: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Head poses from landmarks [N,478,3] (pixels x, y and z*w) of h x w frames. covered [N,478] bool (optional,
    data_util/occlusion.py): points a hand covers, left out of that frame's fit. flow (optional): (flow [N,478,2],
    ok [N,478]) the landmarks' optical flow from the previous frame (optical_flow.landmark_flow): the pose points
    are steadied by it first, so that expression does not move the pose. Returns arrays of the contract."""
    lms = np.asarray(lms, np.float64)
    if lms.ndim != 3 or lms.shape[1:] != (478, 3):
        raise PreprocessError(f"tracking: landmarks must be [N, 478, 3], got {list(lms.shape)}")
    bad = np.nonzero(~np.isfinite(lms).all(axis=(1, 2)))[0]
    if len(bad):
        raise PreprocessError(f"tracking: landmarks missing (NaN) in {len(bad)} frames, first {bad[0]}; "
                              "rerun step 4 (landmarks)")
    seen = np.ones(lms.shape[:2], bool) if covered is None else ~np.asarray(covered, bool)
    c = np.array([w / 2.0, h / 2.0])
    size = float(max(h, w))
    f_scale = max(1.0, size / 512)  # pixels where the soft-L1 loss turns linear
    shape0, rigid = pose_candidates(lms)
    if flow is not None:
        lms = steady_points(lms, flow, rigid)
    pts = pose_points(rigid)
    obs = depth_centred(lms[:, pts])
    clear = seen[:, pts].all(1)  # frames without a hand over the pose points: the focal search uses only those
    search = search_focal(obs[clear] if clear.sum() >= 2 else obs, shape0[pts], c, size, f_scale, verbose)
    keep = below_brows(shape0, pts)  # the forehead helps the focal search (depth extent), not the poses
    pts = pts[keep]
    obs = depth_centred(lms[:, pts])
    fit = fit_poses(obs, search.shape[keep], search.focal, c, f_scale, seen[:, pts])
    for _ in range(RIGID_ROUNDS):  # keep the points that are rigid on this clip, fit again
        full0 = apply_similarity(shape0, similarity(shape0[pts], fit.shape))
        spread = point_spread(lms[:, rigid, :2], fit, full0[rigid], c, f_scale, seen[:, rigid])
        pts = pose_points(most_rigid(rigid, spread))
        obs = depth_centred(lms[:, pts])
        shape = fit_shape(obs, full0[pts], fit, c, f_scale, seen[:, pts])
        fit = fit_poses(obs, shape, fit.focal, c, f_scale, seen[:, pts])
    if verbose and RIGID_ROUNDS > 0:
        hidden = (~seen[:, pts]).any(1).sum()
        print(f"tracking: {len(pts)} pose points chosen by rigidity on this clip (spread median "
              f"{np.median(spread):.2f} px over {len(rigid)} candidates, {np.sort(spread)[n_rigid(rigid) - 1]:.2f} px "
              f"at the last one kept); {hidden} frames with some of them under a hand")

    # The whole 478-point shape under the found poses: start from the initial shape aligned onto the fit.
    full0 = apply_similarity(shape0, similarity(shape0[pts], fit.shape))
    sub = np.linspace(0, len(lms) - 1, min(FIT_POINTS_FRAMES, len(lms))).round().astype(int)
    full = fit_points(lms[sub, :, :2], fit.rotvec[sub], fit.trans[sub], fit.focal, c, full0, f_scale, seen[sub])
    full[pts] = fit.shape
    rotvec, trans, shape = fix_gauge(fit.rotvec, fit.trans, full)

    err = np.linalg.norm(project(rotvec, trans, shape[pts], fit.focal, c) - lms[:, pts, :2], axis=-1)
    per_frame = (err * seen[:, pts]).sum(1) / np.maximum(seen[:, pts].sum(1), 1)  # [N] over the seen points
    euler = Rotation.from_rotvec(rotvec).as_euler("xyz")
    if verbose:
        print(f"tracking: focal {fit.focal:.1f} px, camera distance {np.mean(trans[:, 2]):.3f}, "
              f"rigid reprojection error mean {per_frame.mean():.2f} px, worst frame {per_frame.max():.2f} px")
        warn_jumps(rotvec)
    return {"focal": np.array([fit.focal]), "euler": euler, "trans": trans, "id": shape,
            "image_size": np.array([h, w]), "reproj_err": per_frame,
            "rigid": rigid if RIGID_ROUNDS == 0 else pts}


def jumps(rotvec: np.ndarray) -> np.ndarray:
    """Frames i [K] whose head rotation differs from frame i-1's by more than JUMP_DEG (rotvec [N,3])."""
    rots = Rotation.from_rotvec(rotvec)
    step = np.degrees((rots[1:] * rots[:-1].inv()).magnitude()) if len(rots) > 1 else np.zeros(0)
    return np.nonzero(step > JUMP_DEG)[0] + 1


def warn_jumps(rotvec: np.ndarray) -> None:
    """One warning line when the head jumps between frames: the model assumes one continuous shot, one camera."""
    at = jumps(rotvec)
    if len(at):
        shown = ", ".join(str(i) for i in at[:8]) + (f" and {len(at) - 8} more" if len(at) > 8 else "")
        print(f"warning: tracking: the head turns more than {JUMP_DEG:.0f} degrees from one frame to the next at "
              f"frame {shown}: cuts in the video? One model needs one continuous shot from one camera; take one "
              "with --start / --end (see debug/poses.png)", file=sys.stderr)


def save_params(path, params: dict[str, np.ndarray]) -> None:
    """Write params as plain tensors (float32, int64 for indices/sizes), atomically."""
    import torch

    from common.fileio import atomic_path

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
    occ_path = ctx.out_dir / "occlusion.npy"
    covered = np.load(occ_path) if occ_path.is_file() else None
    if covered is not None and covered.shape != lms.shape[:2]:
        raise PreprocessError(f"{occ_path}: shape {list(covered.shape)} does not match {lms_path} "
                              f"{list(lms.shape[:2])}; rerun step 4 (landmarks)")
    flow = None
    if np.isfinite(lms).all():  # (else track() names the frames with missing landmarks)
        candidates = pose_candidates(lms)[1]  # the only points whose flow track() uses
        flow = landmark_flow(read_gray(frames), lms, covered, progress=True, which=candidates)
        print(f"tracking: optical flow of the {len(candidates)} pose-point candidates: "
              f"{100 * flow[1][1:, candidates].mean():.0f}% of the frame-to-frame links passed the forward-backward "
              "check")
    save_params(ctx.out_dir / "track_params.pt", track(lms, h, w, covered=covered, flow=flow))
