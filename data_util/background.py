"""Step 6: the static background image `bc.jpg`.

Each pixel is the median of its colour over the frames where the parsing (step 5) calls it background, with the
person mask grown by MARGIN of the image size first (so the soft edge of hair and shoulders does not bleed in).
Up to MAX_FRAMES frames spread over the clip are used. Pixels that are never background (always behind the
person), or are in under MIN_SEEN of the frames, take the colour of the nearest pixel that was.
When step 3 cropped the video, the step also writes the full-frame background bc_full.jpg (data_util.full_frame).
A camera that moves (the background drifting between the sampled frames: data_util.camera_motion) gets a warning.
"""
from __future__ import annotations

import json
import sys

import cv2
import numpy as np
from scipy import ndimage
from tqdm import tqdm

from .camera_motion import camera_warning
from .context import FPS, StepContext
from .full_frame import full_frame_path, write_full_frame_background
from common.errors import PreprocessError
from common.fileio import save_image
from .landmarks import read_rgb

MAX_FRAMES = 64
MARGIN = 0.02  # person mask dilation, fraction of the image width
MIN_SEEN = 0.1  # a pixel seen as background in fewer of the frames than this is a segmentation slip: filled


def background_mask(parsing: np.ndarray, margin_px: int) -> np.ndarray:
    """bool [H,W]: background class (0) pixels at least margin_px away from any other class."""
    person = (parsing != 0).astype(np.uint8)
    if margin_px > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin_px + 1, 2 * margin_px + 1))
        person = cv2.dilate(person, kernel)
    return person == 0


def median_background(frames: list[np.ndarray], masks: list[np.ndarray], min_seen: float = MIN_SEEN
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 [H,W,3], seen bool [H,W]): per-pixel median colour over the frames where mask is True;
    `seen` only where that is at least a `min_seen` fraction of the frames."""
    stack = np.stack(frames).astype(np.float32)  # [K,H,W,3]
    seen_in = np.stack(masks)  # [K,H,W]
    stack[~seen_in] = np.nan
    seen = seen_in.mean(axis=0) >= max(min_seen, 1e-9)
    image = np.zeros(stack.shape[1:], np.float32)
    image[seen] = np.nanmedian(stack[:, seen], axis=0)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), seen


def fill_unseen(image: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Give each pixel never seen as background [H,W] the colour of its nearest seen pixel."""
    if seen.all() or not seen.any():
        return image
    _, (iy, ix) = ndimage.distance_transform_edt(~seen, return_indices=True)
    return image[iy, ix]


def run(ctx: StepContext) -> None:
    paths = ctx.frame_paths()
    if not paths:
        raise PreprocessError(f"{ctx.img_dir}: no frames; run step 3 (video) first")
    picks = sorted({int(round(x)) for x in np.linspace(0, len(paths) - 1, min(MAX_FRAMES, len(paths)))})
    frames, masks = [], []
    for k in tqdm(picks, desc="background", unit="frame"):
        lbl_path = ctx.parsing_dir / f"{paths[k].stem}.png"
        parsing = cv2.imread(str(lbl_path), cv2.IMREAD_UNCHANGED)
        if parsing is None:
            raise PreprocessError(f"{lbl_path}: missing or unreadable; run step 5 (parsing) first")
        frame = read_rgb(paths[k])
        frames.append(frame)
        masks.append(background_mask(parsing, int(round(MARGIN * frame.shape[1]))))
    image, seen = median_background(frames, masks)
    if not seen.any():
        raise PreprocessError(f"{ctx.parsing_dir}: no pixel is background in any frame; the background "
                              "image cannot be estimated (is the person filling the whole frame?)")
    save_image(ctx.out_dir / "bc.jpg", fill_unseen(image, seen))
    print(f"background: {100 * seen.mean():.0f}% of the pixels seen as background in {len(picks)} frames")
    note = camera_warning(frames, masks, (ctx.start or 0.0) + np.array(picks) / FPS)  # in the video's own seconds
    if note:
        print(note, file=sys.stderr)
    meta_path = ctx.out_dir / "video_meta.json"
    full_frame_path(ctx).unlink(missing_ok=True)  # from an earlier crop
    if meta_path.is_file():
        write_full_frame_background(ctx, json.loads(meta_path.read_text()))
