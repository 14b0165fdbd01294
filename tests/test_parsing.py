"""Step 5 (parsing): class maps from the face mesh + selfie segmentation + geometry, on the sample clip."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from data_util import parsing as P
from data_util.context import StepContext
from common.errors import PreprocessError
from common.fileio import save_image
from data_util.landmarks import detect_landmarks
from sample_data.clip import render_clip

SIZE = 192


@pytest.fixture(scope="module")
def parsed():
    clip = render_clip(size=SIZE, seconds=3.0, seed=2, progress=False)
    lms = detect_landmarks(clip.frames)
    prob = list(P.smooth_in_time(P.person_probability(clip.frames)))
    labels = np.stack([P.parse_frame(l, p, f) for l, p, f in zip(lms, prob, clip.frames)])
    return clip, lms, labels


def test_smooth_in_time_is_a_centred_mean():
    maps = [np.full((2, 2), float(i), np.float32) for i in range(5)]
    assert [m[0, 0] for m in P.smooth_in_time(iter(maps))] == [0.5, 1.0, 2.0, 3.0, 3.5]
    assert [m[0, 0] for m in P.smooth_in_time(iter(maps[:1]))] == [0.0]


def test_regions_where_they_belong(parsed):
    clip, lms, labels = parsed
    c = P.C
    for lm, lb in zip(lms[::10], labels[::10]):
        def at(points: list[int]) -> int:  # class at the centroid of these mesh points
            x, y = lm[points, :2].mean(0)
            return lb[int(y), int(x)]

        assert at([1]) == c["nose"] and at([468]) == c["eyes"] and at([52, 105]) == c["brows"]
        assert at([0, 13]) == c["lips"] and at([205]) == c["face"]  # upper lip, cheek
        assert lb[0, 0] == c["background"] and lb[0, -1] == c["background"]
        assert lb[-1, SIZE // 2] == c["torso"]
        top = int(lm[10, 1]) - SIZE // 24  # just above the forehead point
        assert lb[top, int(lm[10, 0])] == c["hair"]


def test_inner_mouth_only_when_the_mouth_is_open(parsed):
    clip, _, labels = parsed
    mouth = np.array([f["mouth"] for f in clip.gt["frames"]])
    area = (labels == P.C["inner_mouth"]).sum(axis=(1, 2))
    assert (area[mouth > 0.5] > 0).all()
    assert (area[mouth < 0.05] == 0).all()
    assert np.corrcoef(mouth, area)[0, 1] > 0.9


def test_no_flicker_of_large_regions(parsed):
    _, _, labels = parsed
    counts = np.stack([np.bincount(lb.ravel(), minlength=len(P.CLASSES)) for lb in labels]).astype(float)
    big = counts.mean(0) > 0.02 * SIZE * SIZE  # background, face, torso, hair
    change = np.abs(np.diff(counts[:, big], axis=0)) / counts[:-1, big]
    assert big.sum() >= 3 and change.max() < 0.2, change.max(0)


def test_run_writes_maps_and_classes(tmp_path, parsed):
    clip, lms, labels = parsed
    ctx = StepContext(name="s", video=tmp_path / "s.mp4", out_dir=tmp_path / "s")
    for i, f in enumerate(clip.frames[:6]):
        save_image(ctx.img_dir / f"{i}.jpg", f)
    np.save(ctx.out_dir / "landmarks.npy", lms[:6])
    P.run(ctx)
    assert json.loads((ctx.parsing_dir / "classes.json").read_text())["classes"][6] == "inner_mouth"
    lb = cv2.imread(str(ctx.parsing_dir / "2.png"), cv2.IMREAD_UNCHANGED)
    assert lb.dtype == np.uint8 and lb.shape == (SIZE, SIZE)
    assert (lb == labels[2]).mean() > 0.97  # jpeg frames vs raw ones
    assert not (lb == P.C["hands"]).any()  # (no hands.npy: a dataset whose step 4 kept none)


def test_run_labels_the_hands_of_hands_npy(tmp_path, parsed):
    """A hand in frame 1 (step 4's hands.npy): its grown hull is `hands` over whatever was there; other frames
    are as without it."""
    clip, lms, labels = parsed
    ctx = StepContext(name="s", video=tmp_path / "s.mp4", out_dir=tmp_path / "s")
    for i, f in enumerate(clip.frames[:3]):
        save_image(ctx.img_dir / f"{i}.jpg", f)
    np.save(ctx.out_dir / "landmarks.npy", lms[:3])
    hands = np.full((3, 2, 21, 2), np.nan, np.float32)
    ring = np.stack([np.cos(np.linspace(0, 2 * np.pi, 21)), np.sin(np.linspace(0, 2 * np.pi, 21))], 1)
    hands[1, 0] = (SIZE / 2, SIZE - 30) + 20 * ring  # over the chest
    np.save(ctx.out_dir / "hands.npy", hands)
    P.run(ctx)
    maps = [cv2.imread(str(ctx.parsing_dir / f"{i}.png"), cv2.IMREAD_UNCHANGED) for i in range(3)]
    assert maps[1][SIZE - 30, SIZE // 2] == P.C["hands"] and maps[1][SIZE - 30, SIZE // 2 + 30] != P.C["hands"]
    assert 0.8 * np.pi * 22 ** 2 < (maps[1] == P.C["hands"]).sum() < 1.2 * np.pi * 27 ** 2
    assert not (maps[0] == P.C["hands"]).any() and (maps[0] == labels[0]).mean() > 0.97


def test_run_needs_matching_landmarks(tmp_path):
    ctx = StepContext(name="s", video=tmp_path / "s.mp4", out_dir=tmp_path / "s")
    with pytest.raises(PreprocessError, match="landmarks.npy: not found"):
        P.run(ctx)
    save_image(ctx.img_dir / "0.jpg", np.zeros((8, 8, 3), np.uint8))
    np.save(ctx.out_dir / "landmarks.npy", np.zeros((3, 478, 3), np.float32))
    with pytest.raises(PreprocessError, match="3 frames of landmarks but 1 images"):
        P.run(ctx)


def _axis(h: int = 80) -> np.ndarray:
    """v [h,h]: the face's up axis in half face heights, 0 at row h/2, +1 at row h/4 (top up)."""
    return np.repeat(((h / 2 - np.arange(h)) / (h / 4))[:, None], h, 1).astype(np.float32)


def test_a_collar_joined_to_the_hair_by_a_sliver_is_torso():
    v = _axis()
    hair, ears = np.zeros(v.shape, bool), np.zeros(v.shape, bool)
    hair[5:30, 20:60] = True  # the hair on the head (v > 0)
    hair[50:65, 2:18] = True  # a collar beside the neck, below the face's centre
    hair[28:52, 17:18] = True  # joined to the head's hair by a one-pixel sliver
    cut = P.detached_from_the_head(hair, ears, v, neck_px=2)
    assert cut[50:65, 2:17].all() and not cut[5:30, 20:60].any()


def test_long_hair_and_hair_joined_through_the_ears_stay_hair():
    v = _axis()
    hair, ears = np.zeros(v.shape, bool), np.zeros(v.shape, bool)
    hair[5:30, 20:60] = True
    hair[30:75, 20:30] = True  # long hair hanging from the head, 10 px wide
    ears[35:45, 55:65] = True  # an ear band beside the face ...
    hair[28:35, 55:60] = True
    hair[45:70, 55:65] = True  # ... with hair below it
    assert not P.detached_from_the_head(hair, ears, v, neck_px=2).any()
    assert P.detached_from_the_head(hair, np.zeros_like(ears), v, neck_px=2)[45:70, 55:65].all()


def test_the_sample_has_no_hair_below_the_mouth(parsed):
    """The sample's collar rises to the chin beside the neck, joined to the hair by a sliver: torso, not hair."""
    _, lms, labels = parsed
    below = [(lb[int(lm[[61, 291], 1].mean()):] == P.C["hair"]).sum() for lm, lb in zip(lms, labels)]
    assert np.mean(below) < 50  # pixels a frame below the mouth corners' row (without the rule: 424)
