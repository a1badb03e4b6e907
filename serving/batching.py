"""Request batching (`--enable_batching`): concurrent requests to one signature run as one call.

It follows TF Serving's shared batch scheduler. A request (a "task") joins the open batch of its queue while
the batch has room for its rows; queues are keyed by servable version, signature and the input shapes that
must match. A batch runs when it is full, or once `batch_timeout` has passed *and* a batch thread is free:
until a thread takes it, it keeps filling. So with the default timeout of 0 an idle server adds no latency,
and requests are merged exactly when all batch threads are busy; a larger timeout trades latency for bigger
batches. Results are split back by row, and a failure of the merged run is every task's failure.

Padding (`pad_variable_length_inputs`, on by default here): inputs whose signature leaves a dimension other
than the batch one unknown (None) are padded to the longest in the batch, strings with "" and numbers with
0 (False for bools), so requests of different history lengths share a batch. For this project's contract ""
is the padding token (docs/design.md §7), so a padded history means the same. Outputs are not un-padded, as in TF
Serving: an output whose shape follows a padded input comes back at the batch's length.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
import time
from typing import Callable, Hashable, Mapping, Optional

import grpc
import numpy as np

from serving import ServingError

logger = logging.getLogger("serving")

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """TF Serving's BatchingParameters, with its defaults (padding aside, see the module doc)."""

    max_batch_size: int = 1000
    batch_timeout_s: float = 0.0
    num_batch_threads: int = os.cpu_count() or 1
    max_enqueued_batches: int = 10
    pad_variable_length_inputs: bool = True

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.num_batch_threads < 1 or self.max_enqueued_batches < 1:
            raise ValueError(f"batching sizes and thread counts must be >= 1: {self}")
        if self.batch_timeout_s < 0:
            raise ValueError(f"batch timeout must be >= 0: {self}")


class _Task:
    __slots__ = ("inputs", "rows", "done", "result", "error")

    def __init__(self, inputs: dict[str, np.ndarray], rows: int) -> None:
        self.inputs = inputs
        self.rows = rows
        self.done = threading.Event()
        self.result: Optional[dict[str, np.ndarray]] = None
        self.error: Optional[ServingError] = None


class _Batch:
    __slots__ = ("key", "runner", "tasks", "rows", "deadline")

    def __init__(self, key: Hashable, runner: Runner, deadline: float) -> None:
        self.key = key
        self.runner = runner
        self.tasks: list[_Task] = []
        self.rows = 0
        self.deadline = deadline


def _fill_value(dtype: np.dtype) -> object:
    if dtype == np.dtype(object):
        return b""
    return False if dtype == np.bool_ else 0


