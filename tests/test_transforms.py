"""Step 8 (transforms): camera-to-world poses that cast rays through the head points, the split, the rects,
and the generated training config (parses, holds the head between near and far, never clobbers a user's edit)."""
from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

from data_util import tracking, transforms
from data_util.context import StepContext
from tests.tracking_fixtures import synth_clip, write_frames


def ray_distance(frames: list[dict], focal: float, cx: float, cy: float, uv: np.ndarray,
                 points: np.ndarray) -> np.ndarray:
    """[N,P] distance from each head point [P,3] to the ray of its pixel uv [N,P,2] (continuous coordinates:
    pixel column i spans [i, i+1], so u = i + 0.5 at its centre) of each frame, rays as docs/DESIGN.md section 5 says."""
    out = []
    for fr, pix in zip(frames, uv):
        c2w = np.array(fr["transform_matrix"])
        d_cam = np.stack([(pix[:, 0] - cx) / focal, -(pix[:, 1] - cy) / focal, -np.ones(len(pix))], 1)
        d = d_cam @ c2w[:3, :3].T
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        v = points - c2w[:3, 3]
        out.append(np.linalg.norm(v - (v * d).sum(1, keepdims=True) * d, axis=1))
    return np.array(out)


def make_subject(tmp_path, clip, params, n_aud: int | None = None) -> StepContext:
    out_dir = tmp_path / "dataset" / "subj"
    out_dir.mkdir(parents=True)
    np.save(out_dir / "landmarks.npy", clip.lms.astype(np.float32))
    tracking.save_params(out_dir / "track_params.pt", params)
    if n_aud is not None:
        np.save(out_dir / "aud.npy", np.zeros((n_aud, 16, 4), np.float32))
    return StepContext(name="subj", video=tmp_path / "x.mp4", out_dir=out_dir, config_dir=tmp_path / "configs")


def true_params(clip) -> dict:
    return {"focal": np.array([clip.focal]), "euler": clip.rot.as_euler("xyz"), "trans": clip.trans,
            "id": clip.head, "image_size": np.array([clip.size, clip.size]), "reproj_err": np.zeros(len(clip.trans)),
            "rigid": np.arange(10)}


def load(ctx: StepContext, split: str) -> dict:
    return json.loads((ctx.out_dir / f"transforms_{split}.json").read_text())


def test_rays_hit_true_head_points(tmp_path):
    clip = synth_clip(n=22, noise=0.0, expression=False, seed=3)
    ctx = make_subject(tmp_path, clip, true_params(clip))
    transforms.run(ctx)
    meta = load(ctx, "train")
    assert (meta["cx"], meta["cy"], meta["h"], meta["w"]) == (128.0, 128.0, 256, 256)
    frames = meta["frames"] + load(ctx, "val")["frames"]
    dist = ray_distance(frames, meta["focal_len"], meta["cx"], meta["cy"], clip.lms[..., :2], clip.head)
    assert dist.max() < 1e-5  # head units (eye corners 0.1 apart); float32 storage of the pose


def test_rays_hit_tracked_head_points(tmp_path):
    """Tracking + transforms together: a ray through a landmark's pixel passes by the tracked 3D point."""
    clip = synth_clip(n=60, seed=4)
    params = tracking.track(clip.lms, clip.size, clip.size, verbose=False)
    ctx = make_subject(tmp_path, clip, params)
    transforms.run(ctx)
    meta = load(ctx, "train")
    frames = meta["frames"] + load(ctx, "val")["frames"]
    rigid = params["rigid"]
    dist = ray_distance(frames, meta["focal_len"], meta["cx"], meta["cy"], clip.lms[:, rigid, :2],
                        params["id"][rigid])
    assert np.median(dist) < 0.002  # 2% of the eye-corner distance (0.5 px noise is ~0.0009 here)
    assert np.percentile(dist, 99) < 0.006


def test_split_ids_and_rects(tmp_path):
    clip = synth_clip(n=22, noise=0.0, expression=False, seed=5)
    ctx = make_subject(tmp_path, clip, true_params(clip), n_aud=21)
    transforms.run(ctx)
    train, val = load(ctx, "train")["frames"], load(ctx, "val")["frames"]
    assert [f["img_id"] for f in train] == list(range(20))  # floor(10 * 22 / 11) = 20
    assert [f["img_id"] for f in val] == [20, 21]
    assert val[-1]["aud_id"] == 20  # clamped to aud.npy's 21 rows
    for f in train + val:
        x, y, w, h = f["face_rect"]
        pts = clip.lms[f["img_id"], :, :2]
        assert x <= pts[:, 0].min() and pts[:, 0].max() <= x + w
        assert y <= pts[:, 1].min() and pts[:, 1].max() <= y + h
        lx, ly, lw, lh = f["lips_rect"]
        assert x <= lx and lx + lw <= x + w and y <= ly and ly + lh <= y + h
        assert 0 < lw < 0.8 * w and 0 < lh < 0.5 * h


def test_split_sizes():
    assert transforms.split_index(300) == 272
    assert transforms.split_index(2) == 1
    with pytest.raises(Exception, match="at least 2 frames"):
        transforms.split_index(1)


def test_split_moves_when_a_hand_covers_the_last_frames():
    """The last 1/11 of the free frames validate when AD-NeRF's split would leave too few of them (or none to
    train)."""
    assert transforms.visible_split_index(22, set()) == 20
    assert transforms.visible_split_index(22, set(range(5, 12))) == 20  # a hand mid-clip: the split stays
    assert transforms.visible_split_index(22, set(range(15, 22))) == 13  # 15 free: frames 13, 14 validate
    assert transforms.visible_split_index(22, set(range(20))) == 21  # frames 20 and 21 free: one of each
    with pytest.raises(Exception, match=r"^occ.npy: a hand covers the face in 21 of 22 frames"):
        transforms.visible_split_index(22, set(range(21)), "occ.npy")


