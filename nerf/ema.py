"""A moving average of the weights (Polyak averaging, `ema_decay`): training steps the live weights; validation,
the checkpoint's model and so rendering and evaluation use their exponential moving average.

The held-out PSNR of one run moves by 0.5-1 dB between validations 500 iterations apart: the last iterate is a
noisy draw around the minimum the learning rate lets Adam reach. The average over the last few hundred
iterations is a better point than any one of them (benchmarks/NOTES.md, 2026-12-05, fifth session). The decay
warms up as TensorFlow's ExponentialMovingAverage does, min(decay, (1 + n) / (10 + n)) at update n, so a short
run averages over roughly its last tenth and a long one over ~1 / (1 - decay) iterations. Buffers (the occupancy
grid, the mouth predictor's fit) are the live module's.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn


class WeightAverage:
    """The exponential moving average of `module`'s parameters (held here, on their device)."""

    def __init__(self, module: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) (0 turns the average off), got {decay}")
        self.decay = decay
        self.updates = 0
        self.params = params_of(module)

    def rate(self) -> float:
        """The decay of the next update."""
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Move the average towards module's current parameters (after each optimiser step)."""
        weight = 1.0 - self.rate()
        for name, p in module.named_parameters():
            self.params[name].lerp_(p.detach(), weight)
        self.updates += 1

    @contextmanager
    def applied(self, module: nn.Module) -> Iterator[None]:
        """module's parameters hold the average inside the block; the live values come back after it."""
        live = params_of(module)
        copy_into(module, self.params)
        try:
            yield
        finally:
            copy_into(module, live)


def restore_average(module: nn.Module, state: dict, decay: float, path) -> WeightAverage | None:
    """--resume, after module.load_state_dict(state["model"]) of checkpoint `path`: the average to go on with (None
    when decay is 0), module left holding the live weights. A run that kept an average saved it as the model and
    its live weights as `live_params`; from a checkpoint without them the average starts at its weights."""
    average = WeightAverage(module, decay) if decay != 0 else None  # the loaded model: the average (or the weights)
    live = state.get("live_params")
    if live is not None:
        missing = sorted({name for name, _ in module.named_parameters()} - set(live))
        if missing:
            raise ValueError(f"{path}: live_params lacks {len(missing)} of the model's parameters, first {missing[0]}")
        copy_into(module, live)
        if average is not None:
            average.updates = int(state.get("ema_updates", 0))
    return average


def params_of(module: nn.Module) -> dict[str, Tensor]:
    """A copy of module's parameters {name: tensor}."""
    return {name: p.detach().clone() for name, p in module.named_parameters()}


@torch.no_grad()
def copy_into(module: nn.Module, values: dict[str, Tensor]) -> None:
    """Set module's parameters from {name: tensor}."""
    for name, p in module.named_parameters():
        p.copy_(values[name])
