"""Speed settings by device (nerf/speed.py): the CPU's and CUDA's automatic values, the user's values winning, and
render.py / evaluate.py not inheriting a run's saved values (another machine may render it)."""
from __future__ import annotations

import re

import pytest
import torch

import nerf.pipeline as pipeline_mod
from nerf.runs import load_run
from nerf.speed import CPU, CPU_FAST, Speed, by_device, cuda_chunk
from tests.render_fixtures import train_tiny

GB = 10**9


@pytest.mark.parametrize("free_gb, samples, chunk", [(140, 128, 65536), (24, 128, 16384), (8, 128, 4096),
                                                     (0, 128, 4096), (12, 48, 16384)])
def test_cuda_chunk_fits_a_quarter_of_free_memory(free_gb, samples, chunk):
    assert cuda_chunk(samples, free_gb * GB) == chunk
    if chunk > 4096:  # the chosen chunk's samples fit in a quarter of the free memory at BYTES_PER_SAMPLE
        assert chunk * samples * 2048 <= free_gb * GB / 4


def test_cuda_settings_one_segment_and_the_whole_chunk_per_query(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (24 * GB, 80 * GB))
    assert by_device(torch.device("cuda", 0), 128) == Speed(chunk=16384, segment=128, max_points=16384 * 128)
    assert by_device(torch.device("cpu"), 128) == CPU == Speed(4096, 16, 32768)
    assert by_device(torch.device("cpu"), 128, fast=True) == CPU_FAST == Speed(16384, 16, 32768)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("speed"))


def _marching_kwargs(run, monkeypatch) -> dict:
    """The keyword settings the pipeline gives composite_marching when rendering one frame."""
    seen = {}
    real = pipeline_mod.composite_marching

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline_mod, "composite_marching", spy)
    code = run.model.condition(torch.zeros(1, run.model.code_dim), None)[0]
    run.pipeline.render_frame(run.ds, run.ds.c2w[0], code, semantics=False)
    return seen


def test_render_ignores_the_runs_saved_speed_settings(tiny_run, monkeypatch):
    cfg_path = tiny_run["run_dir"] / "config.txt"
    text = cfg_path.read_text()
    for key, value in (("render_chunk", 123), ("march_segment", 5), ("max_points", 77),  # as a GPU run saved them
                       ("cpu_mlp_precision", "float32"), ("cpu_kernels", "torch")):  # as another CPU's user chose
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
        assert n == 1, key
    cfg_path.write_text(text)
    run = load_run(["--config", str(tiny_run["config"])])
    rc = run.cfg.render
    assert (rc.chunk, rc.march_segment, rc.max_points) == (0, 0, 0)
    assert (rc.cpu_mlp_precision, rc.cpu_kernels) == ("bfloat16", "auto")
    assert run.pipeline.auto_speed(run.device) == CPU_FAST  # the run renders on the fast path
    kw = _marching_kwargs(run, monkeypatch)
    assert (kw["segment"], kw["max_points"]) == (16, 32768)


def test_the_users_speed_settings_win(tiny_run, monkeypatch):
    run = load_run(["--config", str(tiny_run["config"]), "--render_chunk", "100", "--march_segment", "4",
                    "--max_points", "999"])
    assert run.pipeline.chunk == 100
    kw = _marching_kwargs(run, monkeypatch)
    assert (kw["segment"], kw["max_points"]) == (4, 999)


def test_cpu_allocator_tuned_on_linux():
    """glibc's mallopt thresholds are set when the CPU settings are first chosen (Linux with glibc)."""
    import sys

    from nerf import speed

    speed.by_device(torch.device("cpu"), 48)
    if sys.platform.startswith("linux"):
        assert speed.tune_cpu_allocator() is True


def test_render_speed_benchmark_times_a_run_of_todays_defaults(tiny_run):
    """benchmarks/render_speed.py on a trained run of the default model (no learned audio code: the condition is
    the mouth shape and the eye input alone). It built its frame condition from aud_code_dim and broke on every
    such run."""
    from benchmarks.render_speed import _measure

    job = {"expname": tiny_run["expname"], "size": 16, "device": "cpu", "frames": 2, "max_seconds": 30.0,
           "threads": 1, "skip": True, "path": "fast",
           "config_args": ["--config", str(tiny_run["config"]), "--basedir", str(tiny_run["basedir"])]}
    r = _measure(job)
    assert r["frames"] == 2 and r["fps"] > 0 and r["backbone"] == "hash"
