"""Loss terms and metrics against hand-computed values."""
import math

import numpy as np
import torch

from nerf import losses, metrics


def test_photometric_per_ray():
    pred = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    gt = torch.tensor([[0.3, 0.0, 0.0], [1.0, 1.0, 1.0]])
    assert torch.allclose(losses.photometric(pred, gt), torch.tensor([0.03, 0.0]))


def test_semantic_ce():
    prob = torch.tensor([[0.7, 0.2, 0.1], [0.0, 0.0, 1.0]])
    ce = losses.semantic_ce(prob, torch.tensor([1, 0]), eps=1e-6)
    assert abs(ce[0].item() + math.log(0.2 + 1e-6)) < 1e-5
    assert abs(ce[1].item() + math.log(1e-6)) < 1e-3  # finite even for zero probability


def test_training_loss_terms():
    gt = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    sem = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    out = {"rgb": torch.zeros(2, 3), "rgb_coarse": gt.clone(), "sem": sem, "deform_l2": torch.tensor(2.0)}
    label = torch.tensor([0, 1])
    loss, per_ray, logs = losses.training_loss(out, gt, label, lambda_sem=0.1, lambda_deform=0.01)
    ce = -torch.log(torch.tensor([0.5, 0.75]) + 1e-6)
    assert torch.allclose(per_ray, torch.full((2,), 1 / 3) + 0.1 * ce)  # coarse pass exact: photo 1/3 per ray
    assert abs(loss.item() - (1 / 3 + 0.1 * ce.mean().item() + 0.02)) < 1e-6
    assert set(logs) == {"loss_photo", "loss_sem", "loss_deform", "loss"}
    loss0, per0, logs0 = losses.training_loss(out, gt, None, 0.1, 0.0)  # no parsing, no deformation term
    assert torch.allclose(per0, torch.full((2,), 1 / 3)) and set(logs0) == {"loss_photo", "loss"}


def test_psnr_and_mask():
    gt = torch.zeros(4, 4, 3)
    pred = gt.clone()
    pred[0, 0] = 0.1  # one pixel off by 0.1 in every channel
    assert abs(metrics.psnr(pred, gt) - (-10 * math.log10(0.01 / 16))) < 1e-6
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0, 0] = True
    assert abs(metrics.psnr(pred, gt, mask) - 20.0) < 1e-6
    assert math.isnan(metrics.psnr(pred, gt, torch.zeros(4, 4, dtype=torch.bool)))
    assert metrics.psnr(np.zeros((2, 2, 3)), np.zeros((2, 2, 3))) == 100.0


def test_miou_over_present_classes():
    gt = torch.tensor([[0, 0, 1, 1]])
    pred = torch.tensor([[0, 1, 1, 1]])
    # class 0: inter 1, union 2 -> 0.5; class 1: inter 2, union 3 -> 2/3; class 2 absent in both: ignored
    assert abs(metrics.miou(pred, gt, 3) - (0.5 + 2 / 3) / 2) < 1e-9
    assert metrics.miou(gt, gt, 5) == 1.0
    names = ["background", "face", "hands"]  # a hand (never trained) is left out of class_miou
    assert metrics.class_miou(np.array([0, 0, 1, 1]), np.array([0, 2, 1, 2]), names) == 1.0
    assert metrics.class_miou(np.array([0, 0, 1, 1]), np.array([0, 2, 1, 2]), names[:2] + ["ears"]) < 1.0


def test_region_psnr_by_name():
    gt = torch.zeros(2, 2, 3)
    pred = gt.clone()
    pred[1, 1] = 0.1
    parsing = torch.tensor([[0, 0], [7, 7]])
    out = metrics.region_psnr(pred, gt, parsing, ["background", "face", "brows", "eyes", "ears", "nose",
                                                  "inner_mouth", "lips"])
    assert set(out) == {"background", "lips"}
    assert out["background"] == 100.0 and abs(out["lips"] - (-10 * math.log10(0.005))) < 1e-6


def test_ssim():
    rng = np.random.default_rng(0)
    img = rng.random((32, 32, 3))
    assert abs(metrics.ssim(img, img) - 1.0) < 1e-9
    noisy = np.clip(img + rng.normal(0, 0.2, img.shape), 0, 1)
    assert metrics.ssim(torch.from_numpy(noisy), img) < 0.9
