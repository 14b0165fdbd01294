"""Ray samplers: the class-share formula, the floor, and that drawn rays follow the shares."""
import numpy as np
import pytest
import torch

import nerf.sampler as sampler_mod
from nerf.dataset import DataConfig, TalkingDataset
from nerf.sampler import SamplerConfig, SemanticSampler, UniformSampler, class_shares, make_sampler
from tests.nerf_fixtures import add_hands, make_tiny_dataset


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = make_tiny_dataset(tmp_path_factory.mktemp("tiny"), n_frames=12, size=32)
    return TalkingDataset(DataConfig(datadir=str(root)), "train")


def test_shares_follow_formula():
    area = np.array([0.5, 0.3, 0.0, 0.15, 0.05])
    loss = np.array([0.01, 0.02, 9.0, 0.04, 0.08])
    p = class_shares(area, loss, alpha=0.5, beta=1.0, p_min=0.0)
    present = area > 0
    w = np.sqrt(area[present]) * loss[present] / loss[present].mean()
    assert np.allclose(p[present], w / w.sum(), atol=1e-12)
    assert p[2] == 0.0 and p.sum() == pytest.approx(1.0)
    # alpha=1, beta=0 is area-proportional (uniform over pixels)
    assert np.allclose(class_shares(area, loss, 1.0, 0.0, 0.0), area)


def test_floor_and_renormalisation():
    area = np.array([0.97, 0.02, 0.01, 0.0])
    loss = np.ones(4)
    p = class_shares(area, loss, alpha=1.0, beta=0.0, p_min=0.1)
    assert p[1] == pytest.approx(0.1) and p[2] == pytest.approx(0.1) and p[3] == 0.0
    assert p[0] == pytest.approx(0.8) and p.sum() == pytest.approx(1.0)
    # a floor above 1/n_present gives equal shares
    assert np.allclose(class_shares(area, loss, 1.0, 0.0, 0.9)[:3], 1 / 3)


def test_semantic_sampler_frequencies_match_shares(ds):
    s = SemanticSampler(ds, SamplerConfig(alpha=0.5, beta=1.0, p_min=0.02), seed=0)
    absent = [ds.class_names.index(n) for n in ("brows", "ears", "nose")]
    assert all(s.p[c] == 0 for c in absent)
    assert np.allclose(s.p, class_shares(s.area, np.ones(11), 0.5, 1.0, 0.02))
    f, y, x, cls = s.sample(20000)
    assert len(f) == 20000 and int(f.max()) < len(ds)
    assert torch.equal(ds.parsing[f, y, x].long(), cls)  # the class reported is the pixel's class
    freq = np.bincount(cls.numpy(), minlength=11) / 20000
    assert np.abs(freq - s.p).max() < 1e-3  # counts are split deterministically up to rounding


def test_uniform_within_class(ds):
    """Within a class, every pixel of that class in the training set is equally likely."""
    s = SemanticSampler(ds, SamplerConfig(alpha=1.0, beta=0.0, p_min=0.0), seed=1)
    assert np.allclose(s.p, s.area)
    torso = ds.class_names.index("torso")
    f, y, x, cls = s.sample(60000)
    m = cls == torso
    frames = np.bincount(f[m].numpy(), minlength=len(ds)) / int(m.sum())
    expect = s.counts[:, torso] / s.counts[:, torso].sum()
    assert np.abs(frames - expect).max() < 0.01


def test_two_stage_matches_flat(ds, monkeypatch):
    monkeypatch.setattr(sampler_mod, "FLAT_INDEX_LIMIT", 0)
    s = SemanticSampler(ds, SamplerConfig(), seed=0)
    assert s.flat is None
    f, y, x, cls = s.sample(4000)
    assert torch.equal(ds.parsing[f, y, x].long(), cls)
    lips = ds.class_names.index("lips")
    assert abs(float((cls == lips).float().mean()) - s.p[lips]) < 1e-3


def test_update_raises_hard_classes_and_is_periodic(ds):
    cfg = SamplerConfig(alpha=0.5, beta=1.0, p_min=0.0, update_every=3, ema=0.5)
    s = SemanticSampler(ds, cfg, seed=0)
    p0 = s.p.copy()
    lips, face = ds.class_names.index("lips"), ds.class_names.index("face")
    cls = torch.tensor([lips] * 4 + [face] * 4)
    loss = torch.tensor([1.0] * 4 + [0.1] * 4)
    s.update(cls, loss)
    s.update(cls, loss)
    assert np.array_equal(s.p, p0)  # not yet k=3 calls
    s.update(cls, loss)
    assert s.loss[lips] == pytest.approx(1.0) and s.loss[face] == pytest.approx(0.1)
    assert s.p[lips] / s.p[face] == pytest.approx(p0[lips] / p0[face] * 10, rel=1e-6)
    s.update(cls[:4], torch.full((4,), 0.0))
    assert s.loss[lips] == pytest.approx(0.5)  # EMA: 0.5 * 1.0 + 0.5 * 0.0


