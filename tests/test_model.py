"""SSPNeRF through its Pipeline: output shapes per backbone and ablation, audio codes, pose6, chunked rendering,
empty-space skipping, old checkpoint states, and a tiny optimisation on a static ball scene."""
import math
import shutil

import pytest
import torch

from nerf import losses
from nerf.model import ModelConfig, pose6
from nerf.pipeline import ModelMeta, Pipeline, RenderConfig, build_pipeline, upgrade_state_dict

AABB = torch.tensor([-0.4, -0.4, -0.4, 0.4, 0.4, 0.4])
SMALL = dict(mlp_width=32, mlp_depth=4, hash_levels=8, hash_log2_table=12, hash_max_res=128,
             eyes=False, mouth=False, audio_code=True)  # the audio path alone; the eye input: tests/test_blinks.py,
# the mouth input: tests/test_mouth_shape.py
FAST = dict(n_samples=16, n_importance=16, hash_samples=32, occ_res=16, occ_every=1)


CLASSES = ["background", "face", "brows", "eyes", "ears", "nose", "inner_mouth", "lips", "neck", "torso", "hair"]


class _Cfg:
    def __init__(self, model, render):
        self.model, self.render = model, render


def make(backbone="hash", aud_dim=13, n_classes=11, **kw) -> Pipeline:
    mc = ModelConfig(backbone=backbone, **{**SMALL, **{k: v for k, v in kw.items() if hasattr(ModelConfig, k)}})
    rc = RenderConfig(**{**FAST, **{k: v for k, v in kw.items() if hasattr(RenderConfig, k)}})
    return build_pipeline(_Cfg(mc, rc), ModelMeta(aud_dim, CLASSES[:n_classes], AABB))


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
    codes = model.model.audio_codes(torch.randn(2, 9, 16, 13), use_attention=True)
    assert codes.shape == (2, 64)
    o, d, near, far = rays(12)
    out = model.render_rays(o, d, near, far, codes[torch.arange(12) % 2], torch.randn(12, 6) * 0.1,
                            torch.rand(12, 3), perturb=True)
    assert out["rgb"].shape == (12, 3) and out["acc"].shape == (12,)
    assert out["deform_l2"].dim() == 0
    if flags.get("semantic", True):
        assert out["sem"].shape == (12, 11) and torch.allclose(out["sem"].sum(-1), torch.ones(12), atol=1e-5)
    else:
        assert "sem" not in out
    assert ("rgb_coarse" in out) == (backbone == "mlp")
    assert ("sem_coarse" in out) == (backbone == "mlp" and flags.get("semantic", True))
    assert (model.model.deformation is None) == (flags.get("deform") is False)
    loss = out["rgb"].sum() + out["deform_l2"] + (out["sem"][:, 1].sum() if "sem" in out else 0)
    loss.backward()


def test_audio_codes_without_attention_use_the_centre_window():
    model = make().model
    aud = torch.randn(3, 9, 16, 13)
    c = model.audio_codes(aud, use_attention=False)
    assert torch.allclose(c, model.audio_net(aud[:, 4]), atol=1e-6)


def test_frame_codes_windows_and_attention():
    pipe = make()
    feats = torch.randn(7, 16, 13)
    plain = pipe.frame_codes(feats, use_attention=False)
    assert torch.allclose(plain, pipe.model.audio_net(feats), atol=1e-6)
    smoothed = pipe.frame_codes(feats, torch.tensor([0, 6]), use_attention=True, batch=1)
    win = torch.stack([feats[[0, 0, 0, 0, 0, 1, 2, 3, 4]], feats[[2, 3, 4, 5, 6, 6, 6, 6, 6]]])
    assert torch.allclose(smoothed, pipe.model.audio_codes(win, True), atol=1e-6)


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


def _amx() -> bool:
    from nerf import cpu_kernels

    return shutil.which("c++") is not None and cpu_kernels.load() is not None and cpu_kernels.mlp_amx_usable()


@pytest.mark.parametrize("precision,atol", [
    ("float32", 1e-5),
    pytest.param("bfloat16", 1e-3, marks=pytest.mark.skipif(not _amx(), reason="bfloat16 products need AMX-BF16"))])
def test_render_image_matches_render_rays_and_chunks(precision, atol):
    """One frame's code row (render_image: folded into the first layers' biases) and the same code on every ray
    agree; in bfloat16 products (cpu_mlp_precision, CPUs with AMX) the per-ray code is rounded to bfloat16 and the
    folded one not, hence the looser tolerance."""
    torch.manual_seed(0)
    model = make("hash", cpu_mlp_precision=precision).eval()
    o, d, near, far = rays(50)
    code, pose, bg = torch.randn(64), torch.zeros(6), torch.rand(50, 3)
    img = model.render_image(o, d, near, far, code, pose, bg, chunk=7)
    with torch.no_grad():
        ref = model.render_rays(o, d, near, far, code.expand(50, -1), pose.expand(50, -1), bg, perturb=False)
    assert set(img) == {"rgb", "acc", "sem"}
    for k in img:
        assert torch.allclose(img[k], ref[k], atol=atol), k