def test_short_training_part_is_named():
    """Under a minute of training video, one line says how long it is and that the mouth learns from it."""
    note = transforms.short_clip_note(272)
    assert note is not None and "272 training frames (11 s of video)" in note and "\n" not in note
    assert transforms.short_clip_note(1500) is None  # 60 s at 25 fps


def test_frames_under_a_hand_are_left_out_and_not_counted(tmp_path, capsys):
    """Frames a hand covers leave both splits; the config's header counts the frames kept."""
    clip = synth_clip(n=22, noise=0.0, expression=False, seed=5)
    ctx = make_subject(tmp_path, clip, true_params(clip), n_aud=22)
    covered = np.zeros((22, 478), bool)
    covered[3:8, :200] = True  # frames 3-7: 200 of the 468 mesh points under a hand
    np.save(ctx.out_dir / "occlusion.npy", covered)
    transforms.run(ctx)
    train, val = load(ctx, "train"), load(ctx, "val")
    assert [f["img_id"] for f in train["frames"]] == [i for i in range(20) if not 3 <= i <= 7]
    assert train["left_out"]["hand_over_face"] == [3, 4, 5, 6, 7] and val["left_out"]["hand_over_face"] == []
    assert "(15 training frames, 2 validation frames)" in (tmp_path / "configs" / "subj.txt").read_text()
    assert "15 training frames (1 s of video)" in capsys.readouterr().out


def test_hand_over_the_last_frames_moves_the_validation_part(tmp_path, capsys):
    clip = synth_clip(n=22, noise=0.0, expression=False, seed=5)
    ctx = make_subject(tmp_path, clip, true_params(clip), n_aud=22)
    covered = np.zeros((22, 478), bool)
    covered[15:, :200] = True  # the last 7 frames under a hand
    np.save(ctx.out_dir / "occlusion.npy", covered)
    transforms.run(ctx)
    assert [f["img_id"] for f in load(ctx, "val")["frames"]] == [13, 14]
    assert [f["img_id"] for f in load(ctx, "train")["frames"]] == list(range(13))
    assert "validation from frame 13 (not 20)" in capsys.readouterr().out


def test_config_parses_and_bounds_hold_the_head(tmp_path):
    clip = synth_clip(n=22, noise=0.0, expression=False, seed=6)
    ctx = make_subject(tmp_path, clip, true_params(clip))
    transforms.run(ctx)
    text = (ctx.config_dir / "subj.txt").read_text()
    assert text.startswith(transforms.HEADER)
    pairs = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            m = re.fullmatch(r"([a-z_]+) = (\S+)", line)
            assert m, line
            pairs[m[1]] = m[2]
    assert pairs["expname"] == "subj" and pairs["datadir"] == str(ctx.out_dir)
    near, far = float(pairs["near"]), float(pairs["far"])
    mean_z = np.linalg.norm(clip.trans, axis=1).mean()
    assert near == pytest.approx(mean_z - 0.2, abs=1e-3) and far == pytest.approx(mean_z + 0.4, abs=1e-3)
    depth = (np.matmul(clip.head, clip.rot.as_matrix().transpose(0, 2, 1)) + clip.trans[:, None])[..., 2]
    assert near < depth.min() - 0.1 and far > depth.max() + 0.2  # face, back of the head and shoulders inside

    from nerf.config import parse

    cfg = parse(["--config", str(ctx.config_dir / "subj.txt")])
    assert cfg.data.near == pytest.approx(near) and cfg.data.far == pytest.approx(far)
    assert cfg.data.datadir == str(ctx.out_dir)


def test_config_of_another_folder_of_the_same_name_is_kept(tmp_path, capsys):
    """Processing a subject of the same name into another --root keeps configs/<name>.txt pointing at the first
    folder; the second folder's config goes beside its data, and one line says so."""
    clip = synth_clip(n=22, noise=0.0, expression=False, seed=7)
    first = make_subject(tmp_path, clip, true_params(clip))
    transforms.run(first)
    path = first.config_dir / "subj.txt"
    kept = path.read_text()
    second = make_subject(tmp_path / "other_root", clip, true_params(clip))
    second = dataclasses.replace(second, config_dir=first.config_dir)
    capsys.readouterr()
    transforms.run(second)
    assert path.read_text() == kept
    own = second.out_dir / "config.txt"
    assert transforms.config_datadir(own) == second.out_dir
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "another folder named 'subj'" in ln]
    assert len(lines) == 1 and str(own) in lines[0]
    transforms.run(first)  # the first folder again: its own config, rewritten in place
    assert path.read_text() == kept and transforms.config_datadir(path) == first.out_dir


def test_config_never_clobbers_user_edits(tmp_path):
    clip = synth_clip(n=22, noise=0.0, expression=False, seed=7)
    ctx = make_subject(tmp_path, clip, true_params(clip))
    path = ctx.config_dir / "subj.txt"
    transforms.run(ctx)
    generated = path.read_text()
    transforms.run(ctx)  # unedited generated file: rewritten (same content)
    assert path.read_text() == generated

    edited = generated.replace("far = ", "far = 9 #")  # the user edits a generated file, header kept
    path.write_text(edited)
    transforms.run(ctx)
    assert path.read_text() == edited

    path.write_text("expname = mine\n")  # a hand-written config
    transforms.run(ctx)
    assert path.read_text() == "expname = mine\n"
    assert transforms.is_generated_unedited(path) is False
