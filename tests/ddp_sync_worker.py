"""Run under `torchrun --nproc_per_node 2` by tests/test_ddp.py: train a few steps, then check that every rank
holds the same parameters and the same occupancy grid. Exits 1 and names what differs when they drift apart.
Arguments: train.py's flags. `occ_codes` (the recent audio codes a rank saw, inputs to the next grid update) are
each rank's own and are not compared."""
import sys
from pathlib import Path

import torch
import torch.distributed as tdist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nerf.config import parse  # noqa: E402
from nerf.distributed import exit_process, setup, teardown  # noqa: E402
from nerf.trainer import Trainer  # noqa: E402

RANK_LOCAL = {"occ_codes"}


def model_state(trainer: Trainer) -> tuple[list[str], list[int], torch.Tensor]:
    """Names, element counts and every element of every parameter and buffer, flattened (float64)."""
    named = [*trainer.pipeline.named_parameters(), *trainer.pipeline.named_buffers()]
    named = [(n, t) for n, t in named if n.split(".")[-1] not in RANK_LOCAL]
    flat = torch.cat([t.detach().double().reshape(-1).cpu() for _, t in named])
    return [n for n, _ in named], [t.numel() for _, t in named], flat


def main() -> int:
    cfg = parse(sys.argv[1:])
    dist = setup("cpu")
    trainer = Trainer(cfg, dist)
    for it in range(1, cfg.train.iters + 1):
        trainer.step(it)
    names, sizes, ours = model_state(trainer)
    theirs = [torch.zeros_like(ours) for _ in range(dist.world)]
    tdist.all_gather(theirs, ours)
    teardown(dist)
    differ = sorted({n for t in theirs for n, a, b in zip(names, t.split(sizes), theirs[0].split(sizes))
                     if not torch.equal(a, b)})  # elementwise
    if dist.is_main:
        print(f"after {cfg.train.iters} steps, {len(differ)} of {len(names)} parameters/buffers differ between "
              f"ranks: {differ}")
    return 1 if differ else 0


if __name__ == "__main__":
    exit_process(main())
