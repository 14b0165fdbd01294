"""The bundled sample clip: a talking portrait with known head poses and mouth opening (docs/DESIGN.md section 7).

    python -m sample_data.clip [--out dataset/vids/sample.mp4] [--size 256] [--seconds 12] [--seed 0]

The head is a textured 3D mesh built from scikit-image's astronaut photo: mediapipe face mesh gives 478 3D points
(x*w, y*h, z*w pixels), its tessellation gives the triangles, the photo gives the texture; a ring of extra
vertices past the face oval carries the hair, and mediapipe selfie segmentation gives the alpha. Per frame the head
is rotated/translated (smooth, yaw/pitch/roll within +-15 degrees), the jaw opens with the loudness of a
synthetic voice (sample_data.speech) and the lips take the shape of what it says (spread, rounded, shut: its
visemes), the eyelids blink (sample_data.motion), and the mesh is projected with a pinhole camera of known focal and
rasterised (painter's order, per-triangle affine texture maps) over a torso layer that moves a little on its own
and a static synthetic background. Writes the mp4 (H.264 yuv420p, 25 fps, AAC 16 kHz audio) and
`<stem>_gt.json` with the ground truth (conventions inside the file).
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.io import wavfile
from tqdm import tqdm

from common.constants import FPS
from common.constants import SAMPLE_RATE as SR
from common.errors import PreprocessError
from common.ffmpeg import ffmpeg_exe
from common.fileio import atomic_path, save_json
from sample_data.motion import (blink_closure, blink_offset, expression_bump, expression_offsets, expression_spans,
                                hold_still, lip_width_offset, make_motion, rotation, torso_motion)
from sample_data.scene import (EYE_DIST, FACE_FRACTION, FOCAL_PER_SIZE, INNER_LIP, JAW_DROP, SS, Head, build_scene,
                               make_background, project, rasterise)
from sample_data.speech import mouth_opening, synth_speech_syllables, visemes


@dataclass
class Clip:
    frames: np.ndarray     # [N, size, size, 3] uint8 RGB
    audio: np.ndarray      # [T] float32, SR Hz
    gt: dict


@dataclass
class FaceTracks:
    """What the face does in each of the clip's N frames, from its voice and its expression spans."""
    audio: np.ndarray    # [T] float32, SR Hz
    spans: list          # [(first, last)] frames where the head holds still and the jaw drops (sample_data.motion)
    mouth: np.ndarray    # [N] opening in [0, 1]
    width: np.ndarray    # [N] lip width in [-1, 1] (0 in the spans)
    shut: np.ndarray     # [N] lips shut in [0, 1]
    viseme: list         # [N] the vowel said, 'm' or '-'
    brow: np.ndarray     # [N] brow raise in [0, 1]
    closure: np.ndarray  # [N] eyelid closure in [0, 1]
    in_span: np.ndarray  # [N] bool: the frame lies in one of the spans


def face_tracks(n_frames: int, seed: int, voice: int, blinks: bool) -> FaceTracks:
    """The voice (its syllables' visemes shape the lips, its loudness opens the jaw), the expression spans (the head
    holds still, the jaw drops with a sustained "aah" the audio explains, the brows rise) and the blinks."""
    spans = expression_spans(n_frames)
    held = tuple((a / FPS, (b + 1) / FPS) for a, b in spans)
    audio, sylls = synth_speech_syllables(n_frames / FPS, seed=seed, sr=SR, voice=voice, held=held)
    brow = expression_bump(n_frames, spans)
    width, shut, viseme = visemes(sylls, n_frames)
    mouth = np.maximum(mouth_opening(audio, SR, FPS)[:n_frames] * (1 - shut), brow)
    closure = blink_closure(n_frames, spans, seed) if blinks else np.zeros(n_frames)
    in_span = np.zeros(n_frames, bool)
    for a, b in spans:
        in_span[a:b + 1] = True
    width[in_span] = 0.0  # the expression spans: a plain jaw drop
    return FaceTracks(audio, spans, mouth, width, shut, viseme, brow, closure, in_span)


