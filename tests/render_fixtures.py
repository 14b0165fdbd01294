"""A tiny trained run for the render/evaluate tests: the nerf fixture folder with mfcc audio metadata, 2 iterations."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import train
from data_util.audio_features import make_meta
from common.fileio import save_json
from tests.nerf_fixtures import make_tiny_dataset, mouth_landmarks

MFCC_DIM = 26  # data_util.audio_features mfcc: 13 coefficients + 13 deltas
FAST = ["--preset", "none", "--n_rand", "64", "--val_every", "2", "--ckpt_every", "2", "--val_frames", "1", "--device", "cpu",
        "--threads", "1", "--log_every", "1", "--n_samples", "16", "--n_importance", "16", "--hash_samples", "32",
        "--mlp_width", "64", "--hash_log2_table", "12", "--occ_res", "16", "--occ_every", "1"]


def tiny_subject(root: Path, n_frames: int = 12, size: int = 16) -> Path:
    """make_tiny_dataset with D = 26 features, an aud_meta.json for the mfcc extractor (unit statistics) and a
    landmarks.npy whose mouth opens with the audio (so the runs take the mouth-shape input)."""
    data = make_tiny_dataset(root, n_frames=n_frames, size=size, aud_dim=MFCC_DIM)
    np.save(data / "landmarks.npy", mouth_landmarks(n_frames))
    meta = make_meta("mfcc")
    meta.update(dim=MFCC_DIM, n_frames=n_frames, mean=[0.0] * MFCC_DIM, std=[1.0] * MFCC_DIM)
    save_json(data / "aud_meta.json", meta)
    return data


def train_tiny(root: Path, backbone: str = "hash", expname: str = "tiny", iters: int = 2,
               extra: tuple[str, ...] = ()) -> dict:
    """Train a run on a tiny subject under root (extra: more train.py flags); returns {"datadir", "basedir",
    "expname", "run_dir", "config"}."""
    data = tiny_subject(root / "data")
    basedir = root / "logs"
    config = root / f"{expname}.txt"
    config.write_text(f"datadir = {data}\nexpname = {expname}\nbasedir = {basedir}\nbackbone = {backbone}\n")
    rc = train.main(["--config", str(config), "--iters", str(iters), *FAST, *extra])
    assert rc == 0
    return {"datadir": data, "basedir": basedir, "expname": expname, "run_dir": basedir / expname, "config": config}
