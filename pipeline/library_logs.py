"""Keeps TensorFlow's, TFX's, Beam's, Keras's and absl's own output out of a CLI's report, in a log file instead.

A pipeline run prints dozens of `WARNING:absl` lines, C++ start-up notices (CUDA stubs, oneDNN) and Keras's epoch
lines between the CLI's own progress lines, so a reader cannot find the report. They come from Python logging
(absl, TFX, Beam), `warnings`, `print` inside libraries, and C++ code writing straight to file descriptors 1 and 2
(TensorFlow, and Beam worker processes, which inherit them). Only pointing both descriptors at a file catches all
of them, so a CLI wraps the library calls (not its own prints) in `library_output`. `--verbose` leaves everything
on the terminal.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import sys
from typing import Iterator

LOG_FILE = "library.log"
"""Its name in the folder a CLI writes (the demo's --out, the local runner's --root)."""
VERBOSE_HELP = f"print TensorFlow/TFX/Beam/absl log lines here instead of into {LOG_FILE} in the output folder"


@contextlib.contextmanager
def output_to(log_path: pathlib.Path) -> Iterator[None]:
    """Within the block, descriptors 1 and 2 (and so sys.stdout, sys.stderr, logging's stream handlers and child
    processes) write to `log_path` (appended). Both descriptors are restored on exit, also on an exception (whose
    traceback then reaches the terminal as usual). The experiments and benchmarks use it for each training's log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


@contextlib.contextmanager
def library_output(log_path: pathlib.Path, verbose: bool) -> Iterator[None]:
    """`output_to(log_path)` around a CLI's library calls; with `verbose`, changes nothing."""
    if verbose:
        yield
        return
    with output_to(log_path):
        yield
