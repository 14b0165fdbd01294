"""Compiled CPU kernels of the fast path, each beside a pure-torch original that stays the reference and the
fallback (gsplat's habit):

- the hash-grid lookup (nerf/csrc/hash_grid.cpp; the original: nerf/encodings.py), forward and gradients;
- small ReLU MLPs without gradients (nerf/csrc/mlp.cpp; the originals: the nn.Linear stacks of nerf/field.py and
  nerf/deformation.py), one tile of 4 points through every layer in AVX-512 registers; used where the CPU has
  AVX-512 (checked at run time: `mlp_applies`); with `bf16`, where the CPU has AMX-BF16 (`mlp_amx_usable`), their
  products in bfloat16 tiles of 16 points (nerf/csrc/mlp_amx.cpp; sums and outputs float32).

Built together on first use with `torch.utils.cpp_extension.load` (needs a C++ compiler with OpenMP, e.g. g++;
~30 s once, then cached by torch under ~/.cache/torch_extensions, rebuilt when a source changes). Where they cannot
be built, one line says why and pure torch is used. `cpu_kernels = torch` in the config never builds them.

Measured (benchmarks/NOTES.md, issue #15; 2 threads): lookup of 32768 points, 12 levels, 2^15 rows: forward 17 ->
3.0 ms, forward + backward 65 -> 10 ms (90 -> 19 ms with the points' gradient); the deformation's MLP (27 -> 64 ->
64 -> 3) on 32768 points: 3.1 -> 1.9 ms, 0.97 ms in bfloat16 tiles.
"""
from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import Tensor

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = [CSRC / "hash_grid.cpp", CSRC / "mlp.cpp", CSRC / "mlp_amx.cpp", CSRC / "bindings.cpp"]
HEADERS = [CSRC / "mlp.h"]  # ninja (torch's build) follows the includes; listed for the "compiling" line
NAME = "sspnerf_cpu_kernels"  # the extension's name (torch's cache folder)
CHOICES = ("auto", "cpp", "torch")
STALE_LOCK_S = 600.0  # a build folder's lock older than this was left by a build that was killed
OWNER = "owner"  # in the build folder: "<host> <pid>" of the process whose build made the lock
_module = None
_failure: str | None = None


def _needs_build() -> bool:
    """Whether torch has no build of the current sources yet (then load() compiles, ~30 s)."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        built = list(Path(_get_build_directory(NAME, False)).glob("*.so"))
        newest = max(s.stat().st_mtime for s in SOURCES + HEADERS)
        return not built or max(p.stat().st_mtime for p in built) < newest
    except Exception:  # noqa: BLE001 - only decides whether to announce the build
        return True


def _owner_gone(folder: Path) -> int | None:
    """The pid of the process that started the folder's last build (its OWNER file) if that process is no longer
    running on this host; None while it runs, or when that cannot be told (no file, another host)."""
    try:
        host, pid = (folder / OWNER).read_text().split()
        pid_n = int(pid)
    except (OSError, ValueError):
        return None
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid_n, 0)
    except ProcessLookupError:
        return pid_n
    except PermissionError:  # runs, as another user
        return None
    return None


def _wait_for_lock(folder: str | None = None, stale_s: float = STALE_LOCK_S, poll_s: float = 2.0) -> None:
    """torch's build waits, without a word and without end, while its folder holds a `lock` file, and a build that
    was killed (Ctrl-C during the first run) leaves one behind. So wait here, saying why, while another process's
    build may be under way, and remove the lock at once when the process that made it is gone (OWNER), else once it
    is older than `stale_s` (a build takes well under a minute)."""
    from torch.utils.cpp_extension import _get_build_directory

    lock = Path(folder or _get_build_directory(NAME, False)) / "lock"
    said = False
    while lock.exists():
        try:
            seen = lock.stat()
        except FileNotFoundError:
            return  # the other build finished
        age, gone = time.time() - seen.st_mtime, _owner_gone(lock.parent)
        if age > stale_s or gone is not None:
            why = f"process {gone}, which started it, is gone" if gone is not None else f"left {age:.0f} s ago"
            print(f"cpu kernels: removing {lock} ({why}): a build that did not finish", file=sys.stderr, flush=True)
            _unlink_if_same(lock, seen)
            return
        if not said:
            print(f"cpu kernels: waiting for another process's build ({lock}; removed if still there "
                  f"{stale_s - age:.0f} s from now)", file=sys.stderr, flush=True)
            said = True
        time.sleep(poll_s)


def _unlink_if_same(lock: Path, seen: os.stat_result) -> None:
    """Remove `lock` only if it is still the file `seen` described (another waiter may have removed the stale one
    and a new build made a fresh lock since)."""
    try:
        now = lock.stat()
        if (now.st_ino, now.st_mtime_ns) == (seen.st_ino, seen.st_mtime_ns):
            lock.unlink()
    except FileNotFoundError:
        pass


def _build(folder: str | None = None, amx: bool = True):
    """torch's JIT build of SOURCES (amx=False: without the bfloat16 AMX variant, for compilers or assemblers that
    lack its instructions)."""
    from torch.utils.cpp_extension import _get_build_directory, load as build

    _wait_for_lock(folder)
    folder = folder or _get_build_directory(NAME, False)
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / OWNER).write_text(f"{socket.gethostname()} {os.getpid()}\n")  # for a later _wait_for_lock
    flags = ["-O3", "-fopenmp"] + ([] if amx else ["-DSSP_NO_AMX"])
    return build(NAME, [str(s) for s in SOURCES], extra_cflags=flags, extra_ldflags=["-fopenmp"],
                 build_directory=folder, verbose=False)


def _build_with_fallback(folder: str | None = None):
    """_build, then once more without the AMX variant if the toolchain cannot build it (one line says so); an
    OSError (the build folder) is the caller's."""
    try:
        return _build(folder)
    except OSError:
        raise
    except Exception as err:  # noqa: BLE001 - an older compiler / assembler: the kernels without AMX
        print(f"cpu kernels: building without the bfloat16 AMX variant ({_last_line(err)})", file=sys.stderr,
              flush=True)
        return _build(folder, amx=False)