@dataclass
class Framing:
    """Where the photo's head sits in a size x size frame: its pinhole camera and the photo's crop."""
    focal: float           # pixels
    c: float               # principal point (c, c)
    k: float               # output pixels per photo pixel
    crop_x0: float         # the crop's top-left corner, photo pixels
    crop_y0: float
    z0: float              # the head's distance at rest, head units
    t_rest: np.ndarray     # [3] the head's translation at rest


def framing(face: dict, px_to_unit: float, size: int) -> Framing:
    """The frame FACE_FRACTION filled by the photo's face (face: build_scene's face dict), the head at the distance
    where the photo's scale is kept."""
    crop = (face["bottom"] - face["top"]) / FACE_FRACTION  # photo pixels shown in the frame
    crop_x0, crop_y0 = face["cx"] - crop / 2, face["top"] - 0.25 * crop
    k, focal, c = size / crop, FOCAL_PER_SIZE * size, size / 2
    z0 = focal * px_to_unit / k
    o = face["origin_px"]
    t_rest = np.array([(k * (o[0] - crop_x0) - c) * z0 / focal, (k * (o[1] - crop_y0) - c) * z0 / focal, z0])
    return Framing(focal, c, k, crop_x0, crop_y0, z0, t_rest)


def torso_over_background(torso: np.ndarray, bg: np.ndarray, fr: Framing, shift: np.ndarray, tilt: float
                          ) -> np.ndarray:
    """The torso layer (the photo crop, shifted by shift [2] output px and tilted by tilt degrees about the bottom
    centre) over the background bg [n,n,3] at SS x the output size -> float32 [n,n,3]."""
    n = bg.shape[0]
    m = np.vstack([cv2.getRotationMatrix2D((n / 2, n), float(tilt), 1.0), [0, 0, 1]])
    m = m @ np.array([[fr.k * SS, 0, -fr.k * SS * fr.crop_x0], [0, fr.k * SS, -fr.k * SS * fr.crop_y0], [0, 0, 1]])
    m[:2, 2] += shift * SS
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])  # warpAffine maps pixel centres: continuous <-> index
    m_idx = (np.linalg.inv(half) @ m @ half)[:2]
    tor = cv2.warpAffine(torso, m_idx, (n, n), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))
    tor = tor.astype(np.float32) / 255.0
    return bg * (1 - tor[..., 3:]) + 255.0 * tor[..., :3] * tor[..., 3:]


def render_clip(size: int = 256, seconds: float = 12.0, seed: int = 0, voice: int = 0, progress: bool = True,
                blinks: bool = True) -> Clip:
    """Render the whole clip in memory: frames, audio and the ground-truth dict (blinks: eyelids that close)."""
    from skimage import data

    if size < 32 or seconds <= 0:
        raise ValueError(f"sample clip: need size >= 32 and seconds > 0, got size={size} seconds={seconds}")
    rng = np.random.default_rng(seed)
    n_frames = int(round(seconds * FPS))
    tr = face_tracks(n_frames, seed, voice, blinks)
    head, torso, face = build_scene(data.astronaut())
    fr = framing(face, head.px_to_unit, size)
    motion = make_motion(n_frames, rng, size)
    hold_still(motion, tr.spans)
    torso_motion(motion, size)
    offsets = dict(zip(("brow", "cheek"), expression_offsets(head.verts, head.jaw_w)),
                   blink=blink_offset(head.verts), width=lip_width_offset(head.verts))
    n = size * SS
    bg = cv2.resize(make_background(size, rng), (n, n), interpolation=cv2.INTER_CUBIC)
    frames = np.zeros((n_frames, size, size, 3), np.uint8)
    records = []
    for i in tqdm(range(n_frames), desc="sample clip", disable=not progress):
        R = rotation(*motion["angles"][i])
        shift = motion["torso"][i]
        t = (fr.t_rest + motion["head_off"][i] + np.array([shift[0], shift[1], 0.0]) * fr.z0 / fr.focal
             + head.pivot - R @ head.pivot)
        verts = (head.verts + (tr.mouth[i] * JAW_DROP) * head.jaw_w[:, None] * head.jaw_dir
                 + tr.brow[i] * offsets["brow"] + tr.mouth[i] * offsets["cheek"] + tr.closure[i] * offsets["blink"]
                 + tr.width[i] * offsets["width"])
        cam = verts @ R.T + t
        uv = project(cam, fr.focal * SS, fr.c * SS)
        img = torso_over_background(torso, bg, fr, shift, motion["tilt"][i])
        head_rgba = rasterise(head, cam, uv, uv[INNER_LIP], n)
        img = img * (1 - head_rgba[..., 3:]) + 255.0 * head_rgba[..., :3]
        frames[i] = np.clip(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA) + 0.5, 0, 255)
        records.append(frame_record(i, motion["angles"][i], R, t, fr.focal, tr, shift))
    return Clip(frames=frames, audio=tr.audio, gt=ground_truth(size, seed, voice, fr, head, tr, offsets, records))


