"""SSPNeRF: output shapes per backbone and ablation, audio codes, pose6, chunked rendering, empty-space skipping,
and a tiny optimisation on a static ball scene."""
import math

import pytest
import torch

from nerf import losses
from nerf.model import ModelConfig, RenderConfig, SSPNeRF, pose6

AABB = torch.tensor([-0.4, -0.4, -0.4, 0.4, 0.4, 0.4])
SMALL = dict(mlp_width=32, mlp_depth=4, hash_levels=8, hash_log2_table=12, hash_max_res=128)
FAST = dict(n_samples=16, n_importance=16, hash_samples=32, occ_res=16, occ_every=1)


def make(backbone="hash", aud_dim=13, n_classes=11, **kw):
    mc = ModelConfig(backbone=backbone, **{**SMALL, **{k: v for k, v in kw.items() if hasattr(ModelConfig, k)}})
    rc = RenderConfig(**{**FAST, **{k: v for k, v in kw.items() if hasattr(RenderConfig, k)}})
    return SSPNeRF(mc, rc, aud_dim, n_classes, AABB, [8, 9])


def rays(n, seed=0):
    """Rays from a camera at z=1 looking down -z (directions with camera-space z = -1, not unit length)."""
    g = torch.Generator().manual_seed(seed)
    o = torch.tensor([0.0, 0.0, 1.0]).expand(n, 3).clone()
    d = torch.cat([(torch.rand(n, 2, generator=g) - 0.5) * 0.6, -torch.ones(n, 1)], -1)
    return o, d, torch.full((n,), 0.6), torch.full((n,), 1.4)


@pytest.mark.parametrize("backbone", ["hash", "mlp"])
@pytest.mark.parametrize("flags", [{}, {"semantic": False}, {"deform": False}], ids=["full", "no_sem", "no_def"])
def test_render_rays_shapes(backbone, flags):
    torch.manual_seed(0)
    model = make(backbone, **flags)
    codes = model.audio_codes(torch.randn(2, 9, 16, 13), use_attention=True)
    assert codes.shape == (2, 64)
    o, d, near, far = rays(12)
    out = model.render_rays(o, d, near, far, codes[torch.arange(12) % 2], torch.randn(12, 6) * 0.1,
                            torch.rand(12, 3), perturb=True)
    assert out["rgb"].shape == (12, 3) and out["depth"].shape == (12,) and out["acc"].shape == (12,)
    assert out["deform_l2"].dim() == 0
    if flags.get("semantic", True):
        assert out["sem"].shape == (12, 11) and torch.allclose(out["sem"].sum(-1), torch.ones(12), atol=1e-5)
    else:
        assert "sem" not in out
    assert ("rgb_coarse" in out) == (backbone == "mlp")
    assert ("sem_coarse" in out) == (backbone == "mlp" and flags.get("semantic", True))
    assert (model.deformation is None) == (flags.get("deform") is False)
    loss = out["rgb"].sum() + out["deform_l2"] + (out["sem"][:, 1].sum() if "sem" in out else 0)
    loss.backward()


def test_audio_codes_without_attention_use_the_centre_window():
    model = make()
    aud = torch.randn(3, 9, 16, 13)
    c = model.audio_codes(aud, use_attention=False)
    assert torch.allclose(c, model.audio_net(aud[:, 4]), atol=1e-6)


def test_pose6_frontal_is_small_and_continuous():
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))
    c2w = torch.eye(4) @ flip
    c2w[:3, 3] = torch.tensor([0.0, 0.0, 0.5])
    p = pose6(c2w)
    assert p.shape == (6,) and p[:3].abs().max() < 1e-6 and torch.allclose(p[3:], torch.tensor([0.0, 0, 0.5]))
    ang = 0.1
    rz = torch.tensor([[math.cos(ang), -math.sin(ang), 0], [math.sin(ang), math.cos(ang), 0], [0, 0, 1.0]])
    c2w2 = c2w.clone()
    c2w2[:3, :3] = rz @ c2w[:3, :3]
    batch = pose6(torch.stack([c2w, c2w2]))
    assert batch.shape == (2, 6) and abs(batch[1, :3].norm().item() - ang) < 1e-5


def test_render_image_matches_render_rays_and_chunks():
    torch.manual_seed(0)
    model = make("hash").eval()
    o, d, near, far = rays(50)
    code, pose, bg = torch.randn(64), torch.zeros(6), torch.rand(50, 3)
    img = model.render_image(o, d, near, far, code, pose, bg, chunk=7)
    with torch.no_grad():
        ref = model.render_rays(o, d, near, far, code.expand(50, -1), pose.expand(50, -1), bg, perturb=False)
    assert set(img) == {"rgb", "depth", "acc", "sem"}
    for k in img:
        assert torch.allclose(img[k], ref[k], atol=1e-5), k