def test_state_dict_round_trip(ds):
    s = SemanticSampler(ds, SamplerConfig(update_every=1), seed=3)
    s.sample(100)
    s.update(torch.tensor([1, 7]), torch.tensor([0.2, 0.9]))
    state = s.state_dict()
    a = s.sample(500)
    t = SemanticSampler(ds, SamplerConfig(update_every=1), seed=99)
    t.load_state_dict(state)
    b = t.sample(500)
    assert all(torch.equal(u, v) for u, v in zip(a, b)) and np.array_equal(s.p, t.p)


def test_uniform_sampler_face_share(ds):
    s = UniformSampler(ds, SamplerConfig(sampling="uniform", face_share=0.95), seed=0)
    f, y, x, cls = s.sample(4000)
    r = torch.from_numpy(ds.face_rect)[f]
    inside = (x >= r[:, 0]) & (x < r[:, 0] + r[:, 2]) & (y >= r[:, 1]) & (y < r[:, 1] + r[:, 3])
    assert float(inside.float().mean()) == pytest.approx(0.95, abs=0.002)
    assert torch.equal(ds.parsing[f, y, x].long(), cls)
    s.update(cls, torch.zeros(4000))
    assert sum(s.shares().values()) == pytest.approx(1.0)
    state = s.state_dict()
    a = s.sample(10)
    s.load_state_dict(state)
    assert torch.equal(s.sample(10)[0], a[0])


def test_semantic_face_mix(ds):
    """`face_mix` of the rays are drawn inside the frames' face_rect, the rest by the class shares."""
    s = SemanticSampler(ds, SamplerConfig(face_mix=0.5, p_min=0.0), seed=0)
    f, y, x, cls = s.sample(20000)
    assert len(f) == 20000 and torch.equal(ds.parsing[f, y, x].long(), cls)
    r = torch.from_numpy(ds.face_rect)[f[10000:]]  # the face rays come last
    assert bool(((x[10000:] >= r[:, 0]) & (x[10000:] < r[:, 0] + r[:, 2]) & (y[10000:] >= r[:, 1])
                 & (y[10000:] < r[:, 1] + r[:, 3])).all())
    freq = np.bincount(cls[:10000].numpy(), minlength=11) / 10000
    assert np.abs(freq - s.p).max() < 1e-3  # the first half split by the shares as without the mix
    with pytest.raises(ValueError, match="sampler_face_mix = 1.5"):
        SemanticSampler(ds, SamplerConfig(face_mix=1.5))


def test_no_ray_is_drawn_on_a_hand(tmp_path):
    """A `hands` class (step 5 labels hands; common.constants.UNTRAINED_CLASSES): neither sampler draws a ray on
    one, the eye and face rays placed on one are dropped, and the other classes keep their shares."""
    hands = add_hands(make_tiny_dataset(tmp_path / "tiny", n_frames=12, size=32))
    hands_ds = TalkingDataset(DataConfig(datadir=str(tmp_path / "tiny")), "train")
    sem = SemanticSampler(hands_ds, SamplerConfig(face_mix=0.3, p_min=0.02), seed=0)
    assert sem.p[-1] == 0.0 and sem.p.sum() == pytest.approx(1.0)
    for s in (sem, UniformSampler(hands_ds, SamplerConfig(sampling="uniform", face_share=0.5), seed=0)):
        f, y, x, cls = s.sample(4000)
        assert not bool((cls == hands).any()) and torch.equal(hands_ds.parsing[f, y, x].long(), cls)
        assert 2000 < len(f) < 4000  # (the rays placed on the hand, a quarter of the frame, are dropped)


def test_make_sampler_errors(ds, tmp_path):
    with pytest.raises(ValueError, match="sampling = 'nope'"):
        make_sampler(ds, SamplerConfig(sampling="nope"))
    root = make_tiny_dataset(tmp_path / "ad", n_frames=12, size=16, adnerf=True)
    ad = TalkingDataset(DataConfig(datadir=str(root)), "train")
    with pytest.raises(ValueError, match="parsing"):
        SemanticSampler(ad, SamplerConfig())
    f, y, x, cls = UniformSampler(ad, SamplerConfig(sampling="uniform")).sample(8)
    assert (cls == -1).all()


