"""The compiled CPU kernels (nerf/cpu_kernels.py) against pure torch: the hash-grid lookup (nerf/csrc/hash_grid.cpp
vs nerf/encodings.py: the same features, gradients, rendered image and training step), the MLP kernel
(nerf/csrc/mlp.cpp vs the nn.Linear stacks: the same outputs for odd widths and point counts, input parts read in
place, and the same rendered image through the field and the deformation), its bfloat16 variant (nerf/csrc/mlp_amx.cpp:
the products of bfloat16-rounded inputs, weights and activations, and an image within 40 dB); and the fallback when
they cannot be built."""
import shutil
from pathlib import Path

import pytest
import torch

from nerf import cpu_kernels
from nerf.encodings import HashGridEncoding
from nerf.model import ModelConfig
from nerf.pipeline import ModelMeta, RenderConfig, build_pipeline
from tests.test_model import AABB, CLASSES, FAST, SMALL, _Cfg, make, rays

needs_compiler = pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler: the kernel cannot be built")


def _avx512() -> bool:
    return shutil.which("c++") is not None and cpu_kernels.load() is not None and cpu_kernels.mlp_isa() == 2


needs_avx512 = pytest.mark.skipif(not _avx512(), reason="the MLP kernel runs only where the CPU has AVX-512")
needs_amx = pytest.mark.skipif(not (_avx512() and cpu_kernels.mlp_amx_usable()),
                               reason="the bfloat16 MLP kernel runs only where the CPU has AMX-BF16")


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
    assert cpu_kernels.wanted("auto")
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
        pipe.use_cpu_kernels(choice, bf16=False)
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
    pipe.use_cpu_kernels("auto", bf16=False)
    assert not pipe.model.field.enc_x.kernel and not pipe.model.field.enc_x.fast


def test_without_a_compiler_the_torch_lookup_is_used(monkeypatch, capsys):
    monkeypatch.setattr(cpu_kernels, "_module", None)
    monkeypatch.setattr(cpu_kernels, "_failure", None)
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    assert cpu_kernels.wanted("torch") is False
    assert capsys.readouterr().err == ""  # `torch` never tries to build
    assert cpu_kernels.wanted("auto") is False
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no C++ compiler (no-such-compiler-xyz)" in err[0] and "pure torch" in err[0]
    with pytest.raises(RuntimeError, match="cpu_kernels = cpp"):
        cpu_kernels.wanted("cpp")
    pipe = make("hash")
    pipe.use_cpu_kernels("auto", bf16=False)
    assert not pipe.model.field.enc_x.kernel and pipe.model.field.mlp_kernel == pipe.model.deformation.mlp_kernel == ""
    assert cpu_kernels.mlp_isa() == -1
    with pytest.raises(ValueError, match="cpu_kernels must be one of"):
        cpu_kernels.wanted("fast")


@needs_compiler
def test_kernel_takes_empty_and_nan_points():
    assert cpu_kernels.wanted("auto")
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

    real_build, folders = cpu_kernels._build, []

    def build(folder=None):
        folders.append(folder)
        if folder is None:
            raise PermissionError(13, "Permission denied", "/nonexistent/.cache/torch_extensions")
        return real_build(folder)

    monkeypatch.setattr(cpu_kernels, "_build", build)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(cpu_kernels, "_module", None)
    monkeypatch.setattr(cpu_kernels, "_failure", None)
    assert cpu_kernels.load() is not None
    assert folders[0] is None and folders[1].startswith(str(tmp_path / "sspnerf_cpu_kernels-"))
    assert list(Path(folders[1]).glob("*.so"))


