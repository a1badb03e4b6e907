"""Real pipeline runs (`pipeline.local_runner.run`) in spawned child processes, each with its own log file.

A child process keeps TFX/Beam/TensorFlow state and memory out of the caller, lets two runs go side by side
(experiments.reproduce's lanes), and its chatter goes to the job's log while the caller prints progress.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import pathlib
import time
from typing import Any

from pipeline.library_logs import output_to


@dataclasses.dataclass(frozen=True)
class PipelineJob:
    """One pipeline run: a log, a root (shared roots reuse cached steps), the settings, a log file, where to stop."""

    name: str
    data_dir: pathlib.Path
    root: pathlib.Path
    config: Any
    """pipeline.configs.PipelineConfig (picklable: it crosses into the child process)."""
    log_path: pathlib.Path
    to_nodes: tuple[str, ...] = ()
    """Component ids to stop at (local_runner.run's partial run); empty runs the whole pipeline."""


def run_pipeline_job(job: PipelineJob) -> Any:
    """Runs the real TFX pipeline for one job, its output sent to the job's log; returns local_runner.RunResult.

    Meant to be called in a worker process (see `spawn_pool`, `run_in_child`)."""
    from pipeline import local_runner  # here, so the parent process needs no TensorFlow to plan jobs

    with output_to(job.log_path):
        return local_runner.run(job.data_dir, job.root, job.config, to_nodes=job.to_nodes)


def spawn_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """Fresh processes (spawn, not fork: a forked TensorFlow or gRPC state is not safe to reuse)."""
    return concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def run_in_child(job: PipelineJob) -> tuple[Any, float]:
    """One job in a fresh spawned process; its RunResult and the wall seconds around it, process start and
    imports included. The child's error is raised here."""
    began = time.perf_counter()
    with spawn_pool(1) as pool:
        result = pool.submit(run_pipeline_job, job).result()
    return result, time.perf_counter() - began
