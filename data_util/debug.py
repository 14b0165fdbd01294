"""Step 9: pictures for a person to check the preprocessing at a glance, in `debug/`.

- `frame_<i>.jpg` for ~8 frames spread over the clip: parsing colours blended over the frame, the 68 landmarks
  (green), the tracked face shape re-projected with the tracked pose and focal (red dots: they should sit on the
  landmarks of the rigid upper face), and the head-frame axes at the head origin (x red, y green, z blue,
  0.1 head units long).
- `contact_sheet.png`: those overlays in a grid, with a legend of the parsing colours.
- `poses.png`: rotation (degrees, X-Y-Z euler), translation, the expression (mouth opening and brow height,
  data_util.expression: pose-independent) and the per-frame reprojection error over time, on one time axis, so a
  person sees at a glance whether the rotation follows the expression (it should not, unless the head really nods).
"""
from __future__ import annotations

import json

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from common.constants import PALETTE

from .context import StepContext
from common.errors import PreprocessError
from .expression import expression_curves, leak_report
from common.fileio import atomic_path, save_image
from .tracking import EYE_DIST, load_params

N_SAMPLES = 8
ALPHA = 0.45  # opacity of the parsing colours


def sample_frames(n: int, k: int = N_SAMPLES) -> list[int]:
    """k frame indices spread evenly over n frames (all of them when n <= k)."""
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, min(k, n))})


def project(points: np.ndarray, rot: np.ndarray, trans: np.ndarray, focal: float, c: np.ndarray) -> np.ndarray:
    """Pixels [P,2] (continuous coordinates) of head points [P,3] under X_cam = rot @ X + trans."""
    cam = points @ rot.T + trans
    return focal * cam[:, :2] / cam[:, 2:3] + c


def blend_parsing(img: np.ndarray, parsing: np.ndarray | None) -> np.ndarray:
    """Image uint8 [H,W,3] with the class colours of parsing uint8 [H,W] blended over it (background left as is)."""
    if parsing is None:
        return img.copy()
    colours = PALETTE[np.minimum(parsing, len(PALETTE) - 1)].astype(np.float32)
    alpha = np.where(parsing[..., None] > 0, ALPHA, 0.0)
    return (img * (1 - alpha) + colours * alpha).round().astype(np.uint8)


def draw_points(img: np.ndarray, pts: np.ndarray, colour: tuple[int, int, int], radius: int) -> None:
    for x, y in pts:
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(img, (int(x), int(y)), radius, colour, -1, cv2.LINE_AA)


