"""Training checkpoints: `logs/<expname>/ckpt/latest.pt`, written atomically, loadable with weights_only=True.

A checkpoint (docs/DESIGN.md section 10) holds the pipeline (model + estimator), optimiser and sampler states, the
iteration, the training wall time, the RNG states, whether the audio attention net is on and a fingerprint of the
settings that fix the model's shape; loading it under other settings is a one-line ValueError naming the
checkpoint and the keys that differ.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.fileio import atomic_path


def _to_torch(obj: Any) -> Any:
    """numpy arrays -> tensors, recursively (so the file loads with weights_only=True)."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _to_torch(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_torch(v) for v in obj)
    return obj


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: str | os.PathLike, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    sampler, iteration: int, fingerprint: dict, time_s: float = 0.0,
                    audio_attention: bool = False, extra: dict | None = None) -> None:
    """Write everything needed to continue training at `iteration`, atomically (temp file + rename). extra: more
    entries (the trainer's live weights beside the averaged model, nerf/ema.py)."""
    state = {
        "iteration": int(iteration),
        "time_s": float(time_s),
        "fingerprint": _to_torch(fingerprint),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "sampler": _to_torch(sampler.state_dict()),
        "rng": rng_states(),
        "audio_attention": bool(audio_attention),
        **(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike, fingerprint: dict | None = None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint; with `fingerprint`, a ValueError (one line) when the settings differ."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or "model" not in state or "fingerprint" not in state:
        raise ValueError(f"{path}: not a train.py checkpoint")
    if fingerprint is not None:
        check_fingerprint(path, state["fingerprint"], _to_torch(fingerprint))
    return state


def check_fingerprint(path: Path, saved: dict, current: dict) -> None:
    diff = [f"{k}: {saved.get(k)!r} (checkpoint) vs {current.get(k)!r} (now)"
            for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
    if diff:
        raise ValueError(f"{path}: made with a different config ({'; '.join(diff)}); "
                         "use another --expname or the checkpoint's settings")