def frame_record(i: int, angles: np.ndarray, R: np.ndarray, t: np.ndarray, focal: float, tr: FaceTracks,
                 shift: np.ndarray) -> dict:
    """Frame i's ground truth: its head pose (angles [3] degrees: yaw, pitch, roll; R [3,3], t [3]) and face."""
    return {"frame": i, "euler_deg": [round(float(a), 6) for a in angles],
            "R": np.round(R, 9).tolist(), "t": np.round(t, 9).tolist(),
            "focal": focal, "mouth": round(float(tr.mouth[i]), 6), "lip_width": round(float(tr.width[i]), 6),
            "lips_shut": round(float(tr.shut[i]) if not tr.in_span[i] else 0.0, 6), "viseme": tr.viseme[i],
            "brow": round(float(tr.brow[i]), 6), "eye_closure": round(float(tr.closure[i]), 6),
            "still": bool(tr.in_span[i]), "torso_shift_px": np.round(shift, 4).tolist()}


def ground_truth(size: int, seed: int, voice: int, fr: Framing, head: Head, tr: FaceTracks, offsets: dict,
                 records: list) -> dict:
    """The clip's `<stem>_gt.json`: conventions, camera, the head's points and how each expression moves them, and
    the per-frame records."""
    n_pts = 478
    moves = sum(np.linalg.norm(offsets[key][:n_pts], axis=1) for key in ("brow", "cheek", "blink", "width"))
    rigid = np.nonzero((head.jaw_w[:n_pts] < 1e-3) & (moves < 1e-6))[0]
    return {
        "conventions": ("X_cam = R @ X_head + t; OpenCV camera (x right, y down, z forward); "
                        "pixel (u, v) = (focal * X/Z + cx, focal * Y/Z + cy) in continuous pixel coordinates "
                        "(pixel i spans [i, i+1], like mediapipe's x*w); head frame: x right, y down, z away from "
                        "the camera at R = I (the photo's own head pose), origin at the mean of the 468 mesh points, "
                        f"units such that the outer eye corners (33, 263) are {EYE_DIST} apart. "
                        "euler_deg = [yaw, pitch, roll] with R = Ry(yaw) @ Rx(pitch) @ Rz(roll) about the head "
                        "frame's y, x, z axes (scipy Rotation.from_euler('YXZ', euler_deg, degrees=True))."),
        "image_size": [size, size], "fps": FPS, "n_frames": len(records), "sample_rate": SR,
        "audio_samples": int(len(tr.audio)), "focal": fr.focal, "cx": fr.c, "cy": fr.c, "seed": seed, "voice": voice,
        "head_points": np.round(head.verts[:n_pts], 7).tolist(),
        "head_points_note": ("mediapipe face-mesh order (478, iris 468-477) in the head frame, mouth closed. A frame's "
                             "points are head_points + mouth * jaw_drop * jaw_weight[:, None] * jaw_dir + brow * brow_offset "
                             "+ mouth * cheek_offset + eye_closure * blink_offset + lip_width * lip_width_offset"),
        "lip_width_offset": np.round(offsets["width"][:n_pts], 7).tolist(),
        "viseme_note": ("per frame: viseme (the vowel said, 'm' lips shut on a bilabial, '-' silence); lip_width in "
                        "[-1, 1] (spread on i / e, rounded on o / u; smoothed over 3 frames); lips_shut in [0, 1] "
                        "(the mouth opening is the loudness times 1 - lips_shut)"),
        "blink_offset": np.round(offsets["blink"][:n_pts], 7).tolist(),
        "blink_note": ("eye_closure in [0, 1] per frame (1 = lids shut): the upper lids come down LID_MEET of the "
                       "lid gap and the lower lids rise the rest; blinks last 5-8 frames, ~17 a minute"),
        "expression_spans": [list(sp) for sp in tr.spans],
        "expression_note": ("in each span [first, last] the head pose is constant (R, t) while the jaw drops "
                            "fully and the brows rise (brow: 0 -> 1 -> 0), and the voice holds one open 'a' (the "
                            "audio explains the open jaw, as everywhere else); brow_offset and cheek_offset are the "
                            "head-frame displacements at brow = 1 and mouth = 1"),
        "brow_offset": np.round(offsets["brow"][:n_pts], 7).tolist(),
        "cheek_offset": np.round(offsets["cheek"][:n_pts], 7).tolist(),
        "jaw_drop": JAW_DROP, "jaw_dir": head.jaw_dir.tolist(),
        "jaw_weight": np.round(head.jaw_w[:n_pts], 6).tolist(),
        "rigid_indices": rigid.tolist(),
        "mouth_note": ("mouth opening in [0, 1]: smoothed, normalised loudness of the audio track (0 = silence), 0 "
                       "while the lips are shut"),
        "frames": records,
    }


