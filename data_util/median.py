"""A background from many frames: the person masked out, the per-pixel median of what is left, and a colour for the
pixels no frame showed (step 6's bc.jpg, step 3's filling of the edges a stabilised frame leaves empty)."""
from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

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