def draw_axes(img: np.ndarray, rot: np.ndarray, trans: np.ndarray, focal: float, c: np.ndarray) -> None:
    """Head-frame x, y, z axes (red, green, blue), EYE_DIST long, from the head origin."""
    ends = project(np.vstack([np.zeros(3), EYE_DIST * np.eye(3)]), rot, trans, focal, c)
    o = tuple(int(v) for v in ends[0])
    for end, colour in zip(ends[1:], [(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        cv2.line(img, o, tuple(int(v) for v in end), colour, 2, cv2.LINE_AA)


def overlay(ctx: StepContext, i: int, params: dict, lms68: np.ndarray | None) -> np.ndarray:
    """The debug picture of frame i (uint8 [H,W,3] RGB)."""
    img = cv2.imread(str(ctx.img_dir / f"{i}.jpg"), cv2.IMREAD_COLOR)
    if img is None:
        raise PreprocessError(f"{ctx.img_dir / f'{i}.jpg'}: cannot read the frame")
    par_path = ctx.parsing_dir / f"{i}.png"
    parsing = cv2.imread(str(par_path), cv2.IMREAD_UNCHANGED) if par_path.is_file() else None
    if parsing is not None and parsing.ndim == 3:
        parsing = parsing[..., 0]
    out = blend_parsing(img[..., ::-1], parsing)
    h, w = out.shape[:2]
    c = np.array([w / 2.0, h / 2.0])
    rot = Rotation.from_euler("xyz", params["euler"][i].astype(np.float64)).as_matrix()
    trans = params["trans"][i].astype(np.float64)
    focal = float(params["focal"][0])
    radius = max(1, round(min(h, w) / 256))
    if lms68 is not None:
        draw_points(out, lms68, (0, 255, 0), radius)
    shape_px = project(params["id"].astype(np.float64), rot, trans, focal, c)[params["rigid"]]
    draw_points(out, shape_px, (255, 0, 0), max(1, radius // 2))
    draw_axes(out, rot, trans, focal, c)
    label = f"{i}  err {params['reproj_err'][i]:.1f}px" if "reproj_err" in params else str(i)
    cv2.putText(out, label, (4, 14 * radius), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * radius, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def read_lms68(ctx: StepContext, i: int) -> np.ndarray | None:
    """ori_imgs/<i>.lms (68 lines `x y`) or None if absent."""
    path = ctx.img_dir / f"{i}.lms"
    return np.loadtxt(path, ndmin=2)[:, :2] if path.is_file() else None


def contact_sheet(images: list[np.ndarray], names: list[str], cols: int = 4) -> np.ndarray:
    """Images (same size) in a grid with a parsing-colour legend strip below. uint8 [H',W',3]."""
    from skimage.util import montage

    rows = -(-len(images) // cols)
    sheet = montage(np.stack(images), grid_shape=(rows, min(cols, len(images))), channel_axis=-1, fill=(0, 0, 0))
    sheet = np.ascontiguousarray(sheet.astype(np.uint8))
    legend = np.zeros((22, sheet.shape[1], 3), np.uint8)
    x = 4
    for k, name in enumerate(names):
        cv2.rectangle(legend, (x, 5), (x + 12, 17), tuple(int(v) for v in PALETTE[min(k, len(PALETTE) - 1)]), -1)
        cv2.putText(legend, name, (x + 15, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        x += 20 + 7 * len(name)
    return np.vstack([sheet, legend])


def plot_poses(path, params: dict, lms: np.ndarray | None = None) -> None:
    """poses.png: euler angles in degrees, translation, expression curves (when lms [N,478,3] is given) and the
    reprojection error, over the frames. The title gives the correlations of pitch with mouth and brows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    euler = np.degrees(params["euler"].astype(np.float64))
    trans = params["trans"].astype(np.float64)
    panels = ["rot", "trans"] + (["expr"] if lms is not None else []) + (["err"] if "reproj_err" in params else [])
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.2 * len(panels)), sharex=True)
    ax = dict(zip(panels, axes))
    for k, name in enumerate("xyz"):
        ax["rot"].plot(euler[:, k], label=f"rot {name}" + (" (pitch)" if name == "x" else ""))
        ax["trans"].plot(trans[:, k] - trans[:, k].mean(), label=f"t{name} - {trans[:, k].mean():.3f}")
    ax["rot"].set_ylabel("degrees")
    ax["trans"].set_ylabel("head units")
    title = f"head pose (focal {float(params['focal'][0]):.0f} px)"
    if lms is not None:
        curves = expression_curves(lms)
        leak = leak_report(params["euler"].astype(np.float64), lms)
        for name, colour in (("mouth", "tab:red"), ("brow", "tab:purple")):
            c = curves[name]
            ax["expr"].plot((c - c.min()) / max(np.ptp(c), 1e-9), color=colour, label=f"{name} (min-max scaled)")
        ax["expr"].set_ylabel("expression")
        title += (f"; pitch vs mouth r = {leak['r_pitch_mouth']:+.2f}, vs brow r = {leak['r_pitch_brow']:+.2f}; "
                  f"max step {leak['max_step_deg']:.1f} deg")
    ax["rot"].set_title(title, fontsize=9)
    if "err" in ax:
        ax["err"].plot(params["reproj_err"], color="k")
        ax["err"].set_ylabel("reproj. error (px)")
    axes[-1].set_xlabel("frame")
    for name in panels[:3]:
        if name != "err":
            ax[name].legend(loc="upper right", fontsize=7)
            ax[name].grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def class_names(ctx: StepContext) -> list[str]:
    path = ctx.parsing_dir / "classes.json"
    return json.loads(path.read_text())["classes"] if path.is_file() else []


def run(ctx: StepContext) -> None:
    tp = ctx.out_dir / "track_params.pt"
    if not tp.is_file():
        raise PreprocessError(f"{tp}: not found; run step 7 (tracking) first")
    params = load_params(tp)
    n = len(params["euler"])
    images = []
    for i in sample_frames(n):
        img = overlay(ctx, i, params, read_lms68(ctx, i))
        save_image(ctx.debug_dir / f"frame_{i}.jpg", img)
        images.append(img)
    save_image(ctx.debug_dir / "contact_sheet.png", contact_sheet(images, class_names(ctx)))
    lms_path = ctx.out_dir / "landmarks.npy"
    lms = np.load(lms_path) if lms_path.is_file() else None
    plot_poses(ctx.debug_dir / "poses.png", params, lms if lms is not None and len(lms) == n else None)
    print(f"debug: wrote {ctx.debug_dir}/contact_sheet.png, poses.png and {len(images)} frames")
