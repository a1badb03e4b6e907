"""Keeping a command's own lines on the console while TensorFlow/TFX/Beam chatter goes to a log file."""
from __future__ import annotations

import contextlib
import io
import os
import pathlib
import sys
from typing import Iterator, TextIO


def console_stream(stream: TextIO) -> TextIO:
    """A line-buffered copy of `stream` that stays on the console while `output_to` points fds 1 and 2 at a log.

    A stream without a file descriptor (pytest's capture, a StringIO) is returned as it is: fd redirects do not
    touch it."""
    try:
        descriptor = stream.fileno()
    except (AttributeError, io.UnsupportedOperation, ValueError):
        return stream
    return os.fdopen(os.dup(descriptor), "w", buffering=1)


@contextlib.contextmanager
def output_to(log_path: pathlib.Path) -> Iterator[None]:
    """Sends this process's stdout and stderr (TensorFlow's C++ logs included) to a file, then restores them,
    so the console shows the command's progress and each step's chatter stays in its own log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
