"""TalkingDataset on the tiny generated folder: shapes, intrinsics, rays, audio windows, errors."""
import json

import numpy as np
import pytest
import torch

from nerf.dataset import DataConfig, TalkingDataset, get_rays
from tests.nerf_fixtures import CLASSES, HEAD_R, make_tiny_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"), n_frames=12, size=32)


def test_reads_our_folder(tiny):
    ds = TalkingDataset(DataConfig(datadir=str(tiny)), "train")
    assert len(ds) == 10 and (ds.h, ds.w) == (32, 32)
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (10, 32, 32, 3)
    assert ds.parsing.shape == (10, 32, 32) and ds.class_names == CLASSES
    assert ds.c2w.shape == (10, 4, 4) and ds.aud_dim == 16 and ds.n_classes == 11
    assert ds.focal == pytest.approx(40.0) and ds.cx == pytest.approx(16.0)
    assert ds.near == pytest.approx(0.5 - 0.2, abs=0.01) and ds.far == pytest.approx(0.9, abs=0.01)
    val = TalkingDataset(DataConfig(datadir=str(tiny)), "val")
    assert len(val) == 2 and val.img_ids.tolist() == [10, 11]


def test_downsample_scales_intrinsics(tiny):
    ds = TalkingDataset(DataConfig(datadir=str(tiny), downsample=2.0), "train")
    assert (ds.h, ds.w) == (16, 16) and ds.focal == pytest.approx(20.0) and ds.cx == pytest.approx(8.0)
    assert ds.images.shape == (10, 16, 16, 3) and ds.parsing.shape == (10, 16, 16)
    assert ds.bg.shape == (16, 16, 3)
    assert (ds.face_rect[:, 2] <= 16).all()
    ds8 = TalkingDataset(DataConfig(datadir=str(tiny), img_size=8), "val")
    assert (ds8.h, ds8.w) == (8, 8) and ds8.focal == pytest.approx(10.0)


@pytest.mark.parametrize("keys, train_size", [({"img_size": 8}, 16), ({"img_size": 16}, 32), ({"img_size": 32}, 32),
                                              ({"downsample": 4.0}, 16), ({"downsample": 2.0}, 32)])
def test_train_supersample_enlarges_training_images_up_to_the_source(tiny, keys, train_size):
    """train_supersample = 2: training images twice the rendered size, never past the 32 px source; the rays of
    a training pixel's 2x2 block average to the ray of the rendered pixel that covers it."""
    cfg = DataConfig(datadir=str(tiny), train_supersample=2, **keys)
    train, val = TalkingDataset(cfg.for_training(), "train"), TalkingDataset(cfg, "val")
    plain = TalkingDataset(DataConfig(datadir=str(tiny), **keys), "val")
    assert (train.h, train.w) == (train_size, train_size) and (val.h, val.w) == (plain.h, plain.w)
    if train.h == 2 * val.h:
        _, d_fine = get_rays(train.h, train.w, train.focal, train.cx, train.cy, train.c2w[0])
        _, d_coarse = get_rays(val.h, val.w, val.focal, val.cx, val.cy, train.c2w[0])
        fine = d_fine.reshape(val.h, 2, val.w, 2, 3).mean((1, 3)).reshape(-1, 3)
        assert torch.allclose(fine, d_coarse.to(fine.dtype), atol=1e-5)
    with pytest.raises(ValueError, match="train_supersample = 0"):
        DataConfig(datadir=str(tiny), train_supersample=0).for_training()


def test_rays_hit_the_head_where_parsing_says_head(tiny):
    """Rays through pixels labelled face/eyes/lips pass within the head radius of the origin."""
    ds = TalkingDataset(DataConfig(datadir=str(tiny)), "train")
    o, d = ds.frame_rays(0)
    assert o.shape == (32 * 32, 3) and d.shape == (32 * 32, 3)
    dn = d / d.norm(dim=-1, keepdim=True)
    dist = torch.cross(o, dn, dim=-1).norm(dim=-1)  # distance of the origin to each ray
    lab = ds.parsing[0].reshape(-1).long()
    face = (lab == CLASSES.index("face")) | (lab == CLASSES.index("lips"))
    assert dist[face].max() < HEAD_R * 1.02
    assert (dist[lab == 0] > HEAD_R * 0.98).all()
    # the camera-space z component of every direction is -1 (depth-parametrised rays)
    z_cam = (d @ ds.c2w[0, :3, :3])[:, 2]
    assert torch.allclose(z_cam, torch.full_like(z_cam, -1.0), atol=1e-5)


