"""Device presets: auto picks by device, keys the user sets win, the resolved config records the values."""
import pytest
import torch

from nerf.config import as_dict, parse, save_resolved
from nerf.presets import PRESETS, resolve_preset


def test_auto_follows_the_device():
    assert resolve_preset("auto", "cpu") == "cpu"
    assert resolve_preset("auto", "cuda") == "gpu"
    assert resolve_preset("auto", "auto") == ("gpu" if torch.cuda.is_available() else "cpu")
    assert resolve_preset("none", "cuda") == "none"


def test_cpu_preset_fills_unset_keys_only(tmp_path):
    conf = tmp_path / "subject.txt"
    conf.write_text("datadir = /d/subject\nn_rand = 1024\n")
    cfg = parse(["--config", str(conf), "--device", "cpu", "--hash_levels", "8"])
    cpu = PRESETS["cpu"]
    assert cfg.train.preset == "cpu"
    assert cfg.train.n_rand == 1024  # from the config file: kept
    assert cfg.model.hash_levels == 8  # from the command line: kept
    assert cfg.train.iters == cpu["iters"] and cfg.data.img_size == cpu["img_size"]
    assert cfg.data.train_supersample == 2 and cfg.data.for_training().img_size == 2 * cpu["img_size"]
    assert cfg.render.hash_samples == cpu["hash_samples"] and cfg.model.hash_log2_table == cpu["hash_log2_table"]
    assert "preset cpu" in cfg.preset_note and "n_rand" in cfg.preset_note.split("kept")[0].split("(your")[1]
    path = tmp_path / "resolved.txt"
    save_resolved(path, cfg)
    again = parse(["--config", str(path)])
    assert as_dict(again) == as_dict(cfg)


def test_gpu_and_none_presets():
    gpu = parse(["--datadir", "/d/x", "--preset", "gpu"])
    assert gpu.model.hash_levels == PRESETS["gpu"]["hash_levels"] and gpu.data.img_size == PRESETS["gpu"]["img_size"]
    none = parse(["--datadir", "/d/x", "--preset", "none", "--device", "cpu"])
    assert none.train.iters == 20000 and none.model.hash_levels == 16 and none.data.img_size == 0
    assert gpu.data.train_supersample == 1 and none.data.train_supersample == 1


def test_generated_config_trains_in_cpu_size():
    """configs/example.txt has no hand-tuned speed keys: on a CPU the preset sizes the run."""
    ex = parse(["--config", "configs/example.txt", "--device", "cpu"])
    assert ex.train.n_rand == PRESETS["cpu"]["n_rand"] and ex.train.iters == PRESETS["cpu"]["iters"]


def test_bad_preset_is_refused():
    with pytest.raises(SystemExit):
        parse(["--datadir", "/d/x", "--preset", "fast"])
