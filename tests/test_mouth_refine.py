"""train.mouth_refine: per-frame corrections of the mouth-shape input, learned with the field (nerf/mouth_refine.py)."""
import numpy as np
import torch

import train
from nerf.checkpoint import load_checkpoint
from nerf.mouth_refine import MouthRefinement


def test_the_corrections_start_at_the_taught_shape_and_stay_within_the_bound():
    taught = torch.randn(30, 2)
    std = torch.tensor([0.2, 0.05])
    refine = MouthRefinement(taught, std, bound=0.5)
    frames = torch.tensor([3, 7, 7, 29])
    assert torch.equal(refine(frames), taught[frames])
    with torch.no_grad():
        refine.raw.fill_(100.0)
    moved = refine.shapes() - taught
    assert torch.all(moved <= 0.5 * std + 1e-6) and torch.allclose(moved, (0.5 * std).expand(30, 2), rtol=1e-4)
    line = refine.describe()
    assert "opening mean |offset| 0.500 std, 100% of the frames at the bound" in line
    assert "width mean |offset| 0.500 std, 100% of the frames at the bound" in line


def test_only_outputs_taught_their_measured_shape_are_refined():
    """mouth_teacher = auto teaches the width its held-out prediction where the audio predicts it poorly: that
    output keeps what it is taught (it is meant to be as wrong as the audio leaves it)."""
    from nerf.mouth_refine import training_shapes
    from nerf.mouth_shape import MouthPredictor, TRUST_R

    gen = torch.Generator().manual_seed(1)
    feats, measured = torch.randn(60, 16, 3, generator=gen), torch.rand(60, 2, generator=gen)
    mouth = MouthPredictor(aud_dim=3)
    mouth.fit(feats, measured)
    mouth.fit_info["cv_r"] = [TRUST_R + 0.1, TRUST_R - 0.1]
    taught, refine, note = training_shapes(mouth, measured, "auto", 0.5, 0.5)
    assert refine.refined == (True, False) and "the measured opening, the held-out width" in note
    with torch.no_grad():
        refine.raw.fill_(3.0)
    moved = refine.shapes() - taught
    assert float(moved[:, 0].min()) > 0.4 * float(mouth.shape_std[0]) and float(moved[:, 1].abs().max()) == 0
    assert "width" not in refine.describe()
    assert training_shapes(mouth, measured, "held_out", 0.5, 0.5)[1] is None  # nothing measured: nothing to refine
    assert training_shapes(mouth, measured, "measured", 0.5, 0.0)[1] is None  # the key off
    assert training_shapes(None, None, "measured", 0.5, 0.5) == (None, None, "")


