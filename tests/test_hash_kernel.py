"""The compiled hash-grid lookup (nerf/hash_kernel.py, nerf/csrc/hash_grid.cpp) against the pure-torch one
(nerf/encodings.py): the same features, the same gradients, the same rendered image and training step; and the
fallback when it cannot be built."""
import shutil
from pathlib import Path

import pytest
import torch

from nerf import hash_kernel
from nerf.encodings import HashGridEncoding
from tests.test_model import make, rays

needs_compiler = pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler: the kernel cannot be built")


def _encoding(n_features: int = 2, log2_table: int = 12) -> HashGridEncoding:
    torch.manual_seed(0)
    aabb = torch.tensor([-0.3, -0.2, -0.1, 0.3, 0.4, 0.5])
    return HashGridEncoding(aabb, n_levels=8, n_features=n_features, log2_table=log2_table, base_res=4,
                            max_res=300, init_scale=1.0)


def _points(n: int = 3000) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 3, generator=g) * 0.9 - 0.3  # some outside the box: clamped onto it
    x[0] = torch.tensor([0.3, 0.4, 0.5])  # the far corner exactly
    x[1] = torch.tensor([-0.3, -0.2, -0.1])
    return x


def _lookup(enc: HashGridEncoding, x: torch.Tensor, kernel: bool, grad_out: torch.Tensor):
    """(features, table gradient, point gradient) of enc at x with or without the kernel."""
    enc.kernel, enc.table.grad = kernel, None
    x = x.clone().requires_grad_()
    out = enc(x)
    (out * grad_out).sum().backward()
    return out.detach(), enc.table.grad.clone(), x.grad.clone()


@needs_compiler
@pytest.mark.parametrize("n_features", [2, 4])
def test_kernel_equals_the_torch_lookup(n_features):
    assert hash_kernel.wanted("auto")
    enc = _encoding(n_features)
    assert any(enc.dense_levels) and not all(enc.dense_levels)  # dense and hashed levels both exercised
    x = _points()
    with torch.no_grad():
        enc.kernel = False
        ref = enc(x)  # the fused embedding_bag of the fast path
        enc.kernel = True
        got = enc(x)
    assert torch.allclose(got, ref, rtol=0, atol=1e-6)
    grad_out = torch.randn_like(ref)
    out_t, table_t, x_t = _lookup(enc, x, False, grad_out)  # index_select + bmm under autograd
    out_k, table_k, x_k = _lookup(enc, x, True, grad_out)
    assert torch.allclose(out_k, out_t, rtol=0, atol=1e-6)
    assert torch.allclose(table_k, table_t, rtol=1e-5, atol=1e-5)
    scale = float(x_t.abs().max())
    assert scale > 1.0  # the point gradient is not trivially zero
    assert float((x_k - x_t).abs().max()) < 1e-5 * scale
    assert torch.equal(x_k[0] == 0, x_t[0] == 0)  # clamped axes pass no gradient in either


@needs_compiler
def test_kernel_renders_and_trains_like_the_torch_lookup():
    """A real hash-grid pipeline: the same image on the fast path, the same loss and gradients in a training step."""
    pipe = make("hash")
    o, d, near, far = rays(256)
    codes, pose = torch.randn(256, 64), torch.randn(256, 6) * 0.05
    with torch.no_grad():
        pipe.update_estimator(1)
    results = []
    for choice in ("torch", "cpp"):
        pipe.use_hash_kernel(choice)
        assert pipe.model.field.enc_x.kernel == (choice == "cpp")
        pipe.zero_grad()
        torch.manual_seed(2)
        out = pipe.render_rays(o, d, near, far, codes, pose, None, perturb=True)
        loss = ((out["rgb"] - 0.5) ** 2).mean()
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in pipe.parameters() if p.grad is not None])
        results.append((out["rgb"].detach(), loss.item(), grads))
    (rgb_t, loss_t, grad_t), (rgb_k, loss_k, grad_k) = results
    assert torch.allclose(rgb_k, rgb_t, atol=1e-5)
    assert abs(loss_k - loss_t) < 1e-5 * loss_t
    assert float(torch.nn.functional.cosine_similarity(grad_k, grad_t, dim=0)) > 0.9999


def test_reference_path_never_uses_the_kernel():
    pipe = make("hash", render_path="reference")
    pipe.use_hash_kernel("auto")
    assert not pipe.model.field.enc_x.kernel and not pipe.model.field.enc_x.fast


def test_without_a_compiler_the_torch_lookup_is_used(monkeypatch, capsys):
    monkeypatch.setattr(hash_kernel, "_module", None)
    monkeypatch.setattr(hash_kernel, "_failure", None)
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    assert hash_kernel.wanted("torch") is False
    assert capsys.readouterr().err == ""  # `torch` never tries to build
    assert hash_kernel.wanted("auto") is False
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no C++ compiler (no-such-compiler-xyz)" in err[0] and "pure-torch" in err[0]
    with pytest.raises(RuntimeError, match="hash_kernel = cpp"):
        hash_kernel.wanted("cpp")
    pipe = make("hash")
    pipe.use_hash_kernel("auto")
    assert not pipe.model.field.enc_x.kernel
    with pytest.raises(ValueError, match="hash_kernel must be one of"):
        hash_kernel.wanted("fast")


@needs_compiler
def test_kernel_takes_empty_and_nan_points():
    assert hash_kernel.wanted("auto")
    enc = _encoding()
    enc.kernel = True
    x = torch.zeros(0, 3, requires_grad=True)
    out = enc(x)
    out.sum().backward()
    assert out.shape == (0, enc.out_dim) and x.grad.shape == (0, 3)
    with torch.no_grad():
        bad = enc(torch.tensor([[float("nan"), 0.0, 0.1], [0.0, float("inf"), -float("inf")]]))
    assert bad.shape == (2, enc.out_dim) and bool(torch.isfinite(bad).all())  # no read outside the table


@needs_compiler
def test_kernel_builds_in_a_temp_folder_when_the_cache_is_not_writable(monkeypatch, tmp_path):
    """torch's extension folder unwritable (no home, say): the kernel is built in a private temp folder instead."""
    import tempfile

    real_build, folders = hash_kernel._build, []

    def build(folder=None):
        folders.append(folder)
        if folder is None:
            raise PermissionError(13, "Permission denied", "/nonexistent/.cache/torch_extensions")
        return real_build(folder)

    monkeypatch.setattr(hash_kernel, "_build", build)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(hash_kernel, "_module", None)
    monkeypatch.setattr(hash_kernel, "_failure", None)
    assert hash_kernel.load() is not None
    assert folders[0] is None and folders[1].startswith(str(tmp_path / "sspnerf_hash_grid-"))
    assert list(Path(folders[1]).glob("*.so"))
