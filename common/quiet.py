"""Native libraries' chatter kept off the terminal, progress bars kept on it."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator, TextIO


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[TextIO]:
    """Silence what native libraries (mediapipe's TFLite/absl logging, at any frame: a model is set up when first
    needed) print on file descriptor 2 meanwhile, so that the runner's stderr holds only our one-line warnings and
    errors. Yields a text stream to the real stderr, for the progress bar of the loop inside (`tqdm(file=...)`)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    real = os.fdopen(os.dup(saved), "w")
    try:
        os.dup2(devnull, 2)
        yield real
    finally:
        real.close()
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
