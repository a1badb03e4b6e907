"""What the numbers were measured on: CPU model and flags, memory, versions, load; and the two roofline
ceilings, memory bandwidth (a large numpy copy) and peak float32 FLOPs (a large matmul).

The ceilings are measured in the same run as the retrieval numbers because this machine's absolute speeds
drift (shared cores); the retrieval section reports its QPS as a share of them.
"""
from __future__ import annotations

import os
import platform
import threading
import time
from typing import Any

import numpy as np
import psutil

from benchmarks.measure import MB, load_average

PACKAGES = ("tensorflow", "tf-keras", "tfx", "apache-beam", "tensorflow-recommenders", "scann", "numpy", "pandas",
            "pyarrow", "grpcio", "tensorflow-serving-api", "ml-metadata", "tensorflow-transform", "psutil")
"""Distributions whose versions results.json records (harness.versions.versions)."""
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
REPEATS = 3


def cpu_info() -> dict[str, Any]:
    """Model name and flags of the first CPU in /proc/cpuinfo (empty where the file does not exist)."""
    model, flags = "", []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = value.split()
                if model and flags:
                    break
    except OSError:
        pass
    return {"model": model or platform.processor(), "flags": flags,
            "simd": [flag for flag in flags if flag.startswith(("avx", "fma", "sse4", "amx"))]}


def describe() -> dict[str, Any]:
    """The machine block of results.json."""
    return {
        "cpu": cpu_info(),
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "total_memory_mb": round(psutil.virtual_memory().total / MB),
        "platform": platform.platform(),
        "loadavg": load_average(),
        "nice": os.nice(0),
        "thread_env": {name: os.environ.get(name) for name in THREAD_ENV},
    }


def memory_bandwidth(megabytes: int, threads: int = 1) -> dict[str, float]:
    """GB/s of a large array copy (read + write bytes counted), best of a few repeats, `threads` threads each
    copying a slice (numpy releases the GIL while copying)."""
    source = np.ones(megabytes * MB // 8, dtype=np.float64)
    target = np.empty_like(source)
    bounds = np.linspace(0, len(source), threads + 1).astype(int)

    def copy(part: int) -> None:
        np.copyto(target[bounds[part]:bounds[part + 1]], source[bounds[part]:bounds[part + 1]])

    best = float("inf")
    for _ in range(REPEATS):
        workers = [threading.Thread(target=copy, args=(part,)) for part in range(threads)]
        began = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        best = min(best, time.perf_counter() - began)
    return {"copy_gb_per_s": 2 * source.nbytes / best / 1e9, "array_mb": megabytes, "threads": threads,
            "seconds": best}


def peak_flops(n: int) -> dict[str, float]:
    """GFLOP/s of an n x n float32 matmul (2 n^3 FLOPs), best of a few repeats, with the BLAS threads this
    process was started with."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # the first call pays for the BLAS thread pool
    best = float("inf")
    for _ in range(REPEATS):
        began = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - began)
    return {"matmul_gflop_per_s": 2 * n ** 3 / best / 1e9, "n": n, "seconds": best}