def test_eye_rays_go_to_the_eyes_of_the_blink_frames(ds, tmp_path):
    """eye_share of the rays land about the projected eyes (mostly on eye pixels, far above their area), from
    frames drawn with weight 0.05 + |1 - openness|; without the eye input the draws are what they were."""
    root = make_tiny_dataset(tmp_path / "eyes", n_frames=22, size=32, eyes=True)
    eyes_ds = TalkingDataset(DataConfig(datadir=str(root)), "train")
    s = SemanticSampler(eyes_ds, SamplerConfig(eye_share=0.5), seed=0)
    assert s.eyes is not None
    f, y, x, cls = s.sample(8000)
    assert torch.equal(eyes_ds.parsing[f, y, x].long(), cls)
    f_eye, cls_eye = f[4000:], cls[4000:]
    eye_class = eyes_ds.class_names.index("eyes")
    on_eyes = float((cls_eye == eye_class).float().mean())
    assert on_eyes > 0.2 and on_eyes > 5 * s.area[eye_class]  # the rest: lids, skin around
    weight = 0.05 + np.abs(1 - eyes_ds.eye.numpy())
    freq = np.bincount(f_eye.numpy(), minlength=len(eyes_ds)) / 4000
    assert np.abs(freq - weight / weight.sum()).max() < 0.03
    plain = make_sampler(eyes_ds, SamplerConfig(eye_share=0.0), seed=0).sample(500)
    no_eye_input = make_sampler(ds, SamplerConfig(eye_share=0.05), seed=0)  # the fixture has no eye input
    assert no_eye_input.eyes is None and len(plain[0]) == 500
    reference = make_sampler(ds, SamplerConfig(eye_share=0.0), seed=0)
    assert all(torch.equal(a, b) for a, b in zip(no_eye_input.sample(500), reference.sample(500)))


def test_mouth_rays_fall_in_the_box_about_each_frames_mouth(ds):
    """mouth_share of the rays land in the frame's mouth box (lips and inner mouth, grown by half the box's width):
    on the mouth far above its area, the rest on the skin about it; no mouth classes: no such rays."""
    s = SemanticSampler(ds, SamplerConfig(mouth_share=0.5, eye_share=0.0), seed=0)
    assert s.mouth is not None
    f, y, x, cls = s.sample(4000)
    assert torch.equal(ds.parsing[f, y, x].long(), cls)
    f_m, y_m, x_m, cls_m = f[2000:], y[2000:], x[2000:], cls[2000:]
    mouth_ids = [ds.class_names.index("lips"), ds.class_names.index("inner_mouth")]
    on_mouth = float(torch.isin(cls_m, torch.tensor(mouth_ids)).float().mean())
    assert on_mouth > 4 * s.area[mouth_ids].sum(), (on_mouth, s.area[mouth_ids].sum())
    for frame in np.unique(f_m.numpy())[:5]:  # every ray inside the box grown from that frame's mouth pixels
        ys, xs = np.nonzero(np.isin(ds.parsing[frame].numpy(), mouth_ids))
        grow = sampler_mod.MOUTH_MARGIN * (xs.max() + 1 - xs.min())
        k = f_m == int(frame)
        assert x_m[k].min() >= xs.min() - grow - 1 and x_m[k].max() <= xs.max() + grow + 1
        assert y_m[k].min() >= ys.min() - grow - 1 and y_m[k].max() <= ys.max() + grow + 1
    names = list(ds.class_names)
    no_mouth = sampler_mod.MouthRays.of([m.numpy().reshape(-1) for m in ds.parsing],
                                        type("D", (), {"class_names": [n + "_" for n in names], "h": ds.h,
                                                       "w": ds.w})())
    assert no_mouth is None
    for bad in ({"mouth_share": 0.5, "face_mix": 0.5}, {"mouth_share": -0.5, "face_mix": 0.9}):
        with pytest.raises(ValueError, match="sampler_mouth_share"):
            SemanticSampler(ds, SamplerConfig(eye_share=0.0, **bad))
    few = SemanticSampler(ds, SamplerConfig(mouth_share=0.45, face_mix=0.45, eye_share=0.05), seed=0).sample(3)
    assert all(len(a) == len(few[0]) for a in few)  # rounding leaves no class rays: still one ray per draw