def encode_mp4(path: Path, frames: np.ndarray, audio: np.ndarray) -> None:
    """Write frames [N, H, W, 3] uint8 + audio [T] float32 (SR Hz) as H.264 yuv420p + AAC, atomically."""
    n, h, w, _ = frames.shape
    with tempfile.TemporaryDirectory() as tmpdir, atomic_path(path) as tmp:
        wav = Path(tmpdir) / "audio.wav"
        wavfile.write(wav, SR, np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16))
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(FPS), "-i", "-",
               "-i", str(wav), "-map", "0:v", "-map", "1:a",
               "-c:v", "libx264", "-preset", "medium", "-crf", "16", "-pix_fmt", "yuv420p", "-threads", "1",
               "-c:a", "aac", "-b:a", "96k", "-ar", str(SR),
               "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
               "-movflags", "+faststart", str(tmp)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _, err = proc.communicate(np.ascontiguousarray(frames).tobytes())
        except BrokenPipeError:
            err = proc.stderr.read() if proc.stderr else b""
            proc.wait()
        if proc.returncode != 0:
            last = (err.decode(errors="replace").strip().splitlines() or ["unknown error"])[-1]
            raise PreprocessError(f"{path}: ffmpeg failed to encode the sample clip: {last}")


def gt_path(video: str | Path) -> Path:
    """Where the ground truth of a sample clip lives: `<stem>_gt.json` beside the video."""
    video = Path(video)
    return video.with_name(f"{video.stem}_gt.json")


def write_clip(out: str | Path, size: int = 256, seconds: float = 12.0, seed: int = 0, voice: int = 0,
               progress: bool = True) -> tuple[Path, Path]:
    """Render and write the mp4 and its `<stem>_gt.json`. Returns both paths."""
    out = Path(out)
    clip = render_clip(size, seconds, seed, voice, progress)
    encode_mp4(out, clip.frames, clip.audio)
    save_json(gt_path(out), clip.gt)
    return out, gt_path(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Write the synthetic talking-portrait sample clip and its ground truth.")
    p.add_argument("--out", default="dataset/vids/sample.mp4")
    p.add_argument("--size", type=int, default=256, help="frame width = height, pixels")
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--voice", type=int, default=0, help="which synthetic voice (pitch and rhythm)")
    a = p.parse_args(argv)
    try:
        video, gt = write_clip(a.out, a.size, a.seconds, a.seed, a.voice)
    except (PreprocessError, ValueError) as e:
        raise SystemExit(f"error: {e}")
    print(f"wrote {video} and {gt}")


if __name__ == "__main__":
    main()
