"""The device a run uses, and torch.distributed set-up for `torchrun --nproc_per_node N train.py ...`
(gloo on the CPU, nccl on CUDA)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as tdist


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device available (use --device cpu or auto)")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def launched_world() -> int:
    """How many processes torchrun started (WORLD_SIZE; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes in the environment; a single process needs none."""
    world = launched_world()
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if use_cuda else "gloo")
    return info


def teardown(info: DistInfo) -> None:
    """Wait for every rank (rank 0 may still be validating or saving), then close the group: a rank that closes
    its gloo connections while another still uses them makes that one abort (SIGABRT)."""
    if info.world > 1 and tdist.is_initialized():
        try:
            tdist.barrier()
        finally:
            tdist.destroy_process_group()


def exit_process(code: int) -> None:
    """End the program with `code`. Under torchrun (WORLD_SIZE > 1) it flushes stdout/stderr and leaves with
    os._exit, skipping the interpreter's shutdown: DDP's reducer keeps the gloo process group (and its worker
    threads) alive past destroy_process_group, and a worker thread that drops the last reference to a tensor
    Python once held while the interpreter shuts down aborts the process (SIGABRT, "terminate called without an
    active exception"; 1 in ~10-20 two-rank runs, after all work was saved). Call it after teardown()."""
    if launched_world() <= 1:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def all_mean(value: float, info: DistInfo) -> float:
    """The mean of a number over the ranks (the number itself in one process)."""
    if info.world <= 1:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64)
    if tdist.get_backend() == "nccl":
        t = t.cuda()
    tdist.all_reduce(t)
    return float(t.item()) / info.world


def all_gather_cat(tensors: list[torch.Tensor], info: DistInfo) -> list[torch.Tensor]:
    """Each tensor [n, ...] (same n on every rank) concatenated over the ranks, on the CPU."""
    if info.world <= 1:
        return [t.detach().cpu() for t in tensors]
    out = []
    for t in tensors:
        parts = [torch.empty_like(t) for _ in range(info.world)]
        tdist.all_gather(parts, t.detach().contiguous())
        out.append(torch.cat(parts).cpu())
    return out


def broadcast_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (the occupancy grid, ...) to every rank, in place; nothing in one process."""
    if info.world <= 1:
        return
    for buf in module.buffers():
        tdist.broadcast(buf, src=0)
