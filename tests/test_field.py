"""Field outputs, torso deformation gating and the audio networks."""
import pytest
import torch

from nerf.audio import AudioAttNet, AudioNet
from nerf.deformation import TorsoDeformation, height_gate
from nerf.field import HashField, MLPField, density_activation

AABB = torch.tensor([-0.3, -0.3, -0.3, 0.3, 0.3, 0.3])


@pytest.mark.parametrize("make", [
    lambda: MLPField(64, 11, width=32, depth=4, skip=2),
    lambda: HashField(AABB, 64, 11, n_levels=4, log2_table=10, max_res=64),
], ids=["mlp", "hash"])
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
    deform = TorsoDeformation(AABB)
    torch.nn.init.normal_(deform.out.weight, std=0.1)  # as if trained: a non-zero offset field
    x = torch.rand(20, 3) * 0.4 - 0.2
    pose = torch.randn(20, 6) * 0.1
    gate = torch.zeros(20)
    gate[10:] = 1.0  # first half head points, second half torso points
    dx, reg = deform(x, pose, gate)
    assert torch.equal(dx[:10], torch.zeros(10, 3))
    assert (dx[10:].norm(dim=-1) > 1e-4).all()
    assert abs(reg.item() - (dx ** 2).sum(-1).mean().item()) < 1e-7
    fresh, _ = TorsoDeformation(AABB)(x, pose, torch.ones(20))
    assert torch.equal(fresh, torch.zeros(20, 3))  # starts undeformed


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
