"""Progress lines with the seconds since the command started: '[bench   12.3s] message'."""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Iterator, Optional, TextIO

from harness.console import console_stream


class Progress:
    """Prints one line per call, thread-safe, to a copy of the console that fd redirects of in-process
    trainings (`pipeline.library_logs.output_to`) do not swallow. Call it (`say(message)`) or use `step()`."""

    def __init__(self, label: str = "", stream: Optional[TextIO] = None) -> None:
        self.label = label
        self._began = time.perf_counter()
        self._lock = threading.Lock()
        self._out = console_stream(stream if stream is not None else sys.stderr)

    def elapsed(self) -> float:
        return time.perf_counter() - self._began

    def say(self, message: str) -> None:
        prefix = f"{self.label} " if self.label else ""
        with self._lock:
            print(f"[{prefix}{self.elapsed():7.1f}s] {message}", file=self._out, flush=True)

    __call__ = say

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """One line when the step starts, one when it ends (or fails) with its seconds."""
        started = time.perf_counter()
        self.say(f"start {name}")
        try:
            yield
        except BaseException:
            self.say(f"FAILED {name} after {time.perf_counter() - started:.1f} s")
            raise
        self.say(f"done  {name} ({time.perf_counter() - started:.1f} s)")
