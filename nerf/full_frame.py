"""render.py --full_frame: the rendered square put back into the original video's frame.

Preprocessing cropped a square (x, y, side) out of the video at its display size (square pixels) and recorded it in
video_meta.json; step 6 wrote the median of the full frames as bc_full.jpg. Each rendered frame is resized to
side x side, pasted at (x, y) over bc_full.jpg, and blended into it over a band of SEAM of the side, inside the
crop, along each crop edge that is not the frame's own edge. Outside the crop the output is bc_full.jpg exactly.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

SEAM = 0.04  # width of the blend band, as a share of the crop's side


def seam_weights(side: int, edges: dict[str, bool], band: int) -> np.ndarray:
    """float32 [side,side]: 1 inside, ramping to 0 at the crop edges named True in edges (top/bottom/left/right)."""
    ramp = np.minimum(np.arange(side, dtype=np.float32) + 0.5, band) / max(band, 1)  # distance to edge, capped
    rows, cols = np.ones(side, np.float32), np.ones(side, np.float32)
    if edges["top"]:
        rows = np.minimum(rows, ramp)
    if edges["bottom"]:
        rows = np.minimum(rows, ramp[::-1])
    if edges["left"]:
        cols = np.minimum(cols, ramp)
    if edges["right"]:
        cols = np.minimum(cols, ramp[::-1])
    return np.minimum(rows[:, None], cols[None, :])


class FullFrame:
    """Pastes rendered squares into the full frame of the subject's video."""

    def __init__(self, background: np.ndarray, crop: tuple[int, int, int]):
        """background: uint8 [H,W,3]; crop: (x, y, side) of the square in it."""
        self.background = background
        self.x, self.y, self.side = crop
        h, w = background.shape[:2]
        edges = {"top": self.y > 0, "bottom": self.y + self.side < h, "left": self.x > 0,
                 "right": self.x + self.side < w}
        self.weights = seam_weights(self.side, edges, max(1, round(SEAM * self.side)))[..., None]  # [side,side,1]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the output frames."""
        return self.background.shape[1], self.background.shape[0]

    @classmethod
    def from_dataset(cls, datadir: str | Path) -> "FullFrame":
        """From datadir's video_meta.json and bc_full.jpg; ValueError (one line, naming the file) when missing."""
        datadir = Path(datadir)
        meta_path = datadir / "video_meta.json"
        redo = f"run `bash process_data.sh {datadir.name} --step 3 --force` (it redoes the later steps too)"
        if not meta_path.is_file():
            raise ValueError(f"{meta_path}: missing, so the original frame is unknown; --full_frame needs a folder "
                             f"made by process_data.sh: {redo}")
        meta = json.loads(meta_path.read_text())
        if "crop" not in meta or "display_size" not in meta:
            raise ValueError(f"{meta_path}: no crop recorded (processed before --full_frame existed); {redo}")
        width, height = meta["display_size"]
        crop = meta["crop"] or {"x": 0, "y": 0, "side": min(width, height)}
        if meta["crop"] is None:  # a square video: the render is the whole frame
            return cls(np.zeros((height, width, 3), np.uint8), (crop["x"], crop["y"], crop["side"]))
        bg_path = datadir / "bc_full.jpg"
        image = cv2.imread(str(bg_path), cv2.IMREAD_COLOR) if bg_path.is_file() else None
        if image is None:
            raise ValueError(f"{bg_path}: missing or unreadable (processed before --full_frame existed); run "
                             f"`bash process_data.sh {datadir.name} --step 6 --force` to write it")
        if image.shape[:2] != (height, width):
            raise ValueError(f"{bg_path}: {image.shape[1]}x{image.shape[0]}, but video_meta.json says the frame is "
                             f"{width}x{height}; run `bash process_data.sh {datadir.name} --step 6 --force`")
        return cls(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), (crop["x"], crop["y"], crop["side"]))

    def paste(self, square: np.ndarray) -> np.ndarray:
        """uint8 [h,h,3] rendered square -> uint8 [H,W,3] full frame."""
        s = self.side
        interp = cv2.INTER_CUBIC if square.shape[0] < s else cv2.INTER_AREA
        big = cv2.resize(square, (s, s), interpolation=interp).astype(np.float32)
        out = self.background.copy()
        under = out[self.y:self.y + s, self.x:self.x + s].astype(np.float32)
        blended = self.weights * big + (1 - self.weights) * under
        out[self.y:self.y + s, self.x:self.x + s] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
        return out
