"""Keeping a command's own lines on the console while TensorFlow/TFX/Beam chatter goes to a log file."""
from __future__ import annotations

import io
import os
from typing import TextIO


def console_stream(stream: TextIO) -> TextIO:
    """A line-buffered copy of `stream` that stays on the console while `pipeline.library_logs.output_to` points fds 1
    and 2 at a log.

    A stream without a file descriptor (pytest's capture, a StringIO) is returned as it is: fd redirects do not
    touch it."""
    try:
        descriptor = stream.fileno()
    except (AttributeError, io.UnsupportedOperation, ValueError):
        return stream
    return os.fdopen(os.dup(descriptor), "w", buffering=1)
