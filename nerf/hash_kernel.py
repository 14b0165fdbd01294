"""The hash-grid lookup as a compiled CPU kernel (nerf/csrc/hash_grid.cpp), an optional fast path beside the
pure-torch one (nerf/encodings.py, which stays the reference and the fallback; gsplat's habit).

Built on first use with `torch.utils.cpp_extension.load` (needs a C++ compiler with OpenMP, e.g. g++; ~20 s once,
then cached by torch under ~/.cache/torch_extensions, rebuilt when the source changes). Where it cannot be built,
one line says why and the pure-torch lookup is used. `hash_kernel = torch` in the config never builds it.

Measured (benchmarks/NOTES.md, issue #15; 32768 points, 12 levels, 2^15 rows, 2 threads): forward 17 -> 3.0 ms,
forward + backward 65 -> 10 ms (90 -> 19 ms with the points' gradient).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).resolve().parent / "csrc" / "hash_grid.cpp"
NAME = "sspnerf_hash_grid"  # the extension's name (torch's cache folder)
CHOICES = ("auto", "cpp", "torch")
_module = None
_failure: str | None = None


def _needs_build() -> bool:
    """Whether torch has no build of the current source yet (then load() compiles, ~20 s)."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        built = list(Path(_get_build_directory(NAME, False)).glob("*.so"))
        return not built or max(p.stat().st_mtime for p in built) < SOURCE.stat().st_mtime
    except Exception:  # noqa: BLE001 - only decides whether to announce the build
        return True


def _build(folder: str | None = None):
    from torch.utils.cpp_extension import load as build

    return build(NAME, [str(SOURCE)], extra_cflags=["-O3", "-fopenmp"], extra_ldflags=["-fopenmp"],
                 build_directory=folder, verbose=False)


def load():
    """The compiled module, building it the first time; None (and a one-line reason, printed once) if it cannot."""
    global _module, _failure
    if _module is not None or _failure is not None:
        return _module
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        _failure = f"no C++ compiler ({compiler}) on PATH"
    else:
        try:
            if _needs_build():
                print("hash grid: compiling the C++ lookup kernel (first use only, ~20 s; cached after)",
                      file=sys.stderr, flush=True)
            try:
                _module = _build()
            except OSError:  # torch's cache folder not writable (no home?): a private folder in the temp dir
                folder = Path(tempfile.gettempdir()) / f"{NAME}-{os.getuid() if hasattr(os, 'getuid') else 0}"
                folder.mkdir(mode=0o700, exist_ok=True)
                _module = _build(str(folder))
        except Exception as err:  # noqa: BLE001 - any build failure means: use the pure-torch lookup
            _failure = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
    if _failure is not None:
        print(f"hash grid: the C++ lookup kernel is not available ({_failure}); using the pure-torch lookup",
              file=sys.stderr, flush=True)
    return _module


def wanted(choice: str) -> bool:
    """Whether `hash_kernel = choice` asks for the kernel (auto: if it builds; cpp: it must)."""
    if choice not in CHOICES:
        raise ValueError(f"hash_kernel must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "torch":
        return False
    ok = load() is not None
    if choice == "cpp" and not ok:
        raise RuntimeError(f"hash_kernel = cpp, but the C++ lookup kernel could not be built ({_failure})")
    return ok


class HashGridLookup(torch.autograd.Function):
    """features [N, L*F] of points x [N, 3] (float32, CPU) in table [L, T, F]; gradients for the table and x."""

    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, aabb: Tensor, res: Tensor, mult: Tensor) -> Tensor:
        x, table = x.contiguous(), table.contiguous()
        ctx.save_for_backward(x, table, aabb, res, mult)
        return _module.forward(x, table, aabb, res, mult)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, table, aabb, res, mult = ctx.saved_tensors
        grad_table, grad_x = _module.backward(grad_out, x, table, aabb, res, mult, ctx.needs_input_grad[0])
        return (grad_x if ctx.needs_input_grad[0] else None,
                grad_table if ctx.needs_input_grad[1] else None, None, None, None)


def lookup(x: Tensor, table: Tensor, aabb: Tensor, res: Tensor, mult: Tensor) -> Tensor:
    """The compiled lookup (load() must have succeeded); see HashGridLookup."""
    return HashGridLookup.apply(x.float(), table, aabb, res, mult)
