"""Helpers for the serving tests: small SavedModels with the serving contract, and a real server on loopback.

`build_model` writes a SavedModel with exactly the contract's signatures (DESIGN §7): `serving_default`
(history_track_ids, history_feedback [B, L], station_id [B], exclude_track_ids [B, E] -> track_ids,
scores [B, K]) and `query_embedding`. The model is a tiny deterministic stand-in (fixed embeddings, a
feedback-weighted sum of history embeddings, top-k with exclusions); its `version_tag` scales every score,
so two versions give distinguishable answers. `ServerProcess` runs `python -m serving.server` in a
subprocess on free loopback ports and waits for it.

Run as a script to measure request batching (QPS, p50, p99 for 1/4/8 concurrent clients, with and without
`--enable_batching`): `python -m tests.serving_testing --benchmark [--model_dir PUSHED_VERSION_DIR]`.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Optional, Sequence, TypeVar

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (get_model_status_pb2, model_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_log_pb2, prediction_service_pb2_grpc)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL_NAME = "music_retrieval"
TRACKS: tuple[str, ...] = tuple(f"t{i:02d}" for i in range(50))
EMBEDDING_DIM = 8
EXCLUDE_WIDTH = 5  # E: the most exclusions the model takes (its exclude_track_ids width)
TOP_K = 10  # K
FEEDBACK_WEIGHTS = {"like": 1.0, "listen": 0.5, "skip": -0.5, "dislike": -1.0}
WARMUP_FILE = ("assets.extra", "tf_serving_warmup_requests")
T = TypeVar("T")


class ToyRecommender(tf.Module):
    """The serving contract on a fixed random catalog; deterministic, stock ops only."""

    def __init__(self, version_tag: int, tracks: Sequence[str] = TRACKS, seed: int = 7) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        embeddings = rng.normal(size=(len(tracks), EMBEDDING_DIM)).astype(np.float32)
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
        # Row len(tracks) is the out-of-vocabulary track: a zero vector, never a candidate.
        self.embeddings = tf.constant(np.vstack([embeddings, np.zeros((1, EMBEDDING_DIM), np.float32)]))
        self.candidates = tf.constant(embeddings)
        self.tracks = tf.constant(list(tracks))
        self.popularity = tf.constant(np.linspace(0.05, 0.0, len(tracks), dtype=np.float32))
        self.scale = tf.constant(float(version_tag), tf.float32)
        self.track_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(list(tracks)), tf.range(len(tracks), dtype=tf.int64)),
            default_value=len(tracks))
        self.feedback_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(list(FEEDBACK_WEIGHTS)),
                                                tf.constant(list(FEEDBACK_WEIGHTS.values()), tf.float32)),
            default_value=0.0)
        self.station_embeddings = tf.constant(rng.normal(size=(16, EMBEDDING_DIM)).astype(np.float32) * 0.1)

    def _query(self, history_track_ids: tf.Tensor, history_feedback: tf.Tensor, station_id: tf.Tensor) -> tf.Tensor:
        history = tf.gather(self.embeddings, self.track_table.lookup(history_track_ids))  # [B, L, D]
        weights = self.feedback_table.lookup(history_feedback)  # [B, L]
        station = tf.gather(self.station_embeddings, tf.strings.to_hash_bucket_fast(station_id, 16))
        station = tf.where(tf.equal(station_id, "")[:, None], tf.zeros_like(station), station)
        return tf.reduce_sum(history * weights[:, :, None], axis=1) + station  # [B, D]

    @tf.function(input_signature=[
        tf.TensorSpec([None, None], tf.string, name="history_track_ids"),
        tf.TensorSpec([None, None], tf.string, name="history_feedback"),
        tf.TensorSpec([None], tf.string, name="station_id"),
        tf.TensorSpec([None, EXCLUDE_WIDTH], tf.string, name="exclude_track_ids"),
    ])
    def recommend(self, history_track_ids, history_feedback, station_id, exclude_track_ids):
        query = self._query(history_track_ids, history_feedback, station_id)
        scores = self.scale * (tf.matmul(query, self.candidates, transpose_b=True) + self.popularity)  # [B, N]
        catalog = tf.range(tf.shape(self.candidates)[0], dtype=tf.int64)
        disliked = tf.where(tf.equal(history_feedback, "dislike"), self.track_table.lookup(history_track_ids),
                            tf.constant(-1, tf.int64))
        banned = tf.concat([self.track_table.lookup(exclude_track_ids), disliked], axis=1)  # [B, E + L]
        hit = tf.reduce_any(tf.equal(banned[:, :, None], catalog[None, None, :]), axis=1)  # [B, N]
        scores = tf.where(hit, tf.constant(-np.inf, tf.float32), scores)
        top = tf.math.top_k(scores, k=TOP_K)
        ids = tf.gather(self.tracks, top.indices)
        ids = tf.where(tf.math.is_inf(top.values), tf.constant(""), ids)
        return {"track_ids": ids, "scores": top.values}

    @tf.function(input_signature=[
        tf.TensorSpec([None, None], tf.string, name="history_track_ids"),
        tf.TensorSpec([None, None], tf.string, name="history_feedback"),
        tf.TensorSpec([None], tf.string, name="station_id"),
    ])
    def embed(self, history_track_ids, history_feedback, station_id):
        query = self._query(history_track_ids, history_feedback, station_id)
        return {"query_embedding": self.scale * tf.math.l2_normalize(query, axis=1)}


def contract_request(history: Sequence[tuple[str, str]] = (("t01", "like"), ("t02", "skip")),
                     station: str = "", exclude: Sequence[str] = (), version: Optional[int] = None,
                     model_name: str = MODEL_NAME, signature_name: str = "serving_default",
                     exclude_width: int = EXCLUDE_WIDTH) -> predict_pb2.PredictRequest:
    """One-row PredictRequest in the contract's shapes (exclusions padded with "" to the model's width)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version
    tracks = [track for track, _ in history] or [""]
    feedback = [label for _, label in history] or [""]
    request.inputs["history_track_ids"].CopyFrom(tf.make_tensor_proto([tracks], dtype=tf.string))
    request.inputs["history_feedback"].CopyFrom(tf.make_tensor_proto([feedback], dtype=tf.string))
    request.inputs["station_id"].CopyFrom(tf.make_tensor_proto([station], dtype=tf.string))
    if signature_name == "serving_default":
        padded = list(exclude) + [""] * (exclude_width - len(exclude))
        request.inputs["exclude_track_ids"].CopyFrom(tf.make_tensor_proto([padded], dtype=tf.string))
    return request


