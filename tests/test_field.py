"""Field outputs, torso deformation gating and the audio networks."""
import pytest
import numpy as np
import torch

from nerf.audio import AudioAttNet, AudioNet
from nerf.deformation import TorsoDeformation, height_gate
from nerf.field import HashField, MLPField, density_activation

AABB = torch.tensor([-0.3, -0.3, -0.3, 0.3, 0.3, 0.3])
GROUPS = [i * 8 // 63 for i in range(63)] + [8]  # 63 audio channels in 8 groups, the 64th (eye) its own


def _region_field(backbone: str):
    torch.manual_seed(0)
    if backbone == "mlp":
        return MLPField(64, 11, width=32, depth=4, skip=2, cond_groups=GROUPS)
    return HashField(AABB, 64, 11, n_levels=4, log2_table=10, max_res=64, cond_groups=GROUPS)


@pytest.mark.parametrize("backbone", ["mlp", "hash"])
def test_region_attention_shared_code_matches_per_point(backbone):
    """One condition row for all points (a rendered frame, folded per group) = the same row repeated per point."""
    fld = _region_field(backbone)
    with torch.no_grad():
        fld.gates.net.weight.normal_()
        fld.gates.net.bias.normal_()
    x, d = torch.rand(40, 3) * 0.4 - 0.2, torch.nn.functional.normalize(torch.randn(40, 3), dim=-1)
    code = torch.randn(1, 64)
    one, many = fld(x, d, code), fld(x, d, code.expand(40, -1).contiguous())
    for a, b in zip(one, many):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("backbone", ["mlp", "hash"])
def test_region_attention_closed_gates_ignore_the_audio(backbone):
    """Where the audio gates are shut a point's output does not change with the audio code, but still does with
    the eye input (its own group); with the gates open it changes with both."""
    fld = _region_field(backbone)
    x, d = torch.rand(40, 3) * 0.4 - 0.2, torch.nn.functional.normalize(torch.randn(40, 3), dim=-1)
    base, other_audio, other_eye = torch.randn(1, 64), torch.randn(1, 64), torch.randn(1, 64)
    other_audio[0, 63], other_eye[0, :63] = base[0, 63], base[0, :63]
    with torch.no_grad():
        fld.gates.net.bias.fill_(-40.0)
        fld.gates.net.bias[8] = 40.0
    rgb = lambda c: fld(x, d, c)[0] if backbone == "mlp" else fld(x, d, c)[1]  # noqa: E731 (mlp colour ignores it)
    assert torch.allclose(rgb(base), rgb(other_audio), atol=1e-6)
    assert (rgb(base) - rgb(other_eye)).abs().max() > 1e-4
    with torch.no_grad():
        fld.gates.net.bias.fill_(40.0)
    assert (rgb(base) - rgb(other_audio)).abs().max() > 1e-4


@pytest.mark.parametrize("make", [
    lambda: MLPField(64, 11, width=32, depth=4, skip=2),
    lambda: HashField(AABB, 64, 11, n_levels=4, log2_table=10, max_res=64),
    lambda: MLPField(64, 11, width=32, depth=4, skip=2, cond_groups=GROUPS),
    lambda: HashField(AABB, 64, 11, n_levels=4, log2_table=10, max_res=64, cond_groups=GROUPS),
], ids=["mlp", "hash", "mlp-region", "hash-region"])
def test_field_outputs(make):
    torch.manual_seed(0)
    fld = make()
    x, d, a = torch.rand(50, 3) * 0.4 - 0.2, torch.nn.functional.normalize(torch.randn(50, 3), dim=-1), \
        torch.randn(50, 64)
    sigma, rgb, sem = fld(x, d, a)
    assert sigma.shape == (50,) and rgb.shape == (50, 3) and sem.shape == (50, 11)
    assert (sigma >= 0).all() and (rgb > 0).all() and (rgb < 1).all()
    assert torch.allclose(fld.semantics(x, a), sem, atol=1e-6)
    (sigma.sum() + rgb.sum() + sem.sum()).backward()
    assert all(p.grad is not None for p in fld.parameters() if p.requires_grad)


@pytest.mark.parametrize("backbone", ["mlp", "hash"])
def test_colour_without_view_directions_is_the_same_from_every_side(backbone):
    """view_dirs = none: a point's colour does not change with the direction it is seen from (so nothing can be
    tied to a head pose); with view directions (all) it does. Density and semantics never depend on it."""
    torch.manual_seed(0)
    x, d = torch.rand(40, 3) * 0.4 - 0.2, torch.nn.functional.normalize(torch.randn(40, 3), dim=-1)
    code = torch.randn(1, 64)
    for view_dirs in ("all", "none"):
        fld = (MLPField(64, 11, width=32, depth=4, skip=2, view_dirs=view_dirs) if backbone == "mlp" else
               HashField(AABB, 64, 11, n_levels=4, log2_table=10, max_res=64, view_dirs=view_dirs))
        (s1, rgb1, sem1), (s2, rgb2, sem2) = fld(x, d, code), fld(x, -d, code)
        assert torch.equal(s1, s2) and torch.equal(sem1, sem2)
        changed = (rgb1 - rgb2).abs().max().item()
        assert (changed > 1e-4) if view_dirs == "all" else (changed == 0.0)


@pytest.mark.parametrize("backbone", ["mlp", "hash"])
def test_view_directions_at_the_eyes_only(backbone):
    """view_dirs = eyes: colour changes with the view direction at an eye centre, not at a mouth 3 eye widths
    below (weight exp(-d^2 / 2 r^2): ~1e-18 there), and it needs the eye region."""
    torch.manual_seed(0)
    fld = (MLPField(64, 11, width=32, depth=4, skip=2, cond_groups=GROUPS, eye_region=True, view_dirs="eyes")
           if backbone == "mlp" else
           HashField(AABB, 64, 11, n_levels=4, log2_table=10, max_res=64, cond_groups=GROUPS, eye_region=True,
                     view_dirs="eyes"))
    with torch.no_grad():
        fld.gates.eye_region.copy_(torch.tensor([[-0.05, -0.05, 0.0, 0.02], [0.05, -0.05, 0.0, 0.02]]))
    x = torch.tensor([[-0.05, -0.05, 0.0], [0.0, 0.13, 0.0]])  # an eye centre, the mouth
    d = torch.nn.functional.normalize(torch.randn(2, 3), dim=-1)
    code = torch.randn(1, 64)
    changed = (fld(x, d, code)[1] - fld(x, -d, code)[1]).abs().max(-1).values
    assert changed[0] > 1e-4 and changed[1] < 1e-7
    with pytest.raises(ValueError, match="eye region"):
        HashField(AABB, 64, 11, n_levels=4, log2_table=10, view_dirs="eyes")
    with pytest.raises(ValueError, match="eye region"):
        MLPField(64, 11, width=32, depth=4, view_dirs="eyes")


def test_field_without_semantic_head():
    _, _, sem = HashField(AABB, 8, 0, n_levels=2, log2_table=8, max_res=16)(torch.zeros(3, 3), torch.ones(3, 3),
                                                                            torch.zeros(3, 8))
    assert sem is None


def test_density_activations():
    x = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    assert torch.allclose(density_activation(x, "trunc_exp"), x.exp())
    assert torch.allclose(density_activation(x, "softplus"), torch.nn.functional.softplus(x))
    with pytest.raises(ValueError, match="unknown density"):
        density_activation(x, "tanh")


def test_deformation_zero_for_head_points():
    torch.manual_seed(0)
    deform = TorsoDeformation(AABB, anchor="head")
    torch.nn.init.normal_(deform.out.weight, std=0.1)  # as if trained: a non-zero offset field
    x = torch.rand(20, 3) * 0.4 - 0.2
    pose = torch.randn(20, 6) * 0.1
    gate = torch.zeros(20)
    gate[10:] = 1.0  # first half head points, second half torso points
    dx, reg = deform(x, pose, gate)
    assert torch.equal(dx[:10], torch.zeros(10, 3))
    assert (dx[10:].norm(dim=-1) > 1e-4).all()
    assert abs(reg.item() - (dx ** 2).sum(-1).mean().item()) < 1e-7
    fresh, _ = TorsoDeformation(AABB, anchor="head")(x, pose, torch.ones(20))
    assert torch.equal(fresh, torch.zeros(20, 3))  # starts undeformed
    anchored, _ = TorsoDeformation(AABB)(x, pose, gate)
    assert torch.equal(anchored[:10], torch.zeros(10, 3))  # head points: no offset with the camera anchor either


def test_camera_anchor_keeps_torso_still_in_front_of_the_camera():
    """At initialisation a torso point maps to where it is relative to the camera (seen from the mean pose):
    the same camera-space point, seen under two head poses, lands on one canonical point."""
    from scipy.spatial.transform import Rotation

    from nerf.model import mean_head_translation, pose6

    def c2w_of(rot: Rotation, t: np.ndarray) -> torch.Tensor:  # head pose -> OpenGL camera-to-world
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = rot.as_matrix(), t
        return torch.tensor(np.linalg.inv(w2c) @ np.diag([1.0, -1, -1, 1]), dtype=torch.float32)

    poses = [(Rotation.from_euler("y", 14, degrees=True), np.array([0.01, 0.0, 0.6])),
             (Rotation.from_euler("xz", [-8, 10], degrees=True), np.array([-0.01, 0.02, 0.62]))]
    c2w = torch.stack([c2w_of(r, t) for r, t in poses])
    t_ref = mean_head_translation(c2w)
    assert torch.allclose(t_ref, torch.tensor([0.0, 0.01, 0.61]), atol=1e-5)
    deform = TorsoDeformation(AABB, anchor_t=t_ref)
    shoulder_cam = np.array([0.15, 0.25, 0.65])  # a torso point in camera space (OpenCV), the same in both frames
    canon = []
    for (rot, t), p6 in zip(poses, pose6(c2w)):
        x_head = torch.tensor(rot.inv().apply(shoulder_cam - t), dtype=torch.float32)[None]  # where the ray meets it
        dx, reg = deform(x_head, p6[None], torch.ones(1))
        canon.append(x_head + dx)
        assert reg.item() == 0.0  # the penalty is on the learned residual only
    assert torch.allclose(canon[0], canon[1], atol=1e-5)
    assert torch.allclose(canon[0], torch.tensor(shoulder_cam, dtype=torch.float32) - t_ref, atol=1e-5)
    assert (canon[0] - torch.tensor(rot.inv().apply(shoulder_cam - t), dtype=torch.float32)).norm() > 0.02


def test_height_gate():
    x = torch.tensor([[0.0, -0.1, 0.0], [0.0, 0.09, 0.0], [0.0, 0.105, 0.0], [0.0, 0.2, 0.0]])
    g = height_gate(x, jaw_y=0.09, width=0.03)
    assert g[0] == 0 and g[1] == 0 and abs(g[2].item() - 0.5) < 1e-5 and g[3] == 1


@pytest.mark.parametrize("d", [29, 13])
def test_audio_nets(d):
    torch.manual_seed(0)
    net, att = AudioNet(d, 64), AudioAttNet(64, seq_len=9)
    codes = net(torch.randn(18, 16, d)).view(2, 9, 64)
    assert codes.shape == (2, 9, 64)
    w = att.weights(codes)
    assert w.shape == (2, 9) and torch.allclose(w.sum(-1), torch.ones(2)) and (w >= 0).all()
    out = att(codes)
    assert torch.allclose(out, (w[..., None] * codes).sum(1))
    with pytest.raises(ValueError, match="9 neighbouring"):
        att(codes[:, :5])


def test_rigid_torso_motion_learns_a_pose_dependent_shift_and_tilt():
    """The rigid part alone fits a torso that shifts with yaw and tilts with roll (as in the sample clip):
    offsets recovered to < 2% of their size, and zero for head points throughout."""
    from scipy.spatial.transform import Rotation

    torch.manual_seed(0)
    deform = TorsoDeformation(AABB, anchor="head", rigid=True)
    torch.nn.init.zeros_(deform.out.weight)
    x = torch.rand(256, 3) * 0.3 - 0.15
    pose = torch.zeros(256, 6)
    pose[:, 1], pose[:, 2] = torch.rand(256) * 0.5 - 0.25, torch.rand(256) * 0.4 - 0.2  # yaw, roll (rad)
    tilt = torch.tensor(Rotation.from_rotvec(np.c_[np.zeros(256), np.zeros(256), pose[:, 2].numpy() / 3])
                        .as_matrix(), dtype=torch.float32)
    target = (tilt @ x[..., None])[..., 0] + torch.stack([0.08 * pose[:, 1], torch.zeros(256), torch.zeros(256)], -1)
    opt = torch.optim.Adam(deform.rigid.parameters(), lr=3e-3)
    for _ in range(600):
        dx, _ = deform(x, pose, torch.ones(256))
        loss = ((x + dx - target) ** 2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    dx, _ = deform(x, pose, torch.ones(256))
    err = (x + dx - target).norm(dim=-1).mean() / (target - x).norm(dim=-1).mean()
    print(f"relative error {err:.4f}")
    assert err < 0.02, err
    head, _ = deform(x, pose, torch.zeros(256))
    assert torch.equal(head, torch.zeros(256, 3))



def test_rigid_torso_motion_is_the_identity_at_the_reference_pose():
    """Whatever its weights, the rigid part does not move the torso at the mean training pose (no free drift of
    the canonical torso); away from it, it does."""
    torch.manual_seed(0)
    ref = torch.tensor([0.01, -0.02, 0.03, 0.0, 0.02, -0.6])
    deform = TorsoDeformation(AABB, anchor="head", rigid=True, pose_ref=ref)
    for p in deform.rigid.parameters():
        torch.nn.init.normal_(p, std=0.5)
    x = torch.rand(64, 3) * 0.3 - 0.15
    at_ref = deform.torso_motion(x, ref.expand(64, 6))
    assert at_ref.abs().max() < 1e-6
    away = deform.torso_motion(x, (ref + torch.tensor([0.0, 0.2, 0.0, 0.0, 0.0, 0.0])).expand(64, 6))
    assert away.norm(dim=-1).mean() > 1e-3


def test_a_frames_torso_motion_is_computed_once_and_follows_the_weights():
    """Rendering (one pose row, no gradients) reuses the frame's rotations: the same offsets as the per-point
    computation, and new ones after the weights change (an optimiser step) or for another pose."""
    torch.manual_seed(0)
    deform = TorsoDeformation(AABB, anchor="camera", rigid=True, anchor_t=torch.tensor([0.0, 0.0, -0.6]))
    for p in deform.rigid.parameters():
        torch.nn.init.normal_(p, std=0.5)
    x, gate = torch.rand(64, 3) * 0.3 - 0.15, torch.ones(64)
    pose = torch.tensor([[0.05, -0.1, 0.02, 0.01, -0.02, 0.6]])
    per_point = deform(x, pose.expand(64, 6), gate)[0]  # 64 rows: never cached
    with torch.no_grad():
        assert torch.allclose(deform(x, pose, gate)[0], per_point, atol=1e-6)
        calls = []
        deform.rigid.register_forward_hook(lambda *a: calls.append(1))
        deform(x, pose, gate)
        assert not calls  # the cached rotations: the rigid MLP did not run again
        with torch.no_grad():
            deform.rigid[0].weight.add_(0.3)  # what an optimiser step does (in place)
        changed = deform(x, pose, gate)[0]
        assert calls and not torch.allclose(changed, per_point, atol=1e-4)
        other = deform(x, pose + 0.1, gate)[0]
        assert torch.allclose(other, deform(x, (pose + 0.1).expand(64, 6), gate)[0], atol=1e-6)


@pytest.mark.parametrize("backbone", ["mlp", "hash"])
def test_eye_region_keeps_the_eye_input_at_the_eyes(backbone):
    """With the eye-region gate the eye openness changes the output near an eye centre and not a head-width away;
    the audio (ungated, no region attention) still changes both."""
    torch.manual_seed(0)
    groups = [0] * 63 + [1]
    if backbone == "mlp":
        fld = MLPField(64, 11, width=32, depth=4, skip=2, cond_groups=groups, learned_gates=False, eye_region=True)
    else:
        fld = HashField(AABB, 64, 11, n_levels=4, log2_table=10, max_res=64, cond_groups=groups,
                        learned_gates=False, eye_region=True)
    fld.gates.eye_region.copy_(torch.tensor([[-0.03, -0.03, 0.0, 0.02], [0.03, -0.03, 0.0, 0.02]]))
    near = torch.tensor([[-0.03, -0.03, 0.0], [0.035, -0.028, 0.005]])
    far = torch.tensor([[0.0, 0.15, 0.0], [0.2, 0.1, 0.0]])  # chin, beside the head: > 7 radii away
    d = torch.nn.functional.normalize(torch.randn(2, 3), dim=-1)
    base = torch.randn(1, 64)
    shut, other_audio = base.clone(), base.clone()
    shut[0, 63] += 2.0
    other_audio[0, :63] = torch.randn(63)
    out = lambda x, c: torch.cat([fld(x, d, c)[0][:, None], fld(x, d, c)[1]], 1)  # noqa: E731 sigma and rgb
    assert (out(near, base) - out(near, shut)).abs().max() > 1e-4
    assert torch.allclose(out(far, base), out(far, shut), atol=1e-6)
    assert (out(far, base) - out(far, other_audio)).abs().max() > 1e-4
    assert fld.gates(torch.zeros(2, 1), near)[:, 1].min() > 0.5


def test_eye_region_never_set_is_an_error():
    """A model built without eye centres (radii 0) and not restored from a checkpoint refuses to render."""
    from nerf.field import ConditionGates

    gates = ConditionGates(4, [0, 0, 1], learned=False, eye_region=True)
    with pytest.raises(RuntimeError, match="eye centres were never set"):
        gates(torch.zeros(3, 4), torch.zeros(3, 3))
    gates.eye_region.copy_(torch.tensor([[0.0, 0, 0, 0.1], [0.2, 0, 0, 0.1]]))
    assert gates(torch.zeros(1, 4), torch.zeros(1, 3))[0, 1] == pytest.approx(1.0)


@pytest.mark.parametrize("backbone", ["mlp", "hash"])
def test_quiet_eyes_fades_the_audio_out_at_the_eyes(backbone):
    """audio_at_eyes = false: at an eye centre the audio code does not change the output (only the eye input
    does); a head-width away the audio acts fully (gate 1) and the eye input not at all."""
    torch.manual_seed(0)
    groups = [0] * 63 + [1]
    kw = {"cond_groups": groups, "learned_gates": False, "eye_region": True, "quiet_eyes": True}
    fld = (MLPField(64, 11, width=32, depth=4, skip=2, **kw) if backbone == "mlp"
           else HashField(AABB, 64, 11, n_levels=4, log2_table=10, max_res=64, **kw))
    fld.gates.eye_region.copy_(torch.tensor([[-0.03, -0.03, 0.0, 0.02], [0.03, -0.03, 0.0, 0.02]]))
    centres = torch.tensor([[-0.03, -0.03, 0.0], [0.03, -0.03, 0.0]])
    far = torch.tensor([[0.0, 0.15, 0.0], [0.2, 0.1, 0.0]])
    d = torch.nn.functional.normalize(torch.randn(2, 3), dim=-1)
    base = torch.randn(1, 64)
    other_audio, shut = base.clone(), base.clone()
    other_audio[0, :63] = torch.randn(63)
    shut[0, 63] += 2.0
    out = lambda x, c: torch.cat([fld(x, d, c)[0][:, None], fld(x, d, c)[1]], 1)  # noqa: E731
    assert torch.allclose(out(centres, base), out(centres, other_audio), atol=1e-6)
    assert (out(centres, base) - out(centres, shut)).abs().max() > 1e-4
    assert (out(far, base) - out(far, other_audio)).abs().max() > 1e-4
    g = fld.gates(torch.zeros(4, 1), torch.cat([centres, far]))
    assert g[:2, 0].max() < 1e-6 and g[2:, 0].min() > 1 - 1e-6 and g[2:, 1].max() < 1e-6
    with pytest.raises(ValueError, match="quiet_eyes needs the eye region"):
        HashField(AABB, 64, 11, n_levels=4, log2_table=10, max_res=64, cond_groups=groups, learned_gates=False,
                  quiet_eyes=True)


def test_eye_falloff_has_no_denormal_tail():
    """exp(-d2/2) where it is >= 1e-12, exactly 0 beyond: no denormal floats (they slow the CPU's products ~15x)."""
    from nerf.field import FALLOFF_CUT, eye_falloff

    d2 = torch.linspace(0, 300, 30001)[:, None]
    w = eye_falloff(d2)
    near = d2 <= FALLOFF_CUT
    assert torch.allclose(w[near], torch.exp(-0.5 * d2[near]), rtol=1e-6, atol=0)
    assert bool((w[~near] == 0).all()) and float(w[near].min()) >= 1e-12 * 0.99
    tiny = (w != 0) & (w.abs() < torch.finfo(torch.float32).tiny)
    assert not bool(tiny.any())
    assert bool(((torch.exp(-0.5 * d2) != 0) & (torch.exp(-0.5 * d2) < torch.finfo(torch.float32).tiny)).any())


def test_clamped_exponentials_give_the_same_floats():
    """eye_falloff and the quiet-eyes gate clamp their arguments before exp (an underflowing exp is ~30x slower on
    the CPU): the same floats as the plain formulas; eye distances computed along the points equal the broadcast."""
    from nerf.field import FALLOFF_CUT, ConditionGates, eye_falloff, one_minus_exp

    d2 = torch.linspace(0, 2000, 200001)[:, None]
    assert torch.equal(eye_falloff(d2), torch.exp(-0.5 * d2).masked_fill(d2 > FALLOFF_CUT, 0.0))
    assert torch.equal(one_minus_exp(d2), 1 - torch.exp(-d2))
    gates = ConditionGates(4, [0, 0, 1], learned=False, eye_region=True)
    gates.eye_region.copy_(torch.tensor([[-0.03, -0.03, 0.0, 0.02], [0.03, -0.03, 0.01, 0.021]]))
    x = torch.randn(3000, 3) * 0.1
    centre, radius = gates.eye_region[:, :3], gates.eye_region[:, 3]
    plain = (((x[:, None, :] - centre) ** 2).sum(-1) / radius ** 2).min(1).values[:, None]
    assert torch.equal(gates.eye_distance2(x), plain)