def test_a_lock_left_by_a_killed_build_is_waited_for_then_removed(tmp_path, capsys):
    """A build killed mid-way leaves `lock` in its folder, and torch would wait on it forever: a fresh lock is
    waited for (another process may be building) and one older than the limit is removed, each with one line."""
    import os
    import threading
    import time

    lock = tmp_path / "lock"
    lock.touch()
    old = time.time() - 1000
    os.utime(lock, (old, old))
    cpu_kernels._wait_for_lock(str(tmp_path), stale_s=600, poll_s=0.01)
    assert not lock.exists() and "did not finish" in capsys.readouterr().err
    lock.touch()  # fresh: another build under way, which removes it when done
    threading.Timer(0.2, lock.unlink).start()
    t0 = time.time()
    cpu_kernels._wait_for_lock(str(tmp_path), stale_s=600, poll_s=0.01)
    assert 0.15 < time.time() - t0 < 5 and "waiting for another process's build" in capsys.readouterr().err
    cpu_kernels._wait_for_lock(str(tmp_path), stale_s=600, poll_s=0.01)  # no lock: returns at once, silent
    assert capsys.readouterr().err == ""


def test_a_lock_whose_build_process_is_gone_is_removed_at_once(tmp_path, capsys):
    """Ctrl-C during the first run's build, then a new run: the lock is fresh, but the process named in the folder's
    owner file has ended, so the lock goes at once (not after STALE_LOCK_S); a living owner is waited for."""
    import os
    import socket
    import subprocess
    import sys
    import threading
    import time

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock, owner = tmp_path / "lock", tmp_path / cpu_kernels.OWNER
    lock.touch()
    owner.write_text(f"{socket.gethostname()} {int(ended.stdout)}\n")
    t0 = time.time()
    cpu_kernels._wait_for_lock(str(tmp_path), stale_s=600, poll_s=0.01)
    err = capsys.readouterr().err
    assert time.time() - t0 < 2 and not lock.exists()
    assert f"process {int(ended.stdout)}, which started it, is gone" in err
    lock.touch()
    owner.write_text(f"{socket.gethostname()} {os.getpid()}\n")  # alive: waited for until the build ends
    threading.Timer(0.2, lock.unlink).start()
    t0 = time.time()
    cpu_kernels._wait_for_lock(str(tmp_path), stale_s=600, poll_s=0.01)
    assert 0.15 < time.time() - t0 < 5 and "waiting for another process's build" in capsys.readouterr().err