def test_get_rays_subset_matches_full_grid():
    c2w = torch.eye(4)
    o, d = get_rays(4, 5, 10.0, 2.5, 2.0, c2w)
    ys, xs = torch.tensor([0, 3, 2]), torch.tensor([4, 0, 2])
    o2, d2 = get_rays(4, 5, 10.0, 2.5, 2.0, c2w, ys, xs)
    assert torch.allclose(d[ys * 5 + xs], d2)
    assert torch.allclose(d2[2], torch.tensor([0.0, -0.05, -1.0]))  # pixel (2,2): x=(2.5-2.5)/10, y=-(2.5-2)/10
    o3, d3 = get_rays(4, 5, 10.0, 2.5, 2.0, c2w.expand(3, 4, 4), ys, xs)
    assert torch.allclose(d3, d2) and o3.shape == (3, 3)


def test_audio_windows_clamped(tiny):
    ds = TalkingDataset(DataConfig(datadir=str(tiny)), "train")
    win = ds.audio_windows(torch.tensor([0, 5]), smooth=2)
    assert win.shape == (2, 5, 16, 16)
    assert torch.equal(win[0, 0], ds.aud[0]) and torch.equal(win[0, 1], ds.aud[0]) and torch.equal(win[0, 4], ds.aud[2])
    assert torch.equal(win[1, 2], ds.aud[5])
    val = TalkingDataset(DataConfig(datadir=str(tiny)), "val")
    assert torch.equal(val.audio_windows(torch.tensor([1]), 2)[0, 4], ds.aud[11])  # clamped at the end


def test_aabb_contains_head_and_torso(tiny):
    ds = TalkingDataset(DataConfig(datadir=str(tiny)), "train")
    box = ds.aabb()
    assert box.shape == (6,)
    assert (box[:3] < -HEAD_R).all() and (box[3:] > HEAD_R).all()


def test_lazy_loading_matches_preload(tiny):
    a = TalkingDataset(DataConfig(datadir=str(tiny)), "train")
    b = TalkingDataset(DataConfig(datadir=str(tiny), preload=False), "train")
    assert b.images is None
    f, y, x = torch.tensor([0, 3, 3, 9]), torch.tensor([1, 5, 20, 31]), torch.tensor([2, 7, 16, 0])
    assert torch.equal(a.pixels(f, y, x), b.pixels(f, y, x))
    assert torch.equal(a.labels(f, y, x), b.labels(f, y, x))


def test_adnerf_folder(tmp_path):
    root = make_tiny_dataset(tmp_path / "ad", n_frames=12, size=32, adnerf=True)
    ds = TalkingDataset(DataConfig(datadir=str(root)), "train")
    assert ds.class_names is None and ds.parsing is None and ds.aud_dim == 29
    assert (ds.h, ds.w) == (32, 32)
    assert ds.labels(torch.tensor([0]), torch.tensor([0]), torch.tensor([0])) is None


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        TalkingDataset(DataConfig(datadir=str(tmp_path / "nothere")), "train")
    root = make_tiny_dataset(tmp_path / "t", n_frames=12, size=16)
    (root / "ori_imgs" / "3.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"3\.jpg"):
        TalkingDataset(DataConfig(datadir=str(root)), "train")
    np.save(root / "aud.npy", np.zeros((12, 8), np.float32))
    with pytest.raises(ValueError, match=r"aud\.npy.*\[N, 16, D\]"):
        TalkingDataset(DataConfig(datadir=str(root)), "train")
    (root / "transforms_val.json").write_text(json.dumps({"focal_len": 10}))
    with pytest.raises(ValueError, match=r"transforms_val\.json: no 'frames'"):
        TalkingDataset(DataConfig(datadir=str(root)), "val")
    (root / "transforms_train.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"transforms_train\.json"):
        TalkingDataset(DataConfig(datadir=str(root)), "train")


def test_zero_audio_control(tiny):
    ds = TalkingDataset(DataConfig(datadir=str(tiny)), "train")
    zero = TalkingDataset(DataConfig(datadir=str(tiny), zero_audio=True), "train")
    assert ds.aud.abs().sum() > 0 and zero.aud.abs().sum() == 0 and zero.aud.shape == ds.aud.shape
