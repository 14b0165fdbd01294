"""What every preprocessing step gets: where the video is, where outputs go, and the user's options."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from common.constants import FPS, SAMPLE_RATE  # noqa: F401  (the steps import them from here too)


@dataclass
class StepContext:
    name: str  # subject name: dataset/<name>/, configs/<name>.txt
    video: Path  # input video (dataset/vids/<name>.mp4 by default)
    out_dir: Path  # dataset/<name>/
    config_dir: Path = Path("configs")  # where the transforms step writes <name>.txt
    size: Optional[int] = None  # square frame size; None: the size of the square cut (crop)
    crop: str = "head"  # head: a head-and-shoulders square where the face is small in the frame | largest
    stabilise: str = "auto"  # auto: a camera that moves is held still (data_util.stabilise) | off
    cuts: str = "stop"  # stop: a span that is not one shot stops step 3 (data_util.shots) | keep: processed as is
    start: Optional[float] = None  # --start: seconds into the video (and --audio) where processing begins; None: 0
    end: Optional[float] = None  # --end: seconds where it stops; None: the video's end
    audio: Optional[Path] = None  # use this audio file instead of the video's audio track
    aud_npy: Optional[Path] = None  # an existing AD-NeRF aud.npy [N,16,29], taken as is
    aud_backend: str = "mfcc"  # mfcc (default, offline) | deepspeech | hubert
    aud_model: Optional[Path] = None  # model file/folder for the optional audio back-ends
    landmark_backend: str = "mediapipe"  # mediapipe (default) | face_alignment
    parsing_backend: str = "mediapipe"  # mediapipe (default) | bisenet
    parsing_model: Optional[Path] = None  # BiSeNet weights (79999_iter.pth) for parsing_backend=bisenet
    val_fraction: float = 1.0 / 11.0  # last 1/11 of the frames are the validation split (AD-NeRF)

    # Paths of the contract (docs/DESIGN.md section 4), so that no step spells them twice.
    @property
    def wav(self) -> Path:
        return self.out_dir / "aud.wav"

    @property
    def aud_npy_out(self) -> Path:
        return self.out_dir / "aud.npy"

    @property
    def img_dir(self) -> Path:
        return self.out_dir / "ori_imgs"

    @property
    def parsing_dir(self) -> Path:
        return self.out_dir / "parsing"

    @property
    def debug_dir(self) -> Path:
        return self.out_dir / "debug"

    def frame_paths(self) -> list[Path]:
        """ori_imgs/<i>.jpg sorted by index i."""
        return sorted(self.img_dir.glob("*.jpg"), key=lambda p: int(p.stem))
