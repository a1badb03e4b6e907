"""Small measuring tools shared by the sections: sampled peak RSS, bounded timed loops, load average.

Progress lines and ratios are the harness's (harness.progress, harness.numbers), shared with experiments/."""
from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np
import psutil

MB = 1024 * 1024
DEFAULT_SAMPLE_INTERVAL_S = 0.2


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@dataclasses.dataclass(frozen=True)
class ResourceSample:
    """The children of a process at one moment: their RSS and the CPU seconds they have used so far."""

    time_ms: float
    """Wall clock, ms since the epoch (MLMD's time base)."""
    children_rss: int
    """Bytes."""
    children_cpu_s: float
    """User + system seconds of the live children, and of the children they have reaped."""


class PeakRssSampler:
    """Samples RSS of this process plus all its (recursive) children every `interval` s in a thread.

    Use as a context manager; after exit, `peak_total`, `peak_self` and `peak_children` are bytes (each
    the maximum over samples, so the three peaks need not come from the same sample). An error in the
    sampling thread is re-raised on exit. Sampled, so spikes shorter than the interval are missed.
    With keep_timeline, `timeline` holds every sample's children RSS and CPU seconds, to cut by time later.
    """

    def __init__(self, interval: float = DEFAULT_SAMPLE_INTERVAL_S, keep_timeline: bool = False) -> None:
        self.interval = interval
        self.keep_timeline = keep_timeline
        self.timeline: list[ResourceSample] = []
        self.process = psutil.Process()
        self.peak_total = self.peak_self = self.peak_children = 0
        self.peak_processes = 1
        self.samples = 0
        self._stop = threading.Event()
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="peak-rss-sampler", daemon=True)

    def sample(self) -> None:
        own = self.process.memory_info().rss
        children = 0
        cpu = 0.0
        alive = 1
        for child in self.process.children(recursive=True):
            try:
                children += child.memory_info().rss
                if self.keep_timeline:
                    times = child.cpu_times()
                    cpu += times.user + times.system + times.children_user + times.children_system
                alive += 1
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue  # a child that exited between listing and reading holds no memory
        if self.keep_timeline:
            self.timeline.append(ResourceSample(time.time() * 1000.0, children, cpu))
        self.peak_self = max(self.peak_self, own)
        self.peak_children = max(self.peak_children, children)
        self.peak_total = max(self.peak_total, own + children)
        self.peak_processes = max(self.peak_processes, alive)
        self.samples += 1

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.sample()
                self._stop.wait(self.interval)
        except BaseException as error:  # re-raised in __exit__
            self._error = error

    def __enter__(self) -> "PeakRssSampler":
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join()
        if self._error is not None:
            raise RuntimeError("peak RSS sampling failed") from self._error
        self.sample()


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / MB


def timed_loop(call: Callable[[int], Any], max_seconds: float, max_calls: int, min_calls: int = 3) -> dict[str, float]:
    """Calls `call(i)` for i = 0, 1, ... until `max_seconds` passed (after at least `min_calls`) or `max_calls`.

    Returns calls, seconds, calls per second and latency percentiles in ms. Always bounded: at most
    `max_calls` calls, and no new call starts after `max_seconds` once `min_calls` are done.
    """
    latencies = []
    began = time.perf_counter()
    deadline = began + max_seconds
    for i in range(max_calls):
        started = time.perf_counter()
        call(i)
        ended = time.perf_counter()
        latencies.append(ended - started)
        if ended >= deadline and i + 1 >= min_calls:
            break
    seconds = time.perf_counter() - began
    return {"calls": len(latencies), "seconds": seconds, "calls_per_s": len(latencies) / seconds,
            **latency_summary(np.array(latencies) * 1000.0)}


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    """p50, p99 and mean in ms (NaN without samples)."""
    values = np.asarray(latencies_ms, dtype=np.float64)
    if not len(values):
        return {"p50_ms": math.nan, "p99_ms": math.nan, "mean_ms": math.nan}
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99)),
            "mean_ms": float(values.mean())}
