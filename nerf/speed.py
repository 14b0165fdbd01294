"""Speed settings that belong to the machine that runs, not to the trained run: rays per image chunk, samples per
marching segment, points per field query. 0 in the config (the default) picks them by device when the pipeline
first runs there; a value the user gives always wins, and a run's saved values are not inherited by render.py or
evaluate.py (nerf/runs.py), since another machine may render it. What is rendered does not change (the fast path
is within 78 dB of the reference on a GPU, benchmarks/NOTES.md).

- CPU: 4096 rays, segments of 16 samples, 32768 points (small batches stay in the caches); the fast path, whose
  queries are bounded by the 32768 points whatever the chunk, takes 16384 rays (a 128 px frame in one chunk: 8-10%
  faster than 4096, fewer estimator and marching calls; benchmarks/NOTES.md); glibc keeps large temporaries in the
  process instead of mapping fresh pages for each (tune_cpu_allocator).
- CUDA: each early-termination check and each small query costs kernel launches and a host sync, so one segment per
  ray (no check) and the whole chunk in one query; as many rays per chunk as a quarter of the GPU's free memory
  holds at BYTES_PER_SAMPLE, a power of two in [4096, 65536]. Measured on an H200 (gpu preset, 256 px): the CPU
  values 1.47 frames/s with ~28k kernel launches a frame; 65536 rays in one segment 6.5 frames/s.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import sys
from dataclasses import dataclass

import torch

BYTES_PER_SAMPLE = 2048  # peak memory per ray sample of a chunk (measured: 1.2 KB cpu preset, ~1.7 KB gpu preset)
CUDA_CHUNK_RANGE = (4096, 65536)


@dataclass(frozen=True)
class Speed:
    chunk: int  # rays per forward pass of an image
    segment: int  # samples per ray between early-termination checks
    max_points: int  # points per field query


CPU = Speed(chunk=4096, segment=16, max_points=32768)  # the reference path (every sample queried at once per chunk)
CPU_FAST = Speed(chunk=16384, segment=16, max_points=32768)  # the fast path


def cuda_chunk(samples_per_ray: int, free_bytes: int) -> int:
    """Rays per chunk that a quarter of `free_bytes` holds, as a power of two within CUDA_CHUNK_RANGE."""
    fit = free_bytes // 4 // (BYTES_PER_SAMPLE * max(samples_per_ray, 1))
    lo, hi = CUDA_CHUNK_RANGE
    return int(min(hi, max(lo, 2 ** int(math.log2(max(fit, 1))))))


def by_device(device: torch.device, samples_per_ray: int, fast: bool = False) -> Speed:
    """The automatic settings on `device` for a model of `samples_per_ray` samples (CUDA: from its free memory now)
    and the render path (fast: nerf/marching.composite_marching)."""
    if device.type != "cuda":
        tune_cpu_allocator()
        return CPU_FAST if fast else CPU
    chunk = cuda_chunk(samples_per_ray, torch.cuda.mem_get_info(device)[0])
    return Speed(chunk=chunk, segment=samples_per_ray, max_points=chunk * samples_per_ray)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest: allocations up to 32 MiB come from the heap, not a fresh mmap
TRIM_THRESHOLD = 2**30  # and freed memory up to 1 GiB stays in the process for the next allocation
_allocator_tuned = False


def tune_cpu_allocator() -> bool:
    """Keep the CPU's large temporaries (a [32768, 64] activation is 8 MiB) in the process between uses: by default
    glibc maps each allocation above 128 KiB to fresh pages and returns them when freed, so every layer of every
    query pays page faults on its output (a third of the time of a bias copy in the profile). The PyTorch CPU tuning
    guide's answer is another allocator (jemalloc, tcmalloc); glibc's own thresholds do the same here. Measured
    (benchmarks/NOTES.md): 0.168 -> 0.156 s per 128 px frame. Linux with glibc only; returns whether it was set."""
    global _allocator_tuned
    if _allocator_tuned or not sys.platform.startswith("linux"):
        return _allocator_tuned
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    except (OSError, AttributeError):  # not glibc
        ok = False
    _allocator_tuned = ok
    return ok
