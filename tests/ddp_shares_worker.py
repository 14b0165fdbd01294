"""Run under `torchrun --nproc_per_node 2` by tests/test_sampler_shares.py; arguments: train.py's flags.

Phase 1: N steps (`--iters`), then every parameter and buffer (elementwise; `occ_codes`, the audio codes a rank saw
last, are each rank's own), the sampler's shares and running class losses are compared between the ranks.
Phase 2: rank 0 writes a checkpoint; both ranks build a fresh trainer and resume from it: rank 1 must take the
shares and class losses from the checkpoint but keep a random stream of its own (not rank 0's); 5 more steps,
then everything is compared again. Prints one line `SHARES_SYNC {json}`; exits 1 when something differs.
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as tdist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nerf.config import parse  # noqa: E402
from nerf.distributed import exit_process, setup, teardown  # noqa: E402
from nerf.trainer import Trainer  # noqa: E402

RANK_LOCAL = {"occ_codes"}
MORE = 5


def _module(trainer: Trainer) -> torch.nn.Module:
    return getattr(trainer, "pipeline", None) or trainer.model


def _state(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Every parameter and buffer (float64, flattened), the sampler's shares and running losses."""
    mod = _module(trainer)
    out = {n: t.detach().double().reshape(-1).cpu() for n, t in [*mod.named_parameters(), *mod.named_buffers()]
           if n.split(".")[-1] not in RANK_LOCAL}
    s = trainer.sampler.state_dict()
    out["sampler.p"] = torch.as_tensor(np.asarray(s["p"], np.float64))
    out["sampler.loss"] = torch.as_tensor(np.asarray(s["loss"], np.float64))
    return out


def _differ(trainer: Trainer, world: int) -> list[str]:
    """Names whose tensors are not elementwise equal on every rank (all ranks get the list)."""
    ours = _state(trainer)
    names = sorted(ours)
    flat = torch.cat([ours[n] for n in names])
    theirs = [torch.zeros_like(flat) for _ in range(world)]
    tdist.all_gather(theirs, flat)
    sizes = [ours[n].numel() for n in names]
    bad = set()
    for t in theirs[1:]:
        for n, a, b in zip(names, theirs[0].split(sizes), t.split(sizes)):
            if not torch.equal(a, b):
                bad.add(n)
    return sorted(bad)


def _gather_rng(trainer: Trainer, world: int) -> list[int]:
    """Each rank's next sampler draw (the rng state is copied so the run is not disturbed)."""
    rng = np.random.default_rng()
    rng.bit_generator.state = trainer.sampler.rng.bit_generator.state
    t = torch.tensor([int(rng.integers(0, 2**62))], dtype=torch.int64)
    parts = [torch.zeros_like(t) for _ in range(world)]
    tdist.all_gather(parts, t)
    return [int(p) for p in parts]


def main() -> int:
    cfg = parse(sys.argv[1:])
    dist = setup("cpu")
    n = cfg.train.iters
    trainer = Trainer(cfg, dist)
    initial = trainer.sampler.shares()
    for it in range(1, n + 1):
        trainer.step(it)
    res = {"differ_after_steps": _differ(trainer, dist.world), "initial_shares": initial,
           "shares": trainer.sampler.shares()}
    if dist.is_main:
        trainer.save(n)
    tdist.barrier()
    saved = trainer.sampler.state_dict()

    fresh = Trainer(cfg, dist)
    fresh.resume()
    s = fresh.sampler.state_dict()
    res["resumed_iteration"] = fresh.start_iter
    res["resumed_sampler_matches_checkpoint"] = bool(np.allclose(np.asarray(s["p"]), np.asarray(saved["p"]))
                                                     and np.allclose(np.asarray(s["loss"]), np.asarray(saved["loss"])))
    draws = _gather_rng(fresh, dist.world)
    res["resumed_rank_streams_differ"] = len(set(draws)) == len(draws)
    res["differ_after_resume"] = _differ(fresh, dist.world)
    for it in range(n + 1, n + MORE + 1):
        fresh.step(it)
    res["differ_after_more_steps"] = _differ(fresh, dist.world)
    res["final_shares"] = fresh.sampler.shares()
    res["n_compared"] = len(_state(fresh))
    all_ok = [None] * dist.world
    ok = (not res["differ_after_steps"] and not res["differ_after_resume"] and not res["differ_after_more_steps"]
          and res["resumed_sampler_matches_checkpoint"] and res["resumed_rank_streams_differ"])
    tdist.all_gather_object(all_ok, ok)
    teardown(dist)
    if dist.is_main:
        res["all_ranks_ok"] = all(all_ok)
        print("SHARES_SYNC " + json.dumps(res))
    return 0 if all(all_ok) else 1


if __name__ == "__main__":
    exit_process(main())
