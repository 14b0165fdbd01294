"""Hands over the face: which points a hand covers, and a tracker that ignores them."""
import numpy as np
from scipy.spatial.transform import Rotation

from data_util import occlusion, tracking
from tests.tracking_fixtures import aligned_rotation_error, synth_clip


def test_points_inside_the_grown_hand_hull_are_covered():
    ring = np.stack([np.cos(np.linspace(0, 2 * np.pi, 21)), np.sin(np.linspace(0, 2 * np.pi, 21))], 1)
    hand = 100 + 20 * ring  # a round "hand" of radius 20 px around (100, 100), size ~56 px
    lms = np.zeros((1, 478, 3))
    lms[0, :, :2] = [300, 300]  # far away
    lms[0, 0, :2] = [100, 100]  # centre
    lms[0, 1, :2] = [123, 100]  # 3 px outside the hull, inside its 0.12 * 56 = 6.8 px margin
    lms[0, 2, :2] = [130, 100]  # 10 px outside: not covered
    hands = np.full((1, 2, 21, 2), np.nan)
    hands[0, 0] = hand
    cov = occlusion.covered_points(lms, hands)
    assert cov[0, :3].tolist() == [True, True, False] and cov[0, 3:].sum() == 0
    assert occlusion.covered_share(cov)[0] == 2 / 468
    assert occlusion.frame_runs(np.array([3, 4, 5, 9, 11, 12])) == "3-5, 9, 11-12"


def test_the_hand_mask_is_the_grown_hull():
    """Step 5 labels a hand's pixels: its hull grown by the same margin as the covered points' (6.8 px here)."""
    ring = np.stack([np.cos(np.linspace(0, 2 * np.pi, 21)), np.sin(np.linspace(0, 2 * np.pi, 21))], 1)
    hands = np.full((2, 21, 2), np.nan)
    hands[1] = 100 + 20 * ring
    mask = occlusion.hand_mask(hands, 200, 240)
    assert mask[100, 100] and mask[100, 124] and mask[100, 76] and not mask[100, 131] and not mask[60, 100]
    assert abs(mask.sum() - np.pi * 27 ** 2) < 0.05 * np.pi * 27 ** 2  # radius 20 + 7 (the margin, rounded)
    assert not occlusion.hand_mask(np.full((2, 21, 2), np.nan), 50, 50).any()


def test_tracking_leaves_covered_points_out():
    """A hand over the left half of the face in frames 30-49 drags those (hallucinated) points 6 px down: with the
    occlusion mask the poses there stay right, without it they tilt."""
    clip = synth_clip(n=80, seed=1, expression=False)
    lms = clip.lms.copy()
    covered = np.zeros(lms.shape[:2], bool)
    half = np.nonzero(clip.head[:, 0] < np.median(clip.head[:, 0]))[0]
    covered[30:50, half] = True
    lms[30:50, half, 1] += 6.0
    errors = {}
    for name, cov in (("masked", covered), ("naive", None)):
        out = tracking.track(lms, clip.size, clip.size, verbose=False, covered=cov)
        err = aligned_rotation_error(Rotation.from_euler("xyz", out["euler"]), clip.rot)
        errors[name] = float(err[30:50].max())
    assert errors["masked"] < 1.5, errors
    assert errors["naive"] > 2 * errors["masked"], errors