class BallField(torch.nn.Module):
    """An analytic field: a dense ball of radius 0.2, colour from the position, semantics torso (class 9) below
    y = 0.1 and face (class 1) above. Its feature is the point itself."""

    def density(self, x, aud):
        return torch.where(x.norm(dim=-1) < 0.2, 200.0, 0.0), x

    def semantics(self, x, aud):
        logits = torch.zeros(x.shape[0], 11)
        logits[:, 9] = torch.where(x[:, 1] > 0.1, 20.0, -20.0)
        logits[:, 1] = -logits[:, 9]
        return logits

    def density_and_semantics(self, x, aud):
        return self.density(x, aud)[0], self.semantics(x, aud)

    def colour(self, x, d, aud, semantics=True):
        return torch.sigmoid(x * 5), (self.semantics(x, aud) if semantics else None)


def _ball_model(backbone="hash", **kw):
    """A pipeline whose field is the analytic BallField (the model's deformation and estimator are the real ones)."""
    model = make(backbone, occ_thresh=0.01, **kw)
    model.model.field = BallField()
    return model


def test_occupancy_skipping_keeps_the_image():
    torch.manual_seed(0)
    model = _ball_model().eval()
    o, d, near, far = rays(64)
    args = (o, d, near, far, torch.randn(64).expand(64, -1), torch.zeros(64, 6), torch.rand(64, 3))
    with torch.no_grad():
        full = model.render_rays(*args, perturb=False)
        model.update_estimator(1)
        assert 0.02 < model.occupied_share() < 0.5  # the ball (dilated) only
        skipped = model.render_rays(*args, perturb=False)
    assert torch.allclose(full["rgb"], skipped["rgb"], atol=1e-4)
    assert torch.allclose(full["acc"], skipped["acc"], atol=1e-4)
    state = model.state_dict()
    assert "estimator.mask" in state and bool(state["estimator.is_ready"])
    model2 = _ball_model()
    model2.load_state_dict(state)
    assert model2.estimator.ready and torch.equal(model2.estimator.mask, model.estimator.mask)


@pytest.mark.parametrize("backbone", ["hash", "mlp"])
def test_state_from_before_the_estimator_split_loads(backbone):
    """A checkpoint's flat SSPNeRF state (occ_* buffers, mlp's field + field_fine) loads into the pipeline."""
    torch.manual_seed(0)
    new = make(backbone)
    old = {}
    for k, v in new.state_dict().items():
        k = k.replace("model.coarse_field.", "field.") if backbone == "mlp" and "coarse_field" in k else \
            k.replace("model.field.", "field_fine.") if backbone == "mlp" else k
        k = {"estimator.density": "occ_density", "estimator.mask": "occ_mask", "estimator.is_ready": "occ_ready",
             "estimator.aux": "occ_torso"}.get(k, k)
        if k != "estimator.aabb":
            old[k.removeprefix("model.")] = v
    assert "aabb" in old and ("field_fine.sigma.weight" in old) == (backbone == "mlp")
    assert upgrade_state_dict(old).keys() == new.state_dict().keys()
    again = make(backbone)
    again.load_state_dict(old)
    for k, v in new.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


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
        code = model.model.audio_codes(aud, use_attention=False).expand(64, -1)
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
    exact = model.model.torso_gate(x, aud, torso_lookup=model._torso_lookup())  # no grid yet: the field itself
    assert set(exact.round().unique().tolist()) == {0.0, 1.0}
    model.update_estimator(1)
    cached = model.model.torso_gate(x, aud, torso_lookup=model._torso_lookup())
    far_from_edge = (x[:, 1] - 0.1).abs() > 0.06  # one 0.05 cell away from the boundary
    assert (cached[far_from_edge] - exact[far_from_edge]).abs().max() < 1e-3
    assert (cached - exact).abs().mean() < 0.1


def test_height_and_torso_gate_adds_the_torso_above_the_jaw_line():
    """deform_gate height+torso: a point the semantic head calls torso deforms even above the jaw line (shoulders
    and collar that rise beside the chin), but not higher than two gate widths above it (ears, hair and cheeks stay
    with the head), a face point only where the height gate says so; height ignores the semantic head, semantic
    ignores the height. The neck is left to the height gate (not among its classes)."""
    # the ball's semantics: torso below y = 0.1, face above; the jaw line at 0.2, the torso's cap from 0.14 to 0.17
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.12, 0.0], [0.0, 0.185, 0.0], [0.0, 0.3, 0.0]])
    want = {"height": [0.0, 0.0, 0.0, 1.0], "height+torso": [0.0, 0.0, 1.0, 1.0], "semantic": [0.0, 1.0, 1.0, 1.0]}
    for gate, expected in want.items():
        model = _ball_model(deform_gate=gate, gate_jaw_y=0.2, gate_width=0.03).model
        got = model.torso_gate(pts, torch.zeros(4, 64))
        assert torch.allclose(got, torch.tensor(expected), atol=1e-6), (gate, got)
    meta = ModelMeta(13, CLASSES, AABB)
    assert meta.gate_classes("height+torso") == [CLASSES.index("torso")]
    assert meta.gate_classes("semantic") == [CLASSES.index("neck"), CLASSES.index("torso")]


