"""Volume-rendering functions against hand-computed examples."""
import math

import torch

from nerf import rendering as R


def test_two_samples_exact_weights():
    sigma = torch.tensor([[1.0, 2.0]])
    t = torch.tensor([[1.0, 1.5]])
    far = torch.tensor([2.25])
    w, trans = R.render_weights(sigma, t, far)
    # deltas 0.5 and 0.75 (last interval ends at far): alpha1 = 1-e^-0.5, alpha2 = 1-e^-1.5
    a1, a2 = 1 - math.exp(-0.5), 1 - math.exp(-1.5)
    assert torch.allclose(w, torch.tensor([[a1, (1 - a1) * a2]]), atol=1e-6)
    assert abs(trans.item() - math.exp(-2.0)) < 1e-6
    assert abs(w.sum().item() + trans.item() - 1) < 1e-6
    rgb = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]])
    bg = torch.tensor([[0.0, 0, 1.0]])
    out = R.composite(w, rgb, bg, trans)
    assert torch.allclose(out, torch.tensor([[a1, (1 - a1) * a2, math.exp(-2.0)]]), atol=1e-6)


def test_ray_norm_scales_deltas():
    sigma, t, far = torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 1.5]]), torch.tensor([2.25])
    w1, _ = R.render_weights(sigma * 2, t, far)
    w2, _ = R.render_weights(sigma, t, far, ray_norm=torch.tensor([2.0]))
    assert torch.allclose(w1, w2)


def test_opaque_first_sample_hides_background():
    sigma = torch.tensor([[1e4, 5.0, 5.0]])
    t = torch.tensor([[0.1, 0.2, 0.3]])
    w, trans = R.render_weights(sigma, t, torch.tensor([0.4]))
    assert abs(w[0, 0].item() - 1) < 1e-6 and w[0, 1:].abs().max() < 1e-6 and trans.item() < 1e-6
    out = R.composite(w, torch.tensor([[[0.2, 0.4, 0.6]] * 3]), torch.ones(1, 3), trans)
    assert torch.allclose(out, torch.tensor([[0.2, 0.4, 0.6]]), atol=1e-5)


def test_zero_density_shows_background():
    w, trans = R.render_weights(torch.zeros(4, 8), R.stratified_samples(torch.ones(4), torch.full((4,), 2.0), 8,
                                                                       True), torch.full((4,), 2.0))
    bg = torch.rand(4, 3)
    assert torch.equal(w, torch.zeros(4, 8)) and torch.allclose(trans, torch.ones(4))
    assert torch.allclose(R.composite(w, torch.rand(4, 8, 3), bg, trans), bg)


def test_stratified_samples_in_bins():
    near, far = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 2.5])
    t = R.stratified_samples(near, far, 4, perturb=False)
    assert torch.allclose(t[0], torch.tensor([1.25, 1.75, 2.25, 2.75]))
    tp = R.stratified_samples(near.repeat(500), far.repeat(500), 4, perturb=True)
    edges = near.repeat(500)[:, None] + (far - near).repeat(500)[:, None] * torch.arange(5) / 4
    assert ((tp >= edges[:, :-1]) & (tp <= edges[:, 1:])).all()
    assert (tp[:, 1:] > tp[:, :-1]).all()


def test_sample_pdf_concentrates_on_weights():
    bins = torch.linspace(0, 1, 11).expand(3, 11)
    weights = torch.zeros(3, 10)
    weights[:, 6] = 1.0  # all mass in [0.6, 0.7]
    t = R.sample_pdf(bins, weights, 64, perturb=True)
    assert t.shape == (3, 64) and (t[:, 1:] >= t[:, :-1]).all()
    inside = ((t >= 0.6) & (t <= 0.7)).float().mean()
    assert inside > 0.95
    t_det = R.sample_pdf(bins, weights, 16, perturb=False)
    assert ((t_det >= 0.6) & (t_det <= 0.7)).all()


def test_semantic_distribution_sums_to_one_with_background_mass():
    sigma = torch.tensor([[0.5, 1.0, 0.0]])
    t = torch.tensor([[0.0, 1.0, 2.0]])
    w, trans = R.render_weights(sigma, t, torch.tensor([3.0]))
    logits = torch.tensor([[[0.0, 10.0, -10.0], [0.0, -10.0, 10.0], [5.0, 0.0, 0.0]]])
    s = R.semantic_distribution(w, logits, trans)
    assert abs(s.sum().item() - 1) < 1e-5
    assert s[0, 0].item() >= trans.item() - 1e-6  # background class carries the transmittance
    assert abs(s[0, 1].item() - w[0, 0].item()) < 1e-3 and abs(s[0, 2].item() - w[0, 1].item()) < 1e-3
