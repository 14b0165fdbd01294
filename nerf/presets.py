"""Device-aware presets: settings sized for the device a run trains on (`preset = auto | cpu | gpu | none`).

- cpu: a run that reaches its plateau within about 20 minutes on 2 CPU cores: 128 px renders (never upsampled),
  trained on rays through the images at twice that size (train_supersample 2, at most the source's size: the
  held-out mouth landmarks ~0.08 px closer on the sample, benchmarks/NOTES.md 2026-12-05 sixth session), 512 rays
  of 48 samples, a 12-level 2^15 hash grid, 12000 iterations with the learning rate decaying over them, the audio
  attention (with audio_code = true) from iteration 8000, and a 25-minute time budget as a guard. On this project's
  2-core machines the 24 s sample trains in 10-17 minutes. 4500 iterations until 2026-12-06: while the field had a
  learned audio code, longer runs lost the held-out mouth (it learnt each training mouth by its code); with the
  mouth heard through its shape alone, 12000 iterations sharpen it (NOTES, 2026-12-06 fourth session).
- gpu: the full model at the subject's resolution (up to 512 px, AD-NeRF's 450-512): 2048 rays of 128 samples, a
  16-level 2^17 hash grid, 20000 iterations, the learning rate decaying over them.
- auto (default): cpu or gpu by the device train.py runs on (`device`: auto picks CUDA when there is one).
- none: the dataclass defaults, nothing changed.

Keys the user sets (on the command line or in the config file) always win over the preset. The chosen preset
and the keys it set are printed at start, and the resolved config saved in each run holds the values.
"""
from __future__ import annotations

from typing import Any

from common.constants import MAX_FRAME_SIZE

PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"img_size": 128, "train_supersample": 2, "n_rand": 512, "hash_samples": 48, "hash_levels": 12,
            "hash_log2_table": 15, "iters": 12000, "lr_decay_iters": 0, "att_start": 8000, "time_budget": 1500.0},
    "gpu": {"img_size": MAX_FRAME_SIZE, "n_rand": 2048, "hash_samples": 128, "hash_levels": 16, "hash_log2_table": 17,
            "iters": 20000, "lr_decay_iters": 0, "att_start": 10000},
}
CHOICES = ("auto", "cpu", "gpu", "none")


def resolve_preset(preset: str, device: str) -> str:
    """The preset to apply ('cpu', 'gpu' or 'none') for `preset` and the `device` key (auto | cpu | cuda)."""
    if preset != "auto":
        return preset
    if device == "cpu":
        return "cpu"
    if device == "cuda":
        return "gpu"
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def preset_values(name: str, explicit: set[str]) -> dict[str, Any]:
    """The preset's {key: value} for the keys not in `explicit` (those the user set)."""
    return {k: v for k, v in PRESETS.get(name, {}).items() if k not in explicit}


def describe(name: str, applied: dict[str, Any], explicit: set[str]) -> str:
    """One line for the log: which preset, what it set, which of its keys the user's values overrode."""
    if name == "none":
        return "preset none: the built-in defaults"
    kept = sorted(set(PRESETS[name]) & explicit)
    line = f"preset {name}: " + ", ".join(f"{k}={v}" for k, v in applied.items())
    return line + (f" (your {', '.join(kept)} kept)" if kept else "")
