"""Closed-loop gRPC load on a model server, and the request-batching comparison built on it.

`LoadGenerator` runs N client threads, each sending one-row Predict requests back to back (a closed loop:
a client sends its next request when the previous answer arrived) until stopped or until its hard deadline.
Used by the serving section; run as a script it measures the server's request batching settings:

    python -m benchmarks.serving_load --model_dir <serving base>/music_retrieval/<version> [--seconds 8]

(QPS, p50, p99 and errors for 1/2/4/8 clients with batching off and on; moved here from tests/serving_testing.)
"""
from __future__ import annotations

import argparse
import collections
import pathlib
import re
import shutil
import sys
import tempfile
import threading
import time
from typing import Any, Optional, Sequence

import grpc
import numpy as np

from benchmarks.measure import latency_summary

REQUEST_TIMEOUT_S = 10.0
REQUEST_VARIANTS = 32
FEEDBACK_CYCLE = ("like", "listen", "skip", "like", "dislike")


def predict_request(history: Sequence[tuple[str, str]], model_name: str, exclude: Sequence[str] = (),
                    exclude_width: int = 0, station: str = "") -> Any:
    """One-row PredictRequest for `serving_default` in the contract's shapes (exclusions padded with "" to E;
    an empty history is one "" token), as serving.client builds it."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = "serving_default"
    tracks = [track for track, _ in history] or [""]
    feedback = [label for _, label in history] or [""]
    padded = list(exclude) + [""] * max(0, exclude_width - len(exclude))
    request.inputs["history_track_ids"].CopyFrom(tf.make_tensor_proto([tracks], dtype=tf.string))
    request.inputs["history_feedback"].CopyFrom(tf.make_tensor_proto([feedback], dtype=tf.string))
    request.inputs["station_id"].CopyFrom(tf.make_tensor_proto([station], dtype=tf.string))
    request.inputs["exclude_track_ids"].CopyFrom(
        tf.make_tensor_proto([padded], dtype=tf.string, shape=[1, len(padded)]))
    return request


def request_mix(tracks: Sequence[str], model_name: str, exclude_width: int) -> list[Any]:
    """REQUEST_VARIANTS requests with histories of 1..9 known tracks and 0..2 exclusions: a little variety so
    no cache or branch sees the same input every time."""
    if not tracks:
        raise ValueError("no known tracks to build requests from")
    requests = []
    for i in range(REQUEST_VARIANTS):
        history = [(tracks[(5 * i + j) % len(tracks)], FEEDBACK_CYCLE[(i + j) % len(FEEDBACK_CYCLE)])
                   for j in range(1 + i % 9)]
        exclude = [tracks[(i + j) % len(tracks)] for j in range(min(i % 3, exclude_width))]
        requests.append(predict_request(history, model_name, exclude, exclude_width))
    return requests


def known_tracks(target: str, model_name: str, exclude_width: int) -> list[str]:
    """Track ids the model knows: its answer to an empty history."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            predict_request((), model_name, (), exclude_width), timeout=30)
    return [track.decode() for track in tf.make_ndarray(response.outputs["track_ids"])[0] if track]


class LoadGenerator:
    """`clients` threads in a closed loop over `requests` on one channel; bounded by `max_seconds`.

    `start()`, then `stop()` (or `run_for(seconds)`) returns answered requests per second, p50/p99 of answered
    requests, failures (any RpcError, counted by status code) and answers per served version.
    """

    def __init__(self, target: str, requests: Sequence[Any], clients: int, max_seconds: float) -> None:
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.channel = grpc.insecure_channel(target)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.requests = list(requests)
        self.clients = clients
        self.max_seconds = max_seconds
        self._stop = threading.Event()
        self._latencies: list[list[float]] = [[] for _ in range(clients)]
        self._errors: list[collections.Counter] = [collections.Counter() for _ in range(clients)]
        self._versions: list[collections.Counter] = [collections.Counter() for _ in range(clients)]
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]
        self._began = self._ended = 0.0

    def _client(self, index: int) -> None:
        i = index
        deadline = self._began + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                response = self.stub.Predict(self.requests[i % len(self.requests)], timeout=REQUEST_TIMEOUT_S)
                self._latencies[index].append(time.perf_counter() - started)
                self._versions[index][response.model_spec.version.value] += 1
            except grpc.RpcError as error:
                self._errors[index][error.code().name] += 1
            i += 1

    def start(self) -> "LoadGenerator":
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self._began = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.max_seconds + REQUEST_TIMEOUT_S + 5)  # every request has a deadline
        self._ended = time.monotonic()
        self.channel.close()
        latencies = np.array([value for values in self._latencies for value in values]) * 1000.0
        errors = sum(self._errors, collections.Counter())
        elapsed = self._ended - self._began
        return {"clients": self.clients, "seconds": elapsed, "requests": int(len(latencies)),
                "qps": len(latencies) / elapsed if elapsed > 0 else 0.0, **latency_summary(latencies),
                "failed": int(sum(errors.values())), "failures_by_code": dict(errors),
                "answers_by_version": {str(k): v for k, v in sorted(sum(self._versions, collections.Counter()).items())}}

    def run_for(self, seconds: float) -> dict[str, Any]:
        self.start()
        self._stop.wait(min(seconds, self.max_seconds))
        return self.stop()


