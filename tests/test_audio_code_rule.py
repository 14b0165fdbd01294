"""audio_code left unset: the learned per-frame audio code joins the mouth input only where the audio hardly predicts
the mouth (nerf/mouth_shape.audio_code_note); a value the user sets wins; the run's config.txt and checkpoint say
what was trained."""
from __future__ import annotations

import math

import pytest

from nerf import mouth_shape
from nerf.mouth_shape import audio_code_note


def test_the_rule_on_held_out_r():
    assert audio_code_note([0.95, 0.85]) is None  # the sample: the audio predicts the mouth
    assert audio_code_note([0.9, 0.1]) is None  # one output predicted is enough
    line = audio_code_note([-0.35, 0.10])  # wolfgang: a silent clip trained on unrelated speech
    assert line is not None and "held-out r -0.35 / 0.10" in line and "audio_code = true" in line
    assert audio_code_note([math.nan, math.nan]) is None  # a shape that never changes


@pytest.mark.parametrize("weak_r, extra, code", [(1.01, (), True), (-1.01, (), False),
                                                 (1.01, ("--audio_code", "false"), False)])
def test_the_trainer_turns_the_code_on_only_when_unset(tmp_path, capsys, monkeypatch, weak_r, extra, code):
    from nerf.config import parse
    from nerf.trainer import Trainer
    from tests.render_fixtures import tiny_subject

    monkeypatch.setattr(mouth_shape, "WEAK_R", weak_r)  # 1.01: any held-out r counts as "hardly predicts"
    root = tiny_subject(tmp_path / "d", n_frames=12)
    cfg = parse(["--datadir", str(root), "--preset", "none", "--img_size", "16", "--iters", "1", "--basedir",
                 str(tmp_path / "logs"), "--expname", "x", *extra])
    trainer = Trainer(cfg)
    assert trainer.cfg.model.audio_code is code
    assert trainer.pipeline.model.code_dim == (trainer.cfg.model.aud_code_dim if code else 0)
    assert trainer.pipeline.model.mouth is not None  # the shape stays an input either way
    assert ("learned per-frame audio code to tell its frames apart" in capsys.readouterr().out) is (code and not extra)
    assert trainer.fingerprint["audio_code"] is code


def test_turned_on_by_the_rule_it_starts_as_a_run_given_the_flag(tmp_path, monkeypatch):
    """The same initial weights as `--audio_code true` (the rebuild is seeded again), so the run reproduces."""
    import torch

    from nerf.config import parse
    from nerf.trainer import Trainer
    from tests.render_fixtures import tiny_subject

    monkeypatch.setattr(mouth_shape, "WEAK_R", 1.01)
    root = tiny_subject(tmp_path / "d", n_frames=12)
    args = ["--datadir", str(root), "--preset", "none", "--img_size", "16", "--iters", "1", "--basedir",
            str(tmp_path / "logs")]
    auto = Trainer(parse([*args, "--expname", "auto"])).pipeline.state_dict()
    given = Trainer(parse([*args, "--expname", "given", "--audio_code", "true"])).pipeline.state_dict()
    assert auto.keys() == given.keys()
    assert all(torch.equal(auto[k], given[k]) for k in auto)
