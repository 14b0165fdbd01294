"""Pin the CPU's vector instruction set to AVX2 for the whole suite (unless the caller set these variables).

Tests that train a tiny model compare numbers (a loss that falls 3x, a control model's slope) whose exact values
depend on float rounding, and that depends on the kernels torch, oneDNN and MKL pick for the CPU: on an AVX-512 /
AMX machine `tests/test_learning.py` trained to other numbers than on the AVX2 machines its thresholds were measured
on (benchmarks/NOTES.md, 2026-12-04). AVX2 is on every x86-64 machine this runs on, so the suite computes the same
numbers everywhere. Set before torch is imported (pytest imports this file first); subprocesses inherit it.
"""
import os
import platform

if platform.machine() in ("x86_64", "AMD64"):
    for _key, _value in (("ATEN_CPU_CAPABILITY", "avx2"), ("ONEDNN_MAX_CPU_ISA", "AVX2"),
                         ("MKL_ENABLE_INSTRUCTIONS", "AVX2")):
        os.environ.setdefault(_key, _value)