# ---- the MLP kernel -------------------------------------------------------------------------------------------
def _stack(dims: list[int], seed: int = 0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


@needs_compiler
@pytest.mark.parametrize("dims,m", [([27 + 6, 64, 64, 3], 1001), ([24, 64, 16], 4096), ([5, 100, 33, 1], 7),
                                    ([17, 130, 2], 66), ([8, 16], 0)], ids=["deform", "density", "odd", "wide", "empty"])
def test_mlp_kernel_equals_the_torch_layers(dims, m):
    """Widths that are not multiples of 16 or wider than one block of 64, point counts that are not multiples of
    the tile, in plain C++ and (where the CPU has it) AVX-512; input parts read in place from strided views."""
    assert cpu_kernels.wanted("auto")
    net = _stack(dims)
    x = torch.randn(m, dims[0] + 3)[:, 1:dims[0] + 1]  # a view with row stride dims[0] + 3
    parts = [x[:, :2], x[:, 2:]] if dims[0] > 2 else [x]
    layers = [(lin.weight, lin.bias) for lin in net if isinstance(lin, torch.nn.Linear)]
    with torch.no_grad():
        ref = net(x)
        extra = [torch.randn(m, 2), torch.randn(m, 1)]  # columns appended in the room the kernel leaves
        for isa in (0, 2) if cpu_kernels.mlp_isa() == 2 else (0,):
            got = cpu_kernels.mlp(parts, layers, isa=isa)
            assert got.shape == ref.shape
            if m:
                assert float((got - ref).abs().max()) < 2e-6 * max(1.0, float(ref.abs().max()))
            wide = cpu_kernels.mlp(parts, layers, extra, isa=isa)
            assert torch.equal(wide, torch.cat([got, *extra], -1))


def _eye_pipeline(**kw):
    """A small hash pipeline with the eye input gated by the eye region (the default model's gates), deformation on."""
    mc = ModelConfig(backbone="hash", **{**SMALL, "eyes": True, "eye_region": True, **kw})
    eyes = torch.tensor([[-0.1, -0.05, 0.2, 0.08], [0.1, -0.05, 0.2, 0.08]])
    return build_pipeline(_Cfg(mc, RenderConfig(**FAST)), ModelMeta(13, CLASSES, AABB, eye_region=eyes))


def _moving_scene(pipe):
    """Rays, one frame's code and pose, and a deformation that moves (its last layer starts at 0)."""
    torch.manual_seed(3)
    for p in pipe.model.deformation.out.parameters():
        torch.nn.init.normal_(p, std=0.05)
    o, d, near, far = rays(512)
    code = pipe.model.condition(torch.randn(1, 64), torch.tensor([0.4]))
    pose = torch.tensor([[0.05, -0.1, 0.02, 0.0, 0.01, 0.9]])
    with torch.no_grad():
        pipe.update_estimator(1)
    return o, d, near, far, code, pose


@needs_avx512
@pytest.mark.parametrize("kw", [{}, {"region_attention": True}], ids=["eye_gates", "region_attention"])
def test_mlp_kernel_renders_like_the_torch_layers(kw):
    """The field's density and colour nets and the deformation's net through the kernel: the same image (one
    frame's shared code and pose, no gradients) as through torch, and only without gradients."""
    pipe = _eye_pipeline(**kw)
    o, d, near, far, code, pose = _moving_scene(pipe)
    images, real = {}, cpu_kernels.mlp
    for choice in ("torch", "cpp"):
        pipe.use_cpu_kernels(choice, bf16=False)
        kernel = "float32" if choice == "cpp" else ""
        assert pipe.model.field.mlp_kernel == pipe.model.deformation.mlp_kernel == kernel
        widths = []  # the input width of each kernel call: 27 is the deformation's encoding
        cpu_kernels.mlp = lambda xs, *a, **k: widths.append(sum(x.shape[1] for x in xs)) or real(xs, *a, **k)
        try:
            with torch.no_grad():
                images[choice] = pipe.render_rays(o, d, near, far, code, pose, None, perturb=False)
            n_calls = len(widths)
            pipe.render_rays(o, d, near, far, code, pose, None, perturb=False)  # with gradients: never the kernel
        finally:
            cpu_kernels.mlp = real
        assert len(widths) == n_calls
        if choice == "cpp":  # density, colour and deformation nets
            assert len(set(widths)) == 3 and 27 in widths, widths
        else:
            assert not widths
    assert float(images["cpp"]["acc"].max()) > 0.1  # the rays hit something
    for key in ("rgb", "acc", "sem"):
        assert torch.allclose(images["cpp"][key], images["torch"][key], atol=1e-5), key


# ---- the bfloat16 MLP kernel (AMX) ----------------------------------------------------------------------------
def _bf16(t: torch.Tensor) -> torch.Tensor:
    return t.bfloat16().float()


def _bfloat16_products(layers: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
    """What the bfloat16 kernel computes, in torch: inputs, weights and hidden activations rounded to bfloat16
    (to nearest even), the products summed and the biases added in float32."""
    h = _bf16(x)
    for i, (w, b) in enumerate(layers):
        h = h @ _bf16(w).T + b
        if i + 1 < len(layers):
            h = _bf16(h.relu())
    return h


@needs_amx
@pytest.mark.parametrize("dims,m", [([27 + 6, 64, 64, 3], 1001), ([24, 64, 16], 4096), ([5, 100, 33, 1], 7),
                                    ([17, 130, 2], 66), ([40, 64, 64, 19], 33), ([9, 16], 1), ([8, 16], 0)],
                         ids=["deform", "density", "odd", "wide", "colour", "one_layer", "empty"])
def test_bf16_mlp_kernel_computes_bfloat16_products(dims, m):
    """Odd widths, widths over 64, inputs over 32, point counts off the tile of 16, strided parts: the kernel's
    output is the bfloat16 computation (far closer to it than to float32's), within 2% of float32's, and the
    appended columns are copied exactly."""
    net = _stack(dims, seed=1)
    x = torch.randn(m, dims[0] + 3)[:, 1:dims[0] + 1]  # a view with row stride dims[0] + 3
    parts = [x[:, :2], x[:, 2:]]
    layers = [(lin.weight, lin.bias) for lin in net if isinstance(lin, torch.nn.Linear)]
    with torch.no_grad():
        f32, emulated = net(x), _bfloat16_products(layers, x)
        got = cpu_kernels.mlp(parts, layers, bf16=True)
        assert got.shape == f32.shape
        if m:
            scale = max(1.0, float(f32.abs().max()))
            off_f32, off_bf16 = float((got - f32).abs().max()), float((got - emulated).abs().max())
            assert 0 < off_f32 < 0.02 * scale  # not float32's arithmetic, but near it
            assert off_bf16 < 0.1 * off_f32 and off_bf16 < 2e-3 * scale, (off_bf16, off_f32)
        extra = [torch.randn(m, 2), torch.randn(m, 1)]
        wide = cpu_kernels.mlp(parts, layers, extra, bf16=True)
        assert torch.equal(wide, torch.cat([got, *extra], -1))


@needs_amx
def test_bf16_mlp_kernel_renders_within_40_db_of_float32():
    """The default fast path on an AMX CPU (cpu_mlp_precision = bfloat16: all three nets in bfloat16 products):
    the image within 40 dB of the torch layers', and far further from them than the float32 kernel's (the bfloat16
    products ran); the accumulated opacity within 1e-2; RenderConfig's default."""
    assert RenderConfig().cpu_mlp_precision == "bfloat16"
    pipe = _eye_pipeline()
    o, d, near, far, code, pose = _moving_scene(pipe)
    images, calls, real = {}, [], cpu_kernels.mlp
    for choice, bf16 in (("torch", False), ("cpp", False), ("cpp", True)):
        pipe.use_cpu_kernels(choice, bf16=bf16)
        assert pipe.model.field.mlp_kernel == pipe.model.deformation.mlp_kernel == (
            "" if choice == "torch" else "bfloat16" if bf16 else "float32")
        cpu_kernels.mlp = lambda xs, *a, **k: calls.append(k.get("bf16")) or real(xs, *a, **k)
        try:
            with torch.no_grad():
                images[choice, bf16] = pipe.render_rays(o, d, near, far, code, pose, None, perturb=False)
        finally:
            cpu_kernels.mlp = real
    assert calls.count(True) >= 3 and calls.count(True) == calls.count(False)  # every net, in both kernel runs
    ref = images["torch", False]
    assert float(ref["acc"].max()) > 0.1  # the rays hit something
    mse = {bf16: float(((images["cpp", bf16]["rgb"] - ref["rgb"]) ** 2).mean()) for bf16 in (False, True)}
    assert 100 * mse[False] < mse[True] < 1e-4, mse  # 40 dB
    assert torch.allclose(images["cpp", True]["acc"], ref["acc"], atol=1e-2)


@needs_compiler
def test_bf16_falls_back_to_float32_without_amx(monkeypatch):
    """On a CPU without AMX-BF16 the bfloat16 request runs float32's kernel (the same floats); with cpu_kernels =
    torch no module takes it."""
    assert cpu_kernels.wanted("auto")
    monkeypatch.setattr(cpu_kernels, "mlp_amx_usable", lambda: False)
    net = _stack([20, 64, 5])
    layers = [(lin.weight, lin.bias) for lin in net if isinstance(lin, torch.nn.Linear)]
    x = torch.randn(300, 20)
    with torch.no_grad():
        assert torch.equal(cpu_kernels.mlp([x], layers, bf16=True), cpu_kernels.mlp([x], layers))
    pipe = _eye_pipeline()
    pipe.use_cpu_kernels("torch", bf16=True)
    assert pipe.model.field.mlp_kernel == pipe.model.deformation.mlp_kernel == ""


def test_a_toolchain_without_amx_builds_the_kernels_without_it(monkeypatch, capsys):
    """When the build with the AMX variant fails (GCC < 11, an old assembler), one line says so and the kernels are
    built once more without it (-DSSP_NO_AMX)."""
    calls = []

    def build(folder=None, amx=True):
        calls.append(amx)
        if amx:
            raise RuntimeError("Error building extension 'sspnerf_cpu_kernels'\nno such instruction: tileloadd")
        return "module"

    monkeypatch.setattr(cpu_kernels, "_build", build)
    assert cpu_kernels._build_with_fallback() == "module" and calls == [True, False]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "without the bfloat16 AMX variant" in err[0] and "tileloadd" in err[0]