def test_the_corrections_undo_the_measurement_noise_of_a_field_that_draws_the_true_shape():
    """A fixed 'field' draws each frame from its true shape; taught noisy shapes, the corrections learned from the
    drawing's error bring the input most of the way back to the truth."""
    gen = torch.Generator().manual_seed(0)
    truth = torch.rand(200, 2, generator=gen)  # [F,2]
    noise = 0.03 * torch.randn(200, 2, generator=gen)
    draw_w = torch.randn(2, 40, generator=gen)

    def draw(shape):  # [U,2] -> [U,40] "pixels"
        return torch.tanh(3 * shape @ draw_w)

    refine = MouthRefinement(truth + noise, truth.std(0), bound=0.4)
    opt = torch.optim.Adam(refine.parameters(), lr=0.05)
    for _ in range(400):
        frames = torch.randint(0, 200, (64,), generator=gen)
        loss = ((draw(refine(frames)) - draw(truth[frames])) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    before = noise.abs().mean()
    after = (refine.shapes() - truth).abs().mean()
    assert after < 0.25 * before, (float(before), float(after))


def test_a_run_learns_the_corrections_saves_them_and_resumes_only_with_them(tmp_path, capsys):
    from tests.render_fixtures import FAST, tiny_subject

    data = tiny_subject(tmp_path / "data")
    base = ["--datadir", str(data), "--basedir", str(tmp_path / "logs"), "--expname", "r", *FAST]
    assert train.main([*base, "--iters", "2", "--mouth_refine", "0.5", "--mouth_teacher", "measured"]) == 0
    run = tmp_path / "logs" / "r"
    state = load_checkpoint(run / "ckpt" / "latest.pt")
    saved = np.load(run / "mouth_refined.npz")
    assert state["mouth_refine"].shape == saved["taught"].shape == saved["corrected"].shape
    assert len(saved["img_ids"]) == len(saved["taught"])
    assert np.all(np.abs(saved["corrected"] - saved["taught"]) <= 0.5 * saved["taught"].std(0) + 1e-6)
    out = capsys.readouterr().out
    assert "mouth input corrected per training frame" in out and "; refitted: mouth input: audio" in out
    assert train.main([*base, "--iters", "4", "--mouth_refine", "0.5", "--mouth_teacher", "measured",
                       "--resume", "true"]) == 0
    assert train.main([*base, "--iters", "6", "--resume", "true", "--mouth_refine", "0"]) == 1
    assert "trained with mouth-shape corrections; resume with the mouth_refine of its config.txt" in \
        capsys.readouterr().err
    old = ["--datadir", str(data), "--basedir", str(tmp_path / "logs"), "--expname", "old", *FAST,
           "--mouth_teacher", "measured"]
    assert train.main([*old, "--iters", "2", "--mouth_refine", "0"]) == 0
    assert train.main([*old, "--iters", "4", "--resume", "true", "--mouth_refine", "0.5"]) == 1
    assert "trained without mouth-shape corrections; resume with --mouth_refine 0" in capsys.readouterr().err


def test_without_the_key_training_frames_see_the_taught_shapes(tmp_path):
    from nerf.config import parse
    from nerf.trainer import Trainer
    from tests.render_fixtures import tiny_subject

    root = tiny_subject(tmp_path / "d", n_frames=12)
    cfg = parse(["--datadir", str(root), "--preset", "none", "--img_size", "16", "--iters", "1", "--basedir",
                 str(tmp_path / "logs"), "--expname", "x", "--mouth_teacher", "measured", "--mouth_refine", "0"])
    trainer = Trainer(cfg)
    assert trainer.refine is None and len(trainer.optimizer.param_groups) == 1
    assert torch.equal(trainer.train_mouth, trainer.train_ds.mouth)
    default = Trainer(parse(["--datadir", str(root), "--preset", "none", "--img_size", "16", "--iters", "1",
                             "--basedir", str(tmp_path / "logs"), "--expname", "y", "--mouth_teacher", "measured"]))
    assert default.refine is None  # off by default


def test_only_the_mouths_rays_move_the_offsets():
    """frame_rows gives a frame one row for its lips / inner-mouth rays and one for the rest; the rest's row sees the
    offsets detached, so a torso ray's loss cannot teach a frame's mouth input."""
    from nerf.mouth_refine import frame_rows

    names = ["background", "face", "inner_mouth", "lips", "torso"]
    frame = torch.tensor([4, 4, 1, 1, 7])
    cls = torch.tensor([3, 4, 0, 2, 4])  # frame 4: lips + torso; frame 1: background + inner mouth; frame 7: torso
    rows, learns, inv = frame_rows(frame, cls, names)
    assert rows[inv].tolist() == frame.tolist()
    assert learns[inv].tolist() == [True, False, False, True, False]
    refine = MouthRefinement(torch.zeros(8, 2), torch.ones(2), bound=0.5)
    out = refine(rows, learns)[inv]  # [N,2] per ray
    (out[1] + out[4]).sum().backward()  # the loss of the torso rays alone
    assert float(refine.raw.grad.abs().sum()) == 0
    out = refine(rows, learns)[inv]
    out[0].sum().backward()  # a lips ray
    assert float(refine.raw.grad[4].abs().sum()) > 0
    no_labels = frame_rows(frame, torch.full((5,), -1), [])[1]
    assert no_labels.all()  # without a parsing every ray counts