def _last_line(err: Exception) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[-1] if text else ''}"


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
                print("cpu kernels: compiling the C++ hash-grid and MLP kernels (first use only, ~30 s; cached after)",
                      file=sys.stderr, flush=True)
            try:
                _module = _build_with_fallback()
            except OSError:  # torch's cache folder not writable (no home?): a private folder in the temp dir
                folder = Path(tempfile.gettempdir()) / f"{NAME}-{os.getuid() if hasattr(os, 'getuid') else 0}"
                folder.mkdir(mode=0o700, exist_ok=True)
                _module = _build_with_fallback(str(folder))
        except Exception as err:  # noqa: BLE001 - any build failure means: use pure torch
            _failure = _last_line(err)
    if _failure is not None:
        print(f"cpu kernels: the C++ kernels are not available ({_failure}); using pure torch",
              file=sys.stderr, flush=True)
    return _module


def wanted(choice: str) -> bool:
    """Whether `cpu_kernels = choice` asks for the kernels (auto: if they build; cpp: they must)."""
    if choice not in CHOICES:
        raise ValueError(f"cpu_kernels must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "torch":
        return False
    ok = load() is not None
    if choice == "cpp" and not ok:
        raise RuntimeError(f"cpu_kernels = cpp, but the C++ kernels could not be built ({_failure})")
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


# ---- small MLPs -----------------------------------------------------------------------------------------------
LANES = 16  # the kernel's columns are padded to a multiple of this


def mlp_isa() -> int:
    """The MLP kernel's best instruction set on this CPU: 0 plain C++, 2 AVX-512; -1 when the kernels are not
    built."""
    return -1 if _module is None else int(_module.mlp_isa())


def mlp_amx_usable() -> bool:
    """Whether the MLP kernel's bfloat16 variant (AMX tiles, nerf/csrc/mlp_amx.cpp) can run on this CPU."""
    return _module is not None and bool(_module.mlp_amx_usable())


def mlp_applies(x: Tensor) -> bool:
    """Whether the MLP kernel should run on points x [M,K]: built, AVX-512 here, no gradients wanted, float32 CPU,
    more than one point. Without AVX-512 torch's products are faster (plain C++: several times slower; an AVX2
    variant was slower than torch on this project's machine, benchmarks/NOTES.md)."""
    return (_module is not None and not torch.is_grad_enabled() and x.device.type == "cpu"
            and x.dtype == torch.float32 and x.shape[0] > 1 and mlp_isa() == 2)


def _padded(n: int) -> int:
    return -(-n // LANES) * LANES


def pack_layers(layers: list[tuple[Tensor, Tensor]]) -> tuple[list[Tensor], list[Tensor], list[int]]:
    """nn.Linear-style (weight [N,K], bias [N]) per layer -> the kernel's transposed weights [K',P] and biases [P],
    zero-padded (P: N rounded up to LANES; K': the previous layer's P, the input width for the first) and the
    real widths N."""
    wts, bs, outs = [], [], []
    k_in = layers[0][0].shape[1]
    for w, b in layers:
        n, k = w.shape
        p = _padded(n)
        wt = w.new_zeros(k_in, p)
        wt[:k, :n] = w.detach().t()
        bias = b.new_zeros(p)
        bias[:n] = b.detach()
        wts.append(wt), bs.append(bias), outs.append(n)
        k_in = p
    return wts, bs, outs


def mlp(xs: list[Tensor], layers: list[tuple[Tensor, Tensor]], extra: list[Tensor] = (), isa: int = -1,
        bf16: bool = False) -> Tensor:
    """ReLU MLP inference of cat(xs) ([M,k_i] each, never concatenated in memory) -> [M,N_last], then the columns of
    `extra` ([M,e_j] each) -> cat([out, *extra], -1), with (weight [N,K], bias [N]) per layer and ReLU after all but
    the last: what the nn.Linear / ReLU stack computes, within float rounding. The output is written once (the extra
    columns into room the kernel leaves). No gradients; float32 CPU tensors (column-contiguous, any row stride);
    the kernels must be loaded (load()). isa: -1 the best here (tests force 0 / 2). bf16: the products in bfloat16
    in AMX tiles where mlp_amx_usable() (sums and outputs in float32; ~4e-3 relative from float32's), else as isa."""
    wts, bs, outs = pack_layers(layers)
    width = sum(e.shape[1] for e in extra)
    out = _module.mlp_forward([x.float() for x in xs], wts, bs, outs, width, 3 if bf16 and mlp_amx_usable() else isa)
    col = outs[-1]
    for e in extra:
        out[:, col:col + e.shape[1]] = e
        col += e.shape[1]
    return out
