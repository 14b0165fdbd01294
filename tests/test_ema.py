"""The moving average of the weights (nerf/ema.py) and how training uses it: validation and the saved model are the
average, the live weights ride along for --resume, ema_decay = 0 is the last iterate."""
import pytest
import torch
from torch import nn

from nerf.checkpoint import load_checkpoint
from nerf.ema import WeightAverage
from tests.test_train_smoke import _records, _train, tiny  # noqa: F401 (tiny: the module's dataset fixture)


def test_average_follows_the_warmed_up_decay():
    """After updates with values v_1..v_n the average is the closed form of min(decay, (1+k)/(10+k)) lerps."""
    lin = nn.Linear(3, 2)
    avg = WeightAverage(lin, decay=0.5)
    expect = lin.weight.detach().clone()
    for k, value in enumerate([1.0, 2.0, 4.0, -1.0]):
        with torch.no_grad():
            lin.weight.fill_(value)
        d = min(0.5, (1 + k) / (10 + k))
        expect = d * expect + (1 - d) * value
        avg.update(lin)
    assert avg.updates == 4
    assert torch.allclose(avg.params["weight"], expect)
    assert [round(min(0.999, (1 + k) / (10 + k)), 4) for k in (0, 90, 8990)] == [0.1, 0.91, 0.999]


def test_applied_swaps_in_the_average_and_back():
    lin = nn.Linear(3, 2)
    avg = WeightAverage(lin, decay=0.9)
    with torch.no_grad():
        lin.weight.add_(1.0)
    live = lin.weight.detach().clone()
    with avg.applied(lin):
        assert torch.equal(lin.weight, avg.params["weight"]) and not torch.equal(lin.weight, live)
    assert torch.equal(lin.weight, live)
    with pytest.raises(RuntimeError):
        with avg.applied(lin):
            raise RuntimeError("a failing validation")
    assert torch.equal(lin.weight, live)  # restored after an error too


@pytest.mark.parametrize("decay", [1.0, 1.5, -0.1])
def test_bad_decay_is_one_line_error(tmp_path, tiny, capsys, decay):  # noqa: F811
    rc, _ = _train(tmp_path, tiny, "--ema_decay", str(decay))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err == [f"error: ema_decay must be in (0, 1) (0 turns the average off), got {decay}"]


def test_saved_model_is_the_average_of_the_live_weights(tmp_path, tiny):  # noqa: F811
    """ema_decay 0.5, 3 iterations: the checkpoint's model differs from the live weights it carries, by the
    amount the last step moved them at most, and validation scored the averaged model (its PSNR is the one the
    checkpoint renders, test_render's load_run uses the model)."""
    rc, run = _train(tmp_path, tiny, "--ema_decay", "0.5", iters=3, name="avg")
    assert rc == 0
    state = load_checkpoint(run / "ckpt" / "latest.pt")
    live, model = state["live_params"], state["model"]
    assert state["ema_updates"] == 3 and set(live) <= set(model)
    moved = [float((model[k] - live[k]).abs().max()) for k in live]
    assert max(moved) > 0  # the average is not the last iterate
    rc, off = _train(tmp_path, tiny, "--ema_decay", "0", iters=3, name="off")
    state_off = load_checkpoint(off / "ckpt" / "latest.pt")
    assert rc == 0 and "live_params" not in state_off
    for k, v in live.items():  # same seed, same steps: the live weights are the run without an average
        assert torch.allclose(v, state_off["model"][k], atol=1e-5), k
    assert _records(run)[-1]["psnr"] != _records(off)[-1]["psnr"]


def test_resume_without_an_average_starts_one(tmp_path, tiny):  # noqa: F811
    """A checkpoint written with ema_decay 0 resumes with the default average, and one with an average resumes
    with ema_decay 0 from its live weights."""
    rc, run = _train(tmp_path, tiny, "--ema_decay", "0", iters=2, name="r")
    rc2, run = _train(tmp_path, tiny, "--resume", "true", iters=3, name="r")
    assert rc == rc2 == 0
    state = load_checkpoint(run / "ckpt" / "latest.pt")
    assert state["iteration"] == 3 and state["ema_updates"] == 1
    rc3, run = _train(tmp_path, tiny, "--resume", "true", "--ema_decay", "0", iters=4, name="r")
    state4 = load_checkpoint(run / "ckpt" / "latest.pt")
    assert rc3 == 0 and state4["iteration"] == 4 and "live_params" not in state4


def test_resume_with_damaged_live_weights_is_one_line_error(tmp_path, tiny, capsys):  # noqa: F811
    rc, run = _train(tmp_path, tiny, iters=2, name="d")
    path = run / "ckpt" / "latest.pt"
    state = torch.load(path, weights_only=True)
    first = sorted(state["live_params"])[0]
    del state["live_params"][first]
    torch.save(state, path)
    capsys.readouterr()
    rc, _ = _train(tmp_path, tiny, "--resume", "true", iters=3, name="d")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err == [f"error: {path}: live_params lacks 1 of the model's parameters, first {first}"]
    assert torch.load(path, weights_only=True)["iteration"] == 2  # the checkpoint is kept
