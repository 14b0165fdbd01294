"""The data contract's constants (docs/DESIGN.md section 4): frame rate, audio rate, the semantic classes,
their colours, and the mediapipe face-oval loop."""
from __future__ import annotations

import numpy as np

FPS = 25  # frames per second of a processed clip (AD-NeRF's)
SAMPLE_RATE = 16000  # Hz of aud.wav and of every audio the feature extractors see
HOP = SAMPLE_RATE // FPS  # audio samples per video frame (640)
MAX_FRAME_SIZE = 512  # px: the largest image size a preset trains at (nerf/presets.py gpu; AD-NeRF's 450-512):
#                       step 3 scales larger crops down to it unless --size says otherwise

# parsing/classes.json: index = position (background must be 0: it takes the final transmittance)
CLASSES = ["background", "face", "brows", "eyes", "ears", "nose", "inner_mouth", "lips", "neck", "torso", "hair",
           "hands", "unseen"]
UNTRAINED_CLASSES = ("hands", "unseen")  # no ray is drawn there: the field has no input for hands that move in
#                                          front of it, and `unseen` pixels (a stabilised frame's filled edges) are made up
TORSO_CLASSES = ("neck", "torso")  # the classes the semantic deformation gate treats as torso
SHOULDER_CLASSES = ("torso",)  # what deform_gate height+torso adds to the height gate: the torso above the jaw line
MOUTH_CLASSES = ("lips", "inner_mouth")  # the mouth's classes (the sampler's mouth rays, mouth_refine's rays)


def class_ids(names: list[str], wanted: tuple[str, ...]) -> list[int]:
    """The indices in `names` of those `wanted` classes that it has (a dataset's parsing may lack some)."""
    return [names.index(c) for c in wanted if c in names]

# mediapipe face-mesh indices around the face, as a closed loop
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]

PALETTE = np.array([  # RGB per class index (CLASSES order), then spares; background black
    (0, 0, 0), (255, 200, 150), (140, 70, 20), (0, 120, 255), (255, 140, 0), (255, 255, 0), (160, 0, 160),
    (255, 0, 60), (0, 200, 120), (60, 60, 200), (120, 80, 40), (200, 200, 200), (0, 255, 255), (255, 0, 255),
], np.uint8)


def class_palette(n: int) -> np.ndarray:
    """Colours uint8 [n,3] for class indices 0..n-1 (debug sheets, TensorBoard and semantic videos alike); past the
    table's end the spares repeat."""
    idx = np.arange(max(n, 1))
    spares = len(PALETTE) - len(CLASSES)
    idx = np.where(idx < len(PALETTE), idx, len(CLASSES) + (idx - len(CLASSES)) % spares)
    return PALETTE[idx]
