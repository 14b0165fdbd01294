"""Checkpoints: round trip of model, optimiser, sampler, iteration and RNG; fingerprint mismatch is one line."""
import pytest
import torch

from nerf.checkpoint import load_checkpoint, save_checkpoint, set_rng_states
from nerf.dataset import DataConfig, TalkingDataset
from nerf.sampler import SamplerConfig, SemanticSampler
from tests.nerf_fixtures import make_tiny_dataset


def _setup(tmp_path):
    root = make_tiny_dataset(tmp_path / "d", n_frames=12, size=16)
    ds = TalkingDataset(DataConfig(datadir=str(root)), "train")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sampler = SemanticSampler(ds, SamplerConfig(update_every=1), seed=0)
    return model, opt, sampler


def _train_steps(model, opt, sampler, k):
    for _ in range(k):
        f, y, x, cls = sampler.sample(16)
        loss = model(torch.randn(16, 3)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sampler.update(cls, torch.rand(16))


def test_round_trip_continues_exactly(tmp_path):
    model, opt, sampler = _setup(tmp_path)
    _train_steps(model, opt, sampler, 3)
    fp = {"backbone": "hash", "n_classes": 11, "aud_dim": 16}
    path = tmp_path / "run" / "ckpt" / "latest.pt"
    save_checkpoint(path, model=model, optimizer=opt, sampler=sampler, iteration=3, fingerprint=fp, time_s=1.5)
    assert path.is_file() and not list(path.parent.glob(".tmp-*"))
    _train_steps(model, opt, sampler, 2)  # the reference continuation
    ref = [p.detach().clone() for p in model.parameters()]

    model2, opt2, sampler2 = _setup(tmp_path)
    state = load_checkpoint(path, fp)
    model2.load_state_dict(state["model"])
    opt2.load_state_dict(state["optimizer"])
    sampler2.load_state_dict(state["sampler"])
    set_rng_states(state["rng"])
    assert state["iteration"] == 3 and state["time_s"] == 1.5
    _train_steps(model2, opt2, sampler2, 2)
    for a, b in zip(ref, model2.parameters()):
        assert torch.equal(a, b)


def test_fingerprint_mismatch_is_one_line(tmp_path):
    model, opt, sampler = _setup(tmp_path)
    path = tmp_path / "ckpt" / "latest.pt"
    save_checkpoint(path, model=model, optimizer=opt, sampler=sampler, iteration=1,
                    fingerprint={"backbone": "hash", "aud_dim": 16})
    with pytest.raises(ValueError) as e:
        load_checkpoint(path, {"backbone": "mlp", "aud_dim": 16})
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "backbone" in msg and "aud_dim" not in msg
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
