"""The frame loop of render.py: a loaded run (nerf/runs.py) says new speech.

The new audio, at the subject's loudness (common/loudness.py) -> features (nerf/features.py), 10 s at a time ->
per-frame codes (Pipeline.frame_codes, attention smoothing when the checkpoint has it on, with the eye openness of
--blink: nerf/blinks.py) -> poses (nerf/poses.py) -> one frame per 1/25 s (N = ceil(duration * 25)) by
Pipeline.render_frame over the background -> (--full_frame: pasted into the original video's frame,
nerf/full_frame.py) -> H.264 mp4 with the input audio muxed (nerf/mp4.py), exactly the audio's length within one
frame.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from common.constants import class_palette
from common.fileio import save_image
from nerf.blinks import blink_schedule, closed_level
from nerf.features import SpeechFeatures
from nerf.full_frame import FullFrame
from nerf.mp4 import Mp4Writer, to_uint8
from nerf.poses import pose_schedule
from nerf.runs import LoadedRun

CHUNK_FRAMES = 250  # frames whose features and codes are computed together (10 s)


def iter_frames(run: LoadedRun, codes: Tensor, poses: Tensor, desc: str = "render"):
    """Render frame i with codes[i] [A] and poses[i] [4,4]; yields Pipeline.render_frame's dicts (progress bar)."""
    from tqdm import tqdm

    for i in tqdm(range(len(codes)), desc=desc, unit="frame", dynamic_ncols=True):
        yield run.pipeline.render_frame(run.ds, poses[i], codes[i])


def iter_speech_frames(run: LoadedRun, speech: SpeechFeatures, poses: Tensor, eye: Tensor | None = None,
                       chunk: int = CHUNK_FRAMES, semantics: bool = True, frames: Tensor | None = None):
    """Frames for new speech (eye [n]: each frame's eye openness, None: open; frames [n]: the clip frame numbers of
    the training frames whose poses they use, for a per-frame code, None: the first), its features and codes computed
    `chunk` frames at a time (memory stays that of a short file); a progress bar shows frames/s and the ETA.
    semantics=False: rgb only (no "labels"), a little faster."""
    from tqdm import tqdm

    with tqdm(total=speech.n, desc="render", unit="frame", dynamic_ncols=True) as bar:
        for a in range(0, speech.n, chunk):
            b = min(speech.n, a + chunk)
            feats, a0 = speech.chunk(a, b)
            if run.cfg.data.zero_audio:  # a control model trained without audio sees none here either
                feats = np.zeros_like(feats)
            codes = run.pipeline.frame_codes(torch.from_numpy(feats), torch.arange(a - a0, b - a0),
                                             eye=None if eye is None else eye[a:b],
                                             frames=None if frames is None else frames[a:b])  # [b-a, cond]
            for i in range(a, b):
                yield run.pipeline.render_frame(run.ds, poses[i], codes[i - a], semantics)
                bar.update(1)


def render_poses(run: LoadedRun, pose: str, n: int, pose_index: int = 0) -> tuple[Tensor, Tensor | None]:
    """The n camera poses [n,4,4] that `pose` names (poses.pose_schedule over run.ds's frames) and, for a model with a
    per-frame code (frame_code), the clip numbers [n] of the training frames whose code each takes: the frame whose
    pose it is, or for poses from a file the one nearest in camera position (the view the field has seen with that
    frame's code); None without the code."""
    poses, of = pose_schedule(pose, run.ds.c2w.numpy(), n, pose_index)
    poses = torch.from_numpy(poses)
    if not run.model.frame_dim:
        return poses, None
    if of is None:
        of = torch.cdist(poses[:, :3, 3].float(), run.ds.c2w[:, :3, 3].float()).argmin(1).numpy()
        print(f"note: {run.run_dir} has a per-frame code (frame_code); poses from {pose} belong to no training frame, "
              "so each takes the expression of the training frame nearest in camera position")
    return poses, run.ds.frame_numbers[torch.as_tensor(of)]


def blink_depth(run: LoadedRun) -> float:
    """How far `--blink natural` closes the eyes: the openness the model's closure code was trained to call shut
    (kept with the model), else the training clip's (nerf/blinks.closed_level)."""
    closed = getattr(run.model, "eye_closed", None)
    if closed is not None:
        return float(closed)
    return closed_level(None if run.ds.eye is None else run.ds.eye.numpy())


def render_video(run: LoadedRun, aud: str | Path, out: str | Path, pose: str = "train", pose_index: int = 0,
                 save_frames: str | Path | None = None, semantic_video: bool = False, full_frame: bool = False,
                 blink: str = "natural", blink_seed: int = 0, loudness: str = "match") -> dict:
    """Render new speech to `out` (.mp4); full_frame: in the original video's frame (the semantic video stays
    square); blink: natural | none | a file of per-frame eye openness (nerf/blinks.py); loudness: match | keep
    (nerf/features.SpeechFeatures).
    Returns {"frames", "seconds", "fps", "out", "semantic_out", "size", "eye"}."""
    import time

    out = Path(out)
    paste = FullFrame.from_dataset(run.ds.root) if full_frame else None  # its errors come before any work
    speech = SpeechFeatures(aud, run.ds.root, run.ds.aud_dim, loudness)
    n = speech.n  # = ceil(T / 640) = ceil(duration * 25) for a wav
    poses, frames = render_poses(run, pose, n, pose_index)
    eye = torch.from_numpy(blink_schedule(blink, n, blink_depth(run), blink_seed))
    if not run.model.eye_dim and blink != "none":
        print(f"note: {run.run_dir} was trained without the eye input; --blink {blink} has no effect")
    audio_file = None if speech.wav is None else Path(aud)
    sem_out = out.with_name(out.stem + "_semantic.mp4") if semantic_video else None
    if semantic_video and not run.class_names:
        raise ValueError(f"{run.run_dir}: --semantic_video needs a model with the semantic head")
    size = paste.size if paste is not None else (run.ds.w, run.ds.h)
    writers = [Mp4Writer(out, *size, audio=audio_file)]
    if sem_out is not None:
        writers.append(Mp4Writer(sem_out, run.ds.w, run.ds.h, audio=audio_file))
    pal = class_palette(len(run.class_names))
    if save_frames is not None:
        Path(save_frames).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        for i, res in enumerate(iter_speech_frames(run, speech, poses, eye, semantics=sem_out is not None,
                                                   frames=frames)):
            frame = to_uint8(res["rgb"])
            if paste is not None:
                frame = paste.paste(frame)
            writers[0].write(frame)  # streamed to ffmpeg: no frame is kept
            if sem_out is not None:
                writers[1].write(pal[res["labels"].numpy()])
            if save_frames is not None:
                save_image(Path(save_frames) / f"{i:06d}.png", frame)
    except BaseException:
        for w in writers:
            w.abort()
        raise
    seconds = time.perf_counter() - t0
    for w in writers:
        w.close()
    return {"frames": n, "seconds": seconds, "fps": n / max(seconds, 1e-9), "out": str(out),
            "semantic_out": None if sem_out is None else str(sem_out), "audio_seconds": speech.audio_seconds,
            "size": size, "eye": eye.numpy()}
