"""The config parser: every field a flag and a config key, unique names, booleans, resolved config round trip,
component-qualified keys with the old names as aliases."""
import dataclasses
from dataclasses import dataclass, field

import pytest

from nerf.config import as_dict, build_parser, default_sections, parse, resolved_text, save_resolved


@dataclass
class _A:
    datadir: str = ""  # where the data is
    expname: str = ""
    n: int = 3
    rate: float = 0.5
    flag: bool = True
    backbone: str = field(default="hash", metadata={"choices": ("hash", "mlp")})
    ids: list[int] = field(default_factory=lambda: [1, 2])


@dataclass
class _B:
    other: float = 1e-3  # another knob
    weight: float = field(default=0.5, metadata={"key": "b_weight", "aliases": ("weight",)})  # a generic name
    maybe: float | None = None


SECTIONS = {"a": _A, "b": _B}


def test_flags_file_and_booleans(tmp_path):
    conf = tmp_path / "subject.txt"
    conf.write_text("datadir = /data/x\nn = 7\nflag = false\nids = [4, 5, 6]\n")
    cfg = parse(["--config", str(conf), "--rate", "0.25", "--backbone", "mlp"], SECTIONS)
    assert cfg.a.datadir == "/data/x" and cfg.a.n == 7 and cfg.a.flag is False and cfg.a.ids == [4, 5, 6]
    assert cfg.a.rate == 0.25 and cfg.a.backbone == "mlp" and cfg.b.maybe is None
    assert cfg.a.expname == "subject"  # default from the config file's name
    assert parse(["--flag", "true", "--datadir", "/d/clip/"], SECTIONS).a.expname == "clip"
    assert parse(["--flag"], SECTIONS).a.flag is True
    with pytest.raises(SystemExit):
        parse(["--flag", "maybe"], SECTIONS)
    with pytest.raises(SystemExit):
        parse(["--backbone", "cnn"], SECTIONS)
    assert "where the data is" in build_parser(SECTIONS).format_help()


def test_duplicate_names_rejected():
    @dataclass
    class _C:
        n: int = 1

    with pytest.raises(ValueError, match="'n' is defined twice"):
        build_parser({"a": _A, "c": _C})


def test_resolved_round_trip(tmp_path):
    cfg = parse(["--n", "9", "--flag", "false", "--maybe", "0.125", "--ids", "7", "--other", "3e-05"], SECTIONS)
    path = tmp_path / "run" / "config.txt"
    save_resolved(path, cfg)
    again = parse(["--config", str(path)], SECTIONS)
    assert as_dict(again) == as_dict(cfg)


def test_real_sections_unique_and_round_trip(tmp_path):
    """The project's dataclasses: unique keys, docs/DESIGN.md's flags, the resolved file re-loads."""
    sections = default_sections()
    names = [f.name for cls in sections.values() for f in dataclasses.fields(cls)]
    assert len(names) == len(set(names))
    for key in ("expname", "datadir", "backbone", "iters", "resume", "device", "basedir", "sampling",
                "semantic", "deform", "alpha", "beta", "lambda_sem", "n_rand"):
        assert key in names, key
    cfg = parse(["--datadir", "dataset/x", "--backbone", "mlp", "--iters", "5", "--resume", "true"])
    assert cfg.train.device == "auto" and cfg.train.basedir == "logs" and cfg.train.expname == "x"
    assert cfg.model.backbone == "mlp" and cfg.train.resume is True
    path = tmp_path / "config.txt"
    save_resolved(path, cfg)
    assert as_dict(parse(["--config", str(path)])) == as_dict(cfg)
    assert "backbone = mlp" in resolved_text(cfg)
    ex = parse(["--config", "configs/example.txt"])
    assert ex.data.datadir and ex.model.backbone in ("mlp", "hash")


def test_qualified_keys_and_aliases(tmp_path):
    assert parse(["--b_weight", "0.25"], SECTIONS).b.weight == 0.25
    assert parse(["--weight", "0.125"], SECTIONS).b.weight == 0.125  # the old name still works
    conf = tmp_path / "old.txt"
    conf.write_text("weight = 2.0\n")
    cfg = parse(["--config", str(conf)], SECTIONS)
    assert cfg.b.weight == 2.0 and "b_weight = 2.0" in resolved_text(cfg) and "\nweight =" not in resolved_text(cfg)

    @dataclass
    class _C:
        m: int = field(default=1, metadata={"key": "c_m", "aliases": ("n",)})

    with pytest.raises(ValueError, match="'n' is defined twice"):
        build_parser({"a": _A, "c": _C})


def test_old_run_config_keys_still_load(tmp_path):
    """A config.txt of a run from before the qualified keys (alpha, beta, ema, update_every, chunk, ...)."""
    old = tmp_path / "config.txt"
    old.write_text("datadir = dataset/x\nalpha = 0.25\nbeta = 2.0\nema = 0.5\nupdate_every = 3\np_min = 0.02\n"
                   "face_share = 0.5\nchunk = 123\nn_samples = 8\nn_importance = 9\nsmooth = 2\n")
    cfg = parse(["--config", str(old)])
    s = cfg.sampler
    assert (s.alpha, s.beta, s.ema, s.update_every, s.p_min, s.face_share) == (0.25, 2.0, 0.5, 3, 0.02, 0.5)
    assert (cfg.render.chunk, cfg.render.n_samples, cfg.render.n_importance, cfg.model.smooth) == (123, 8, 9, 2)
    text = resolved_text(cfg)
    for key in ("sampler_alpha = 0.25", "sampler_update_every = 3", "render_chunk = 123", "coarse_samples = 8",
                "audio_smooth = 2"):
        assert key in text
    assert as_dict(parse(["--alpha", "0.75"]))["sampler_alpha"] == 0.75


@pytest.mark.parametrize("script", ["train.py", "render.py", "evaluate.py"])
def test_help_prints(script):
    """`--help` lists every key: a help text with a % sign (argparse formats help strings) once made it a traceback."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, script, "--help"], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    assert "--config" in out.stdout and "Traceback" not in out.stderr


def test_percent_in_help_is_literal():
    @dataclass
    class S:
        share: int = 15  # 15% of the rays

    text = build_parser({"s": S}).format_help()
    assert "15% of the rays" in text