def test_height_and_torso_gate_moves_only_points_the_head_is_sure_are_torso():
    """Below SURE_TORSO[0] the semantic part is 0 (an unsure point near the jaw stays with the head), from
    SURE_TORSO[1] it is 1."""
    from nerf.model import SURE_TORSO
    model = _ball_model(deform_gate="height+torso", gate_jaw_y=0.2, gate_width=0.03).model
    lo, hi = SURE_TORSO
    probs = torch.tensor([0.3, lo, (lo + hi) / 2, hi, 0.99])
    pts = torch.tensor([[0.0, 0.185, 0.0]]).expand(5, 3)  # above the jaw line, below the torso's cap
    got = model.torso_gate(pts, None, torso_lookup=lambda x: probs)
    assert torch.allclose(got, torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]), atol=1e-6), got


def test_a_semantic_gate_below_its_floor_leaves_the_point_to_the_head():
    """A softmax is never 0: torso probabilities at or below GATE_FLOOR count as 0, so the deformation network
    runs only on the points the gate moves (not on every point for a hundredth of an offset)."""
    from nerf.model import GATE_FLOOR
    model = _ball_model(deform_gate="semantic").model
    pts = torch.zeros(4, 3)
    probs = torch.tensor([GATE_FLOOR / 2, GATE_FLOOR, 2 * GATE_FLOOR, 0.5])
    got = model.torso_gate(pts, None, torso_lookup=lambda x: probs)
    assert torch.equal(got, torch.tensor([0.0, 0.0, 2 * GATE_FLOOR, 0.5]))
    seen = []
    model.deformation.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    model.deform(pts, torch.zeros(4, 64), torch.zeros(4, 6), torso_lookup=lambda x: probs)
    assert seen == [2]


def test_height_and_torso_gate_asks_the_semantic_head_only_between_its_cap_and_the_jaw():
    """Above the cap and fully below the jaw the gate is the height gate's: the semantic head (a whole trunk pass
    with the mlp backbone) is asked only for the points in between."""
    model = _ball_model(deform_gate="height+torso", gate_jaw_y=0.2, gate_width=0.03).model
    asked = []

    def lookup(x):
        asked.append(x[:, 1].clone())
        return torch.ones(x.shape[0])

    y = torch.tensor([0.0, 0.13, 0.15, 0.185, 0.21, 0.25])  # above the cap, cap, band x2, jaw ramp, below the jaw
    got = model.torso_gate(torch.stack([torch.zeros(6), y, torch.zeros(6)], 1), None, torso_lookup=lookup)
    assert torch.allclose(asked[0], torch.tensor([0.15, 0.185, 0.21]))
    assert got[0] == 0 and got[1] == 0 and got[3] == 1 and got[5] == 1


@pytest.mark.parametrize("gate", ["height", "height+torso", "semantic"])
def test_estimators_torso_warp_moves_exactly_the_points_the_gate_moves(gate):
    """The estimator's warp rules points out by their height before it gathers them: it must still pick exactly the
    `todo` samples whose gate is above the floor (as torso_gate says on every sample) and move them by the torso
    motion."""
    from nerf.model import GATE_FLOOR
    torch.manual_seed(0)
    model = _ball_model(deform_gate=gate, gate_jaw_y=0.2, gate_width=0.03).model
    n, s = 6, 40
    pts = torch.rand(n, s, 3) * 0.6 - 0.3
    pts[..., 1] = torch.linspace(-0.1, 0.35, s)  # every ray crosses the cap, the band and the jaw line
    todo = torch.rand(n, s) < 0.7
    pose = torch.randn(n, 6) * 0.1

    def lookup(x):  # torso on the x > 0 half: the band between the cap and the jaw line moves there only
        return (x[:, 0] > 0).float()

    idx, moved = model.torso_warp(pose, lookup)(pts, todo)
    flat = pts.flatten(0, 1)
    want = (todo.reshape(-1) & (model.torso_gate(flat, None, torso_lookup=lookup) > GATE_FLOOR)).nonzero()[:, 0]
    assert torch.equal(idx, want) and 0 < idx.numel() < todo.sum()
    motion = model.deformation.frame_motion(pose)
    ray = idx // s
    per_point = tuple(None if m is None else m[ray] for m in motion)
    expected = flat[idx] + model.deformation.torso_motion(flat[idx], pose[ray], per_point)
    assert torch.allclose(moved, expected, atol=1e-6)
