"""Per-frame corrections of the training frames' mouth-shape input, learned with the field (train key mouth_refine).

The field is taught each training frame's mouth shape as the landmarks measure it (nerf/mouth_shape.py). That
measurement is noisy: on the 24 s sample, mediapipe's inner-lip gap and lip width scatter about the truth by 0.1 and
0.25 of their spread over the clip (about 0.4 px of lip placement at 128 px), so the field is told slightly wrong
shapes and learns a mouth blurred by that scatter. Told the truth instead, the same protocol draws the held-out inner
mouth at 24.2 dB instead of 21.3 (benchmarks/NOTES.md, 2026-12-06, sixth session). The frame itself says which
shape it shows: each training frame's input gets an offset, learned from the photometric loss like the field's
weights (a latent code per frame, as in GLO / NeRF-W, but 2 numbers with a known meaning), bounded to +-`bound`
standard deviations of that output over the training frames (tanh), so it can undo the measurement's noise and not
turn into a free per-frame code that learns each frame by heart.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from common.constants import MOUTH_CLASSES, class_ids
from nerf.mouth_shape import MouthPredictor, teacher_note, teacher_shapes, teacher_shares

LR_MULT = 0.1  # the offsets' learning rate relative to the field's: each frame's gradient comes from its few rays


class MouthRefinement(nn.Module):
    """shapes [F,2] taught to the field (opening, width), std [2] their spread over the training frames, bound in
    units of that spread, refined: which outputs get offsets -> `forward(frames [U]) -> [U,2]` the corrected shapes
    of those frames."""

    def __init__(self, shapes: Tensor, std: Tensor, bound: float, refined: tuple[bool, bool] = (True, True)):
        super().__init__()
        self.register_buffer("teacher", shapes.float().clone())  # [F,2]
        self.register_buffer("std", std.float().reshape(1, 2).clone())  # [1,2]
        self.register_buffer("scale", bound * self.std * torch.tensor([refined], dtype=torch.float32))  # [1,2]
        self.raw = nn.Parameter(torch.zeros_like(self.teacher))  # [F,2], through tanh
        self.bound, self.refined = bound, tuple(refined)

    def offsets(self, frames: Tensor | None = None) -> Tensor:  # [U,2] (all frames when None)
        raw = self.raw if frames is None else self.raw[frames]
        return self.scale * torch.tanh(raw)

    def forward(self, frames: Tensor, learns: Tensor | None = None) -> Tensor:  # [U] frame indices -> [U,2]
        """learns [U] bool: rows whose offsets get gradients (the others see them detached); None: all."""
        off = self.offsets(frames)
        if learns is not None:
            off = torch.where(learns[:, None], off, off.detach())
        return self.teacher[frames] + off

    def shapes(self) -> Tensor:  # [F,2] every training frame's corrected shape
        return (self.teacher + self.offsets()).detach()

    def describe(self) -> str:
        """One line: how far the corrections moved, in each output's spread over the training frames."""
        off = self.offsets().detach().abs()  # [F,2]
        parts = [f"{name} mean |offset| {float(off[:, j].mean() / self.std[0, j]):.3f} std, "
                 f"{float((off[:, j] >= 0.95 * self.scale[0, j]).float().mean()):.0%} of the frames at the bound"
                 for j, name in enumerate(("opening", "width")) if self.refined[j]]
        return f"mouth input corrected per training frame (bound {self.bound:g} std): " + "; ".join(parts)


def frame_rows(frame: Tensor, cls: Tensor, class_names: list[str]) -> tuple[Tensor, Tensor, Tensor]:
    """A batch's rays -> (frames [U], learns [U] bool, inv [N]): one row per frame and kind of ray, mouth (lips,
    inner mouth) or not, so that only the mouth's rays move the offsets; with other rays free to move them, a frame's
    two numbers also learnt what the torso did in that frame (uniform sampling, one seed: torso 17.5 dB instead of
    23; benchmarks/NOTES.md). Without class labels (cls -1) every ray counts as a mouth ray."""
    ids = class_ids(class_names, MOUTH_CLASSES)
    mouth = torch.isin(cls, torch.tensor(ids, dtype=cls.dtype)) | (cls < 0)
    rows, inv = (frame * 2 + mouth.long()).unique(return_inverse=True)
    return rows // 2, rows % 2 == 1, inv


def training_shapes(mouth: MouthPredictor | None, measured: Tensor | None, teacher: str, mix: float,
                    refine: float) -> tuple[Tensor | None, MouthRefinement | None, str]:
    """The mouth shapes [F,2] the training frames are taught (train.mouth_teacher), their refinement (None when
    train.mouth_refine is 0 or no output is taught its measured shape) and a line for the log ("" without the
    input). Only outputs taught the measured shape are refined: a held-out prediction is meant to be as wrong as the
    audio leaves it."""
    if mouth is None:
        return None, None, ""
    shares = teacher_shares(teacher, mix, mouth.fit_info["cv_r"])
    taught = teacher_shapes(shares, measured, torch.from_numpy(mouth.fit_info["held_out"]).float())
    refined = tuple(refine > 0 and s == 0 for s in shares)
    module = MouthRefinement(taught, mouth.shape_std, refine, refined) if any(refined) else None
    return taught, module, f"{mouth.describe()}; {teacher_note(shares)}"