def write_warmup(version_dir: pathlib.Path, requests: Sequence[predict_pb2.PredictRequest]) -> pathlib.Path:
    """TF Serving's warm-up file: a TFRecord of PredictionLog with predict_log.request filled."""
    path = version_dir.joinpath(*WARMUP_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def build_model(version_dir: pathlib.Path, version_tag: int, warmup: bool = True) -> pathlib.Path:
    """Writes the toy SavedModel (and its warm-up records) to `version_dir`, e.g. <base>/<version>."""
    module = ToyRecommender(version_tag)
    tf.saved_model.save(module, str(version_dir), signatures={
        "serving_default": module.recommend.get_concrete_function(),
        "query_embedding": module.embed.get_concrete_function(),
    })
    if warmup:
        write_warmup(version_dir, [contract_request(), contract_request(signature_name="query_embedding"),
                                   contract_request(history=(), exclude=("t03",))])
    return version_dir


def copy_version(source: pathlib.Path, base_path: pathlib.Path, version: int) -> pathlib.Path:
    """Pushes a built version into a model base path (copied file by file, not atomically, as a Pusher may)."""
    target = base_path / str(version)
    shutil.copytree(source, target, dirs_exist_ok=True)
    return target


def write_corrupt_version(base_path: pathlib.Path, version: int) -> pathlib.Path:
    """A complete-looking version directory whose saved_model.pb is not a SavedModel."""
    target = base_path / str(version)
    (target / "variables").mkdir(parents=True, exist_ok=True)
    (target / "saved_model.pb").write_bytes(b"this is not a SavedModel protocol buffer \x00\xff" * 8)
    return target


# --- A server in a subprocess ---------------------------------------------------------------------------

ADDRESS_LINE = re.compile(r"serving: (gRPC|REST) on ([0-9.]+|\[[0-9a-fA-F:]*\]|localhost):(\d+)")


class ServerProcess:
    """`python -m serving.server` on loopback, its output in a log file; stopped (and reaped) on exit."""

    def __init__(self, args: Sequence[str], log_path: pathlib.Path, rest: bool = True) -> None:
        command = [sys.executable, "-m", "serving.server", "--host", "127.0.0.1", "--port", "0", *args]
        if rest:
            command += ["--rest_api_port", "auto"]
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.grpc_port: Optional[int] = None
        self.rest_port: Optional[int] = None
        self._channel: Optional[grpc.Channel] = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_ports(self, timeout_s: float = 90.0) -> "ServerProcess":
        """Reads the bound ports from the server's log (it prints them once it listens)."""
        deadline = time.monotonic() + timeout_s
        want_rest = "--rest_api_port" in self.process.args
        while time.monotonic() < deadline:
            for kind, _, port in ADDRESS_LINE.findall(self.log()):
                if kind == "gRPC":
                    self.grpc_port = int(port)
                else:
                    self.rest_port = int(port)
            if self.grpc_port and (self.rest_port or not want_rest):
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"server did not print its ports in {timeout_s} s:\n{self.log()[-4000:]}")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.target)
        return self._channel

    def prediction_stub(self) -> prediction_service_pb2_grpc.PredictionServiceStub:
        return prediction_service_pb2_grpc.PredictionServiceStub(self.channel())

    def model_stub(self) -> model_service_pb2_grpc.ModelServiceStub:
        return model_service_pb2_grpc.ModelServiceStub(self.channel())

    def version_states(self, model_name: str = MODEL_NAME) -> dict[int, get_model_status_pb2.ModelVersionStatus]:
        """GetModelStatus as {version: ModelVersionStatus}; {} while the model has no versions yet."""
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name=model_name))
        try:
            response = self.model_stub().GetModelStatus(request, timeout=10)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return {}
            raise
        return {status.version: status for status in response.model_version_status}

    def wait_for_state(self, version: int, state: int, model_name: str = MODEL_NAME,
                       timeout_s: float = 60.0) -> get_model_status_pb2.ModelVersionStatus:
        def reached() -> Optional[get_model_status_pb2.ModelVersionStatus]:
            status = self.version_states(model_name).get(version)
            return status if status is not None and status.state == state else None
        return wait_for(reached, timeout_s, f"{model_name} version {version} in state {state}", self.log)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then wait; kills only if the server ignores it. Returns the exit code."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def wait_for(predicate: Callable[[], Optional[T]], timeout_s: float, what: str,
             context: Callable[[], str] = lambda: "") -> T:
    """Polls `predicate` until it returns something truthy; fails with `what` (and the server log) after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}\n{context()[-4000:]}")


def free_base_path(root: pathlib.Path, name: str = MODEL_NAME) -> pathlib.Path:
    base = root / name
    base.mkdir(parents=True, exist_ok=True)
    return base


# --- Batching measurement (a script for notes, not a timed test) ----------------------------------------

def _load(target: str, clients: int, seconds: float, model_name: str) -> tuple[float, float, float, int]:
    """`clients` threads sending one-row Predicts for `seconds`; returns (QPS, p50 ms, p99 ms, errors)."""
    channel = grpc.insecure_channel(target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    requests = [contract_request(history=[(TRACKS[(i + j) % len(TRACKS)], "like") for j in range(1 + i % 7)],
                                 model_name=model_name) for i in range(16)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop_at = time.monotonic() + seconds

    def client(index: int) -> None:
        i = index
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                stub.Predict(requests[i % len(requests)], timeout=10)
            except grpc.RpcError:
                errors[index] += 1
            latencies[index].append(time.perf_counter() - started)
            i += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    channel.close()
    flat = np.array([value for values in latencies for value in values]) * 1000.0
    return len(flat) / elapsed, float(np.percentile(flat, 50)), float(np.percentile(flat, 99)), sum(errors)


def benchmark_batching(seconds: float = 5.0, concurrency: Sequence[int] = (1, 4, 8),
                       model_dir: Optional[pathlib.Path] = None) -> list[dict[str, Any]]:
    """QPS / p50 / p99 over gRPC, with and without --enable_batching, on this machine.

    Serves the toy model, or `model_dir` (a SavedModel version folder with the contract, e.g. a pushed export).
    """
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as root:
        base = free_base_path(pathlib.Path(root))
        if model_dir is None:
            build_model(base / "1", version_tag=1)
        else:
            copy_version(model_dir, base, 1)
        settings = {"off": [],
                    "on, timeout 0": ["--enable_batching", "--max_batch_size", "32"],
                    "on, timeout 2 ms": ["--enable_batching", "--max_batch_size", "32",
                                         "--batch_timeout_micros", "2000"]}
        for batching, flags in settings.items():
            log = pathlib.Path(root) / f"server-{len(rows)}.log"
            with ServerProcess(["--model_name", MODEL_NAME, "--model_base_path", str(base), *flags], log,
                               rest=False) as server:
                server.wait_for_ports()
                server.wait_for_state(1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
                _load(server.target, 2, 1.0, MODEL_NAME)  # warm the channel and the graph
                for clients in concurrency:
                    qps, p50, p99, errors = _load(server.target, clients, seconds, MODEL_NAME)
                    rows.append({"batching": batching, "clients": clients, "qps": qps, "p50_ms": p50,
                                 "p99_ms": p99, "errors": errors})
                    print(f"batching {batching:16s}  clients {clients}  QPS {qps:7.1f}  p50 {p50:6.2f} ms  "
                          f"p99 {p99:6.2f} ms  errors {errors}", flush=True)
            merged = re.findall(r"batching: .*", log.read_text())  # the server's own count, logged at shutdown
            if merged:
                print(f"  server {merged[-1]}", flush=True)
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark", action="store_true", help="measure batching (QPS, p50, p99)")
    parser.add_argument("--seconds", type=float, default=5.0, help="load duration per setting")
    parser.add_argument("--model_dir", type=pathlib.Path, default=None,
                        help="a SavedModel version folder with the serving contract (default: the toy model)")
    args = parser.parse_args(argv)
    if not args.benchmark:
        parser.error("nothing to do: pass --benchmark")
    benchmark_batching(args.seconds, model_dir=args.model_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