def merge(inputs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stacks the tasks' inputs along the batch dimension, padding shorter dimensions (see module doc)."""
    merged: dict[str, np.ndarray] = {}
    for name in inputs[0]:
        arrays = [task_inputs[name] for task_inputs in inputs]
        if len({array.shape[1:] for array in arrays}) > 1:
            widest = tuple(max(sizes) for sizes in zip(*(array.shape[1:] for array in arrays)))
            padded = []
            for array in arrays:
                target = np.empty((array.shape[0], *widest), dtype=array.dtype)
                target.fill(_fill_value(array.dtype))
                target[tuple(slice(0, size) for size in array.shape)] = array
                padded.append(target)
            arrays = padded
        merged[name] = np.concatenate(arrays, axis=0)
    return merged


def split(outputs: Mapping[str, np.ndarray], rows: list[int]) -> list[dict[str, np.ndarray]]:
    """Cuts a batched result back into the tasks' rows."""
    total = sum(rows)
    for name, value in outputs.items():
        if value.ndim == 0 or value.shape[0] != total:
            raise ServingError(grpc.StatusCode.INTERNAL,
                               f"batched output '{name}' has shape {list(value.shape)} for a batch of {total} rows; "
                               "its 0th dimension must be the batch (run without --enable_batching)")
    results, start = [], 0
    for count in rows:
        results.append({name: value[start:start + count] for name, value in outputs.items()})
        start += count
    return results


def shape_key(arrays: Mapping[str, np.ndarray], padded_axes: Mapping[str, frozenset[int]]) -> tuple:
    """What must match for two tasks to share a batch: dtypes, ranks, and every dimension not padded."""
    return tuple(sorted((name, array.dtype.str, tuple(-1 if axis == 0 or axis in padded_axes.get(name, ()) else size
                                                       for axis, size in enumerate(array.shape)))
                        for name, array in arrays.items()))


class BatchScheduler:
    """Queues per key, `num_batch_threads` workers; `submit` blocks its caller until its rows are done."""

    def __init__(self, options: BatchingOptions) -> None:
        self.options = options
        self._cond = threading.Condition()
        self._open: dict[Hashable, _Batch] = {}
        self._full: collections.deque[_Batch] = collections.deque()
        self._queued: collections.Counter[Hashable] = collections.Counter()
        self._stopping = False
        self.tasks_run = 0
        self.batches_run = 0
        self._threads = [threading.Thread(target=self._work, name=f"batch-{i}", daemon=True)
                         for i in range(options.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, group: Hashable, runner: Runner, arrays: dict[str, np.ndarray],
               padded_axes: Mapping[str, frozenset[int]]) -> dict[str, np.ndarray]:
        """Runs `arrays` (all with the same 0th dimension) in a batch of `group`; returns this task's rows."""
        rows = next(iter(arrays.values())).shape[0]
        if rows > self.options.max_batch_size:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Task size {rows} is larger than maximum batch size {self.options.max_batch_size}")
        if rows == 0:
            return runner(arrays)
        key = (group, shape_key(arrays, padded_axes) if self.options.pad_variable_length_inputs
               else tuple(sorted((name, array.dtype.str, array.shape[1:]) for name, array in arrays.items())))
        task = _Task(arrays, rows)
        with self._cond:
            if self._stopping:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
            batch = self._open.get(key)
            if batch is not None and batch.rows + rows > self.options.max_batch_size:
                self._close(batch)
                batch = None
            if batch is None:
                if self._queued[key] >= self.options.max_enqueued_batches:
                    raise ServingError(grpc.StatusCode.UNAVAILABLE,
                                       "The batch scheduling queue to which this task was submitted is full")
                batch = _Batch(key, runner, time.monotonic() + self.options.batch_timeout_s)
                self._open[key] = batch
                self._queued[key] += 1
            batch.tasks.append(task)
            batch.rows += rows
            if batch.rows >= self.options.max_batch_size:
                self._close(batch)
            self._cond.notify()
        task.done.wait()
        if task.error is not None:
            raise task.error
        assert task.result is not None
        return task.result

    def _close(self, batch: _Batch) -> None:
        del self._open[batch.key]
        self._full.append(batch)

    def _next_batch(self) -> Optional[_Batch]:
        """Blocks until a batch is due (full, or timed out); None when stopping with nothing left."""
        with self._cond:
            while True:
                if self._full:
                    batch = self._full.popleft()
                    break
                now = time.monotonic()
                due = [b for b in self._open.values() if self._stopping or b.deadline <= now]
                if due:
                    batch = min(due, key=lambda b: b.deadline)
                    del self._open[batch.key]
                    break
                if self._stopping:
                    return None
                timeout = min((b.deadline for b in self._open.values()), default=None)
                self._cond.wait(None if timeout is None else max(timeout - now, 0.0))
            self._queued[batch.key] -= 1
            if not self._queued[batch.key]:
                del self._queued[batch.key]
            return batch

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._execute(batch)

    def _execute(self, batch: _Batch) -> None:
        try:
            outputs = batch.runner(merge([task.inputs for task in batch.tasks]))
            for task, result in zip(batch.tasks, split(outputs, [task.rows for task in batch.tasks])):
                task.result = result
        except ServingError as error:
            for task in batch.tasks:
                task.error = error
        except Exception as error:  # delivered to every request of the batch, and logged
            logger.exception("batched run of %d requests failed", len(batch.tasks))
            failure = ServingError(grpc.StatusCode.INTERNAL, f"batched run failed: {type(error).__name__}: {error}")
            for task in batch.tasks:
                task.error = failure
        finally:
            with self._cond:
                self.tasks_run += len(batch.tasks)
                self.batches_run += 1
            for task in batch.tasks:
                task.done.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Runs what is queued, then stops the workers."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout_s)
        if self.batches_run:
            logger.info("batching: %d requests ran in %d batches (%.2f per batch)", self.tasks_run,
                        self.batches_run, self.tasks_run / self.batches_run)
