"""The learned per-frame code (frame_code, RAD-NeRF / ER-NeRF's individual codes, smooth in time): keyframe codes
interpolated at each frame's time in the clip join the field's condition; held-out frames take the code at their
time, renders at `--pose train` the code of the frame whose pose they use. Left unset, it is turned on only where
the audio hardly predicts the mouth (nerf/mouth_shape.frame_code_note); a value the user sets wins; the run's
config.txt and checkpoint say what was trained."""
from __future__ import annotations

import math

import pytest
import torch

from nerf import mouth_shape
from nerf.mouth_shape import frame_code_note


def test_the_rule_on_held_out_r():
    assert frame_code_note([0.95, 0.85], 8) is None  # the sample: the audio predicts the mouth
    assert frame_code_note([0.9, 0.1], 8) is None  # one output predicted is enough
    line = frame_code_note([-0.35, 0.10], 8)  # wolfgang: a silent clip trained on unrelated speech
    assert line is not None and "held-out r -0.35 / 0.10" in line and "frame_code = 8" in line
    assert frame_code_note([math.nan, math.nan], 8) is None  # a shape that never changes


def _trainer(tmp_path, *extra):
    from nerf.config import parse
    from nerf.trainer import Trainer
    from tests.render_fixtures import tiny_subject

    root = tiny_subject(tmp_path / "d", n_frames=12)
    cfg = parse(["--datadir", str(root), "--preset", "none", "--img_size", "16", "--iters", "1", "--basedir",
                 str(tmp_path / "logs"), "--expname", "x", *extra])
    return Trainer(cfg)


@pytest.mark.parametrize("weak_r, extra, dim", [(1.01, (), 8), (-1.01, (), 0), (1.01, ("--frame_code", "0"), 0),
                                                (1.01, ("--audio_code", "true"), 0), (-1.01, ("--frame_code", "3"), 3)])
def test_the_trainer_turns_the_code_on_only_when_unset(tmp_path, capsys, monkeypatch, weak_r, extra, dim):
    monkeypatch.setattr(mouth_shape, "WEAK_R", weak_r)  # 1.01: any held-out r counts as "hardly predicts"
    trainer = _trainer(tmp_path, *extra)
    model = trainer.pipeline.model
    assert trainer.cfg.model.frame_code == dim and model.frame_dim == dim
    assert model.cond_dim == model.code_dim + dim + 2 + 1  # [audio code, frame code, mouth shape, eye]
    if dim:
        assert model.frame_codes.shape[1] == dim and model.frame_ids.tolist() == trainer.train_ds.img_ids.tolist()
    assert model.mouth is not None  # the shape stays an input either way
    assert ("learned code of the frame's time in the clip" in capsys.readouterr().out) is (dim == 8)
    assert trainer.fingerprint["frame_code"] == dim


def test_turned_on_by_the_rule_it_starts_as_a_run_given_the_flag(tmp_path, monkeypatch):
    """The same initial weights as `--frame_code 8` (the rebuild is seeded again), so the run reproduces."""
    monkeypatch.setattr(mouth_shape, "WEAK_R", 1.01)
    auto = _trainer(tmp_path / "a").pipeline.state_dict()
    given = _trainer(tmp_path / "b", "--frame_code", "8").pipeline.state_dict()
    assert auto.keys() == given.keys() and "model.frame_codes" in auto
    assert all(torch.equal(auto[k], given[k]) for k in auto)


