"""Which pixels show the person: mediapipe's selfie segmentation (shipped in the wheel, no download), used by step 3's
camera motion (corners are taken outside the person) and step 5's parsing."""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from common.quiet import quiet_native_stderr


def person_probability(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """float32 [H,W] per frame: probability that a pixel shows the person (mediapipe selfie segmentation)."""
    import mediapipe as mp

    with quiet_native_stderr(), mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
        for frame in frames:
            yield seg.process(np.ascontiguousarray(frame)).segmentation_mask.astype(np.float32)