# --- Request batching comparison (a script for notes, not part of benchmarks.run) ------------------------

BATCHING_SETTINGS = {
    "off": [],
    "on, timeout 0": ["--enable_batching", "--max_batch_size", "32", "--batch_timeout_micros", "0"],
    "on, timeout 2 ms": ["--enable_batching", "--max_batch_size", "32", "--batch_timeout_micros", "2000"],
}


def benchmark_batching(model_dir: pathlib.Path, seconds: float = 8.0, concurrency: Sequence[int] = (1, 2, 4, 8),
                       settings: Sequence[str] = tuple(BATCHING_SETTINGS), model_name: Optional[str] = None,
                       exclude_width: int = 50) -> list[dict[str, Any]]:
    """QPS / p50 / p99 / errors over loopback gRPC for each batching setting and client count.

    `model_dir` is a pushed version folder (`<serving base>/<model name>/<version>`); it is served as version 1
    of `model_name` (default: the name of the folder it was pushed under)."""
    from serving.process import ServerProcess

    if not (model_dir / "saved_model.pb").is_file():
        raise FileNotFoundError(f"--model_dir {model_dir} is not a SavedModel version folder")
    model_name = model_name or (model_dir.resolve().parent.name if model_dir.name.isdigit() else "music_retrieval")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as root:
        base = pathlib.Path(root) / model_name
        shutil.copytree(model_dir, base / "1")
        for batching in settings:
            log = pathlib.Path(root) / f"server-{len(rows)}.log"
            with ServerProcess(["--model_name", model_name, "--model_base_path", str(base),
                                *BATCHING_SETTINGS[batching]], log, rest=False) as server:
                server.wait_for_ports()
                server.wait_for_available(model_name)
                requests = request_mix(known_tracks(server.target, model_name, exclude_width), model_name,
                                       exclude_width)
                LoadGenerator(server.target, requests, 2, 1.0).run_for(1.0)  # warm the channel and the graph
                for clients in concurrency:
                    row = LoadGenerator(server.target, requests, clients, seconds).run_for(seconds)
                    rows.append({"model": model_name, "batching": batching, **row})
                    print(f"{model_name}  batching {batching:16s}  clients {clients}  QPS {row['qps']:7.1f}  "
                          f"p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  errors {row['failed']}",
                          flush=True)
            merged = re.findall(r"batching: .*", log.read_text())  # the server's own count, logged at shutdown
            if merged:
                print(f"  server {merged[-1]}", flush=True)
            elif BATCHING_SETTINGS[batching]:
                print("  server batched nothing: the model's signature is not batchable (outputs without a "
                      "declared batch dimension), so every request ran alone", flush=True)
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving_load",
                                     description="Request batching on the gRPC server: QPS, p50, p99, errors.")
    parser.add_argument("--model_dir", type=pathlib.Path, required=True,
                        help="a pushed version folder, e.g. <serving base>/music_retrieval/<version>")
    parser.add_argument("--model_name", default=None,
                        help="the name to serve it under (default: the folder it was pushed under)")
    parser.add_argument("--seconds", type=float, default=8.0, help="load duration per setting (default 8)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8], help="concurrent clients")
    parser.add_argument("--batching", choices=list(BATCHING_SETTINGS), nargs="+", default=list(BATCHING_SETTINGS),
                        help="which settings to measure (default: all)")
    parser.add_argument("--exclude_width", type=int, default=50,
                        help="the model's exclude_track_ids width E (default 50, the pipeline's)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or min(args.clients) < 1:
        parser.error("--seconds must be > 0 and --clients >= 1")
    try:
        benchmark_batching(args.model_dir, args.seconds, args.clients, args.batching, args.model_name,
                           args.exclude_width)
    except FileNotFoundError as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
