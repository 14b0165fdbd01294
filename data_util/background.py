"""Step 6: the static background image `bc.jpg`.

Each pixel is the median of its colour over the frames where the parsing (step 5) calls it background, with the
person mask grown by MARGIN of the image size first (so the soft edge of hair and shoulders does not bleed in).
Up to MAX_FRAMES frames spread over the clip are used. Pixels that are never background (always behind the
person), or are in under median.MIN_SEEN of the frames, take the colour of the nearest pixel that was.
When step 3 cropped the video, the step also writes the full-frame background bc_full.jpg (data_util.full_frame).
A camera that moves (the background drifting between the sampled frames: data_util.camera_motion) gets a warning,
unless step 3 held it still (data_util.stabilise).
"""
from __future__ import annotations

import json
import sys

import cv2
import numpy as np
from tqdm import tqdm

from .camera_motion import camera_warning
from .context import FPS, StepContext
from .full_frame import full_frame_path, write_full_frame_background
from common.errors import PreprocessError
from common.fileio import save_image
from .landmarks import read_rgb
from .median import background_mask, fill_unseen, median_background

MAX_FRAMES = 64
MARGIN = 0.02  # person mask dilation, fraction of the image width


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
    meta_path = ctx.out_dir / "video_meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if not meta.get("stabilised"):  # (step 3 measured and undid the camera's motion on every whole frame)
        note = camera_warning(frames, masks, (ctx.start or 0.0) + np.array(picks) / FPS)  # in the video's seconds
        if note:
            print(note, file=sys.stderr)
    full_frame_path(ctx).unlink(missing_ok=True)  # from an earlier crop
    if meta:
        write_full_frame_background(ctx, meta)