def test_the_code_is_a_function_of_the_frames_time_in_the_clip(tmp_path):
    step = 4
    trainer = _trainer(tmp_path, "--frame_code", "4", "--frame_code_step", str(step))
    model = trainer.pipeline.model
    first, last = int(trainer.train_ds.img_ids.min()), int(trainer.train_ds.img_ids.max())
    assert tuple(model.frame_codes.shape) == ((last - first) // step + 2, 4)  # keyframes past the last
    assert not model.frame_codes.detach().any()  # every frame alike at first: the field starts from the mean
    with torch.no_grad():
        model.frame_codes.copy_(torch.randn_like(model.frame_codes))
    keys = model.frame_codes.detach()
    at = torch.tensor([first, first + step, first + step // 4, first - 50, last + 10 ** 4, last])
    code = model.frame_code(at, 6).detach()
    assert torch.allclose(code[:2], keys[:2])  # on a keyframe: its code
    assert torch.allclose(code[2], 0.75 * keys[0] + 0.25 * keys[1])  # between: linear
    assert torch.allclose(code[3], keys[0])  # before the first training frame: its code
    assert torch.allclose(code[4], code[5])  # after the last: the last training frame's (not the keyframe past it)
    w = (last - first) / step - (len(keys) - 2)
    assert torch.allclose(code[5], (1 - w) * keys[-2] + w * keys[-1]) and w < 1
    cond = model.condition(torch.zeros(2, 0), None, None, at[:2])
    assert torch.allclose(cond[:, :4], keys[:2])  # [frame code, mouth shape, eye]
    assert torch.allclose(model.condition(torch.zeros(1, 0), None)[0, :4], keys[0])  # None: the first frame's


def test_training_moves_only_the_keyframes_about_the_batch_frames(tmp_path):
    step = 3
    trainer = _trainer(tmp_path, "--frame_code", "4", "--frame_code_step", str(step), "--n_rand", "8")
    before = trainer.pipeline.model.frame_codes.detach().clone()
    ids = trainer.train_ds.img_ids
    f = int(next(i for i in range(len(ids)) if (ids[i] - ids.min()) % step))  # between two keyframes
    trainer.sampler.sample = lambda n: (torch.full((n,), f), torch.zeros(n, dtype=torch.long),  # all rays: frame f
                                        torch.arange(n) % 16, torch.zeros(n, dtype=torch.long))
    trainer.step(1)  # (iteration 0's learning rate is 0: the warm-up)
    moved = (trainer.pipeline.model.frame_codes.detach() != before).any(1).nonzero()[:, 0].tolist()
    k = int(ids[f] - ids.min()) // step
    assert moved == [k, k + 1]


def test_renders_take_the_code_of_the_frame_whose_pose_they_use(tmp_path, monkeypatch, capsys):
    """A trained run with a per-frame code: --pose train uses the code at each pose's training frame, --pose static
    at its frame, a poses file the code of the training frame nearest in camera position; held-out frames the code
    at their own time in the clip."""
    import json

    import numpy as np

    from nerf.evaluation import evaluate_run
    from nerf.render_video import render_video
    from nerf.runs import load_run
    from tests.av_media import make_tone
    from tests.render_fixtures import train_tiny

    t = train_tiny(tmp_path, extra=("--frame_code", "4"))
    seen = []
    run = load_run(["--config", str(t["config"])])
    original = run.pipeline.frame_codes
    monkeypatch.setattr(run.pipeline, "frame_codes", lambda *a, **k: seen.append(k.get("frames")) or original(*a, **k))
    wav = make_tone(tmp_path / "s.wav", seconds=0.4)  # 10 frames
    n_train = len(run.ds)
    render_video(run, wav, tmp_path / "a.mp4", pose="train")
    ids = np.asarray(run.ds.img_ids)
    expected = ids[[min(i, 2 * (n_train - 1) - i) for i in range(10)]]  # ping-pong over the training poses
    assert seen[-1].tolist() == expected.tolist()
    render_video(run, wav, tmp_path / "b.mp4", pose="static", pose_index=2)
    assert seen[-1].tolist() == [int(ids[2])] * 10
    poses = tmp_path / "poses.json"
    poses.write_text(json.dumps(run.ds.c2w[[3, 1]].numpy().tolist()))
    capsys.readouterr()
    render_video(run, wav, tmp_path / "c.mp4", pose=str(poses))  # the training frames nearest in camera position
    assert seen[-1].tolist() == [int(ids[3]), int(ids[1])] * 5
    assert "nearest in camera position" in capsys.readouterr().out
    val = load_run(["--config", str(t["config"])], split="val")
    val_codes = val.pipeline.frame_codes
    monkeypatch.setattr(val.pipeline, "frame_codes", lambda *a, **k: seen.append(k.get("frames")) or val_codes(*a, **k))
    evaluate_run(val, tmp_path / "eval", video=False)
    assert seen[-1].tolist() == np.asarray(val.ds.img_ids).tolist()  # held-out frames: their own time