def _ball_model(backbone="hash", **kw):
    """A model whose density is a dense ball of radius 0.2 and whose semantics say torso (class 9) below
    y = 0.1 and face (class 1) above (the field's outputs are replaced by hand)."""
    model = make(backbone, occ_thresh=0.01, **kw)
    fld = model.field

    def density_and_semantics(x, aud):
        logits = torch.zeros(x.shape[0], 11)
        logits[:, 9] = torch.where(x[:, 1] > 0.1, 20.0, -20.0)
        logits[:, 1] = -logits[:, 9]
        return torch.where(x.norm(dim=-1) < 0.2, 200.0, 0.0), logits

    orig = fld.forward

    def forward(x, d, aud):
        _, rgb, _ = orig(x, d, aud)
        sigma, logits = density_and_semantics(x, aud)
        return sigma, rgb, logits

    fld.density_and_semantics, fld.forward = density_and_semantics, forward
    fld.semantics = lambda x, aud: density_and_semantics(x, aud)[1]
    return model


def test_occupancy_skipping_keeps_the_image():
    torch.manual_seed(0)
    model = _ball_model().eval()
    o, d, near, far = rays(64)
    args = (o, d, near, far, torch.randn(64).expand(64, -1), torch.zeros(64, 6), torch.rand(64, 3))
    with torch.no_grad():
        full = model.render_rays(*args, perturb=False)
        model.update_occupancy(1)
        assert 0.02 < model.occupancy_share() < 0.5  # the ball (dilated) only
        skipped = model.render_rays(*args, perturb=False)
    assert torch.allclose(full["rgb"], skipped["rgb"], atol=1e-4)
    assert torch.allclose(full["acc"], skipped["acc"], atol=1e-4)
    state = model.state_dict()
    assert "occ_mask" in state and bool(state["occ_ready"])
    model2 = make("hash")
    model2.load_state_dict(state)
    assert bool(model2.occ_ready) and torch.equal(model2.occ_mask, model.occ_mask)


@pytest.mark.parametrize("backbone,lr,factor", [("hash", 1e-2, 0.01), ("mlp", 5e-3, 0.1)])
def test_tiny_scene_optimises(backbone, lr, factor):
    """Rays through a red ball in front of a blue background: the loss falls by a clear factor in 50 steps."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = make(backbone, deform=False)
    o, d, near, far = rays(64, seed=1)
    dn = torch.nn.functional.normalize(d, dim=-1)
    closest = (o - (o * dn).sum(-1, keepdim=True) * dn).norm(dim=-1)
    hit = closest < 0.2
    assert 10 < hit.sum() < 54
    bg = torch.tensor([0.1, 0.2, 0.9]).expand(64, 3)
    gt = torch.where(hit[:, None], torch.tensor([0.9, 0.1, 0.1]), bg)
    label = hit.long()  # 1 = "face" on the ball, 0 = background
    aud = torch.randn(1, 9, 16, 13)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    hist = []
    for _ in range(50):
        code = model.audio_codes(aud, use_attention=False).expand(64, -1)
        out = model.render_rays(o, d, near, far, code, torch.zeros(64, 6), bg, perturb=True)
        photo = losses.photometric(out["rgb"], gt)
        if "rgb_coarse" in out:
            photo = photo + losses.photometric(out["rgb_coarse"], gt)
        loss = photo.mean() + 0.1 * losses.semantic_ce(out["sem"], label).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append(photo.mean().item())
    assert min(hist[-5:]) < factor * hist[0], hist[::10]


def test_gate_from_torso_grid_matches_field():
    torch.manual_seed(0)
    model = _ball_model(deform_gate="semantic")
    x = torch.rand(2000, 3) * 0.6 - 0.3
    aud = torch.zeros(2000, 64)
    exact = model._gate(model.field, x, aud)  # before the grid exists: the field itself
    assert set(exact.round().unique().tolist()) == {0.0, 1.0}
    model.update_occupancy(1)
    cached = model._gate(model.field, x, aud)
    far_from_edge = (x[:, 1] - 0.1).abs() > 0.06  # one 0.05 cell away from the boundary
    assert (cached[far_from_edge] - exact[far_from_edge]).abs().max() < 1e-3
    assert (cached - exact).abs().mean() < 0.1
