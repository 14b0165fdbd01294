"""Camera pose schedules for rendering new speech: the training poses ping-ponged, one static pose, or a JSON file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def pingpong_indices(n_poses: int, n: int) -> np.ndarray:
    """Indices 0..n_poses-1, n_poses-2..1, 0..., repeated to length n -> int [n]."""
    if n_poses < 1:
        raise ValueError("no poses to render with")
    if n_poses == 1:
        return np.zeros(n, np.int64)
    cycle = np.concatenate([np.arange(n_poses), np.arange(n_poses - 2, 0, -1)])  # period 2 * n_poses - 2
    return cycle[np.arange(n) % len(cycle)]


def load_pose_file(path: str | Path) -> np.ndarray:
    """A JSON file of poses -> float32 [F,4,4] camera-to-world matrices (head frame, OpenGL camera).

    Accepts a list of 4x4 matrices or a transforms.json-like {"frames": [{"transform_matrix": 4x4}, ...]}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pose file not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if isinstance(data, dict):
        if not isinstance(data.get("frames"), list):
            raise ValueError(f"{path}: expected a list of 4x4 matrices or {{\"frames\": [{{\"transform_matrix\"}}]}}")
        try:
            data = [f["transform_matrix"] for f in data["frames"]]
        except (KeyError, TypeError):
            raise ValueError(f"{path}: every frame needs a 'transform_matrix'") from None
    try:
        poses = np.asarray(data, np.float32)
    except (ValueError, TypeError):
        raise ValueError(f"{path}: poses must be 4x4 number matrices") from None
    if poses.ndim != 3 or poses.shape[1:] != (4, 4) or len(poses) == 0:
        raise ValueError(f"{path}: expected [F,4,4] poses, got shape {list(poses.shape)}")
    if not np.isfinite(poses).all():
        raise ValueError(f"{path}: poses contain NaN or inf")
    return poses


def pose_schedule(mode: str, train_c2w: np.ndarray, n: int,
                  static_index: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """The n camera poses [n,4,4] to render: `train` (ping-ponged), `static` (frame static_index), or a JSON file
    (ping-ponged too); and which of train_c2w's frames each is the pose of (int [n]; None for a file)."""
    train_c2w = np.asarray(train_c2w, np.float32)
    if mode == "train":
        idx = pingpong_indices(len(train_c2w), n)
        return train_c2w[idx], idx
    if mode == "static":
        if not -len(train_c2w) <= static_index < len(train_c2w):
            raise ValueError(f"--pose_index {static_index}: the training split has {len(train_c2w)} poses")
        return np.repeat(train_c2w[static_index][None], n, axis=0), np.full(n, static_index % len(train_c2w))
    poses = load_pose_file(mode)
    return poses[pingpong_indices(len(poses), n)], None
