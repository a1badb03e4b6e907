"""Keeps TensorFlow's, TFX's, Beam's and absl's own log lines out of a CLI's output, in a log file instead.

A pipeline run prints dozens of `WARNING:absl` lines and C++ start-up notices (CUDA stubs, oneDNN) between the
CLI's own progress lines, so a reader cannot find the report. They come from three places: Python logging
(absl, TFX, Beam), `warnings`, and C++ code writing straight to file descriptor 2 (TensorFlow, and Beam worker
processes, which inherit it). Only pointing descriptor 2 at a file catches all three; the CLI's own messages and
errors go to the terminal stream this module hands back. `--verbose` leaves everything on the terminal.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import sys
from typing import Iterator, TextIO

LOG_FILE = "library.log"
"""Its name in the folder a CLI writes (the demo's --out, the local runner's --root)."""
VERBOSE_HELP = f"print TensorFlow/TFX/Beam/absl log lines here instead of into {LOG_FILE} in the output folder"


@contextlib.contextmanager
def library_output(log_path: pathlib.Path, verbose: bool) -> Iterator[TextIO]:
    """Within the block, descriptor 2 and Python logging write to `log_path` (appended); yields the stream for
    the CLI's own errors (the terminal's stderr). With `verbose`, changes nothing and yields sys.stderr.
    Descriptor 2 is restored on exit, also on an exception (whose traceback then reaches the terminal as usual)."""
    if verbose:
        yield sys.stderr
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with open(log_path, "a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 2)  # sys.stderr, logging's stream handlers and child processes all write to fd 2
        terminal = os.fdopen(os.dup(saved_fd), "w", buffering=1, encoding="utf-8", errors="replace")
        try:
            yield terminal
        finally:
            terminal.close()
            sys.stderr.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
