"""Image and segmentation metrics as pure functions (tensors or arrays; images float in [0, 1])."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from common.constants import UNTRAINED_CLASSES, class_ids

ArrayLike = Tensor | np.ndarray


def _t(a: ArrayLike) -> Tensor:
    return a if isinstance(a, Tensor) else torch.from_numpy(np.asarray(a))


def mse_to_psnr(mse: float) -> float:
    return -10.0 * math.log10(max(mse, 1e-10))


def batch_psnr(pred: Tensor, gt: Tensor) -> float:
    """PSNR in dB of a batch of colours [N,3] (the training log's psnr_train)."""
    return mse_to_psnr(float(((pred.detach().float() - gt) ** 2).mean()))


def psnr(pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None = None) -> float:
    """PSNR in dB over all pixels, or over mask [...] (bool, image shape without channels). NaN if mask empty."""
    pred, gt = _t(pred).double(), _t(gt).double()
    err = ((pred - gt) ** 2).mean(-1)  # [...] per pixel
    if mask is not None:
        err = err[_t(mask).bool()]
        if err.numel() == 0:
            return float("nan")
    return mse_to_psnr(float(err.mean()))


def miou(pred_lbl: ArrayLike, gt_lbl: ArrayLike, n_classes: int, ignore: list[int] | tuple = ()) -> float:
    """Mean intersection-over-union over the classes present in the ground truth or the prediction; pixels whose
    ground truth is one of `ignore` (classes never trained: a hand) are left out."""
    p, g = _t(pred_lbl).long().reshape(-1), _t(gt_lbl).long().reshape(-1)
    if len(ignore):
        keep = ~torch.isin(g, torch.tensor(list(ignore), dtype=g.dtype))
        p, g = p[keep], g[keep]
    inter = torch.bincount(g[p == g], minlength=n_classes)[:n_classes].double()
    area_p = torch.bincount(p, minlength=n_classes)[:n_classes].double()
    area_g = torch.bincount(g, minlength=n_classes)[:n_classes].double()
    union = area_p + area_g - inter
    present = union > 0
    if not bool(present.any()):
        return float("nan")
    return float((inter[present] / union[present]).mean())


def class_miou(pred_lbl: ArrayLike, gt_lbl: ArrayLike, class_names: list[str]) -> float:
    """miou over a dataset's classes, the untrained ones (UNTRAINED_CLASSES: hands, filled edges) left out."""
    return miou(pred_lbl, gt_lbl, len(class_names), class_ids(class_names, UNTRAINED_CLASSES))


def region_psnr(pred: ArrayLike, gt: ArrayLike, parsing: ArrayLike, class_names: list[str]) -> dict[str, float]:
    """PSNR per semantic region {class name: dB}: pred, gt [H,W,3], parsing [H,W]; classes absent are left out."""
    par = _t(parsing).long()
    out = {}
    for c, name in enumerate(class_names):
        mask = par == c
        if bool(mask.any()):
            out[name] = psnr(pred, gt, mask)
    return out


def ssim(pred: ArrayLike, gt: ArrayLike) -> float:
    """Structural similarity of two RGB images [H,W,3] in [0,1] (skimage, Gaussian-free 7x7 windows)."""
    from skimage.metrics import structural_similarity

    p = _t(pred).detach().cpu().double().numpy()
    g = _t(gt).detach().cpu().double().numpy()
    return float(structural_similarity(p, g, channel_axis=-1, data_range=1.0))
