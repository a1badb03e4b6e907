"""Helpers for the serving tests: the real pushed exports, requests in their contract, a server on loopback.

The tests serve what the pipeline pushes (DESIGN §7): `<serving base>/<model name>/<version>/` SavedModels
with `serving_default` (history_track_ids, history_feedback [B, L], station_id [B], exclude_track_ids [B, E]
-> track_ids, scores [B, K]) and `query_embedding`. `Exports` finds a run's two pushed version folders (ScaNN
and brute force) and the catalog they recommend from (the Trainer's track vocabulary); `copy_version` puts a
copy under a test's own base path as version N. `ServerProcess` (from `serving.process`) runs
`python -m serving.server` in a subprocess on free loopback ports.

Run as a script to measure request batching on a pushed export (QPS, p50, p99 and errors for 1/2/4/8
concurrent gRPC clients, with batching off and on):

    python -m tests.serving_testing --benchmark --model_dir <serving base>/music_retrieval/<version>
"""
from __future__ import annotations

import argparse
import dataclasses
import os
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
import pandas as pd
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from models import serving_export, trainer
from models.features import read_lines
from pipeline import configs
from pipeline.demo_request import read_log
from schema import contract
from serving.process import REPO_ROOT, ServerProcess, wait_for  # noqa: F401  (re-exported for the tests)

MODEL_NAME = configs.SERVED_MODEL_NAMES[serving_export.SCANN]  # music_retrieval
BRUTE_FORCE_MODEL_NAME = configs.SERVED_MODEL_NAMES[serving_export.BRUTE_FORCE]  # music_retrieval_brute_force
PUSHER_IDS = {serving_export.SCANN: "ScannPusher", serving_export.BRUTE_FORCE: "BruteForcePusher"}
TOP_K = configs.PipelineConfig().serving_top_k  # K: tracks per answer
EXCLUDE_WIDTH = configs.PipelineConfig().serving_max_exclusions  # E: exclude_track_ids' static width


@dataclasses.dataclass(frozen=True)
class Exports:
    """The two version folders one pipeline run pushed, and the catalog (raw track ids) they recommend from."""

    scann: pathlib.Path
    brute_force: pathlib.Path
    tracks: tuple[str, ...]
    """The Trainer export's track_vocabulary.txt: every id a recommendation may be."""

    @classmethod
    def from_dirs(cls, scann: os.PathLike, brute_force: os.PathLike, trainer_model_uri: str) -> "Exports":
        for path in (scann, brute_force):
            if not (pathlib.Path(path) / "saved_model.pb").is_file():
                raise FileNotFoundError(f"{path} is not a pushed SavedModel version folder")
        directory = trainer.exported_model_dir(trainer_model_uri)
        if not tf.io.gfile.exists(os.path.join(directory, trainer.TRACK_VOCABULARY_FILE)):
            directory = trainer_model_uri
        tracks = tuple(read_lines(os.path.join(directory, trainer.TRACK_VOCABULARY_FILE)))
        if len(tracks) <= TOP_K + EXCLUDE_WIDTH:
            raise ValueError(f"a catalog of {len(tracks)} tracks is too small to test K={TOP_K}, E={EXCLUDE_WIDTH}")
        return cls(pathlib.Path(scann), pathlib.Path(brute_force), tracks)

    @classmethod
    def from_run(cls, result: Any) -> "Exports":
        """From a `local_runner.RunResult` whose model was blessed and pushed by both Pushers."""
        pushed = {kind: result.pushed.get(pusher) for kind, pusher in PUSHER_IDS.items()}
        missing = [PUSHER_IDS[kind] for kind, path in pushed.items() if not path]
        if missing:
            raise AssertionError(f"the run pushed nothing from {missing}: its model was not blessed")
        return cls.from_dirs(pushed[serving_export.SCANN], pushed[serving_export.BRUTE_FORCE],
                             result.outputs["Trainer"]["model"][0])


def recent_histories(data_dir: pathlib.Path, listeners: int, max_history: int) -> list[list[tuple[str, str]]]:
    """The newest `max_history` plays (track id, label name), oldest first, of the `listeners` busiest listeners
    of a span log: requests as the service would get them."""
    log = read_log(data_dir)
    histories = []
    for user in log[contract.USER_ID].value_counts().index[:listeners]:
        plays = log[log[contract.USER_ID] == user].sort_values(contract.TIMESTAMP_MS).tail(max_history)
        labels = contract.label_ids(plays[contract.FEEDBACK].to_numpy(),
                                    pd.to_numeric(plays[contract.LISTEN_MS], errors="coerce").to_numpy(),
                                    pd.to_numeric(plays[contract.TRACK_MS], errors="coerce").to_numpy())
        histories.append([(track, contract.LABELS[label]) for track, label in zip(plays[contract.TRACK_ID], labels)])
    return histories


def contract_request(history: Sequence[tuple[str, str]], station: str = "", exclude: Sequence[str] = (),
                     version: Optional[int] = None, model_name: str = MODEL_NAME,
                     signature_name: str = "serving_default",
                     exclude_width: int = EXCLUDE_WIDTH) -> predict_pb2.PredictRequest:
    """One-row PredictRequest in the contract's shapes (exclusions padded with "" to the model's width E).

    An empty history is sent as one "" token, the contract's padding, as the client does."""
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


def free_base_path(root: pathlib.Path, name: str = MODEL_NAME) -> pathlib.Path:
    """An empty model base path `<root>/<name>` for a test's own versions."""
    base = root / name
    base.mkdir(parents=True, exist_ok=True)
    return base


def copy_version(source: pathlib.Path, base_path: pathlib.Path, version: int) -> pathlib.Path:
    """Pushes a version folder into a model base path as `version` (copied file by file, not atomically, as a
    Pusher may)."""
    target = base_path / str(version)
    shutil.copytree(source, target, dirs_exist_ok=True)
    return target


def write_corrupt_version(base_path: pathlib.Path, version: int) -> pathlib.Path:
    """A complete-looking version directory whose saved_model.pb is not a SavedModel."""
    target = base_path / str(version)
    (target / "variables").mkdir(parents=True, exist_ok=True)
    (target / "saved_model.pb").write_bytes(b"this is not a SavedModel protocol buffer \x00\xff" * 8)
    return target


# --- Batching measurement (a script for notes, not a timed test) ----------------------------------------

def sample_tracks(target: str, model_name: str, timeout_s: float = 30.0) -> list[str]:
    """Known track ids, from the model itself: its answer to an empty history."""
    with grpc.insecure_channel(target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            contract_request((), model_name=model_name), timeout=timeout_s)
    return [track.decode() for track in tf.make_ndarray(response.outputs["track_ids"])[0] if track]


def _load(target: str, clients: int, seconds: float, model_name: str,
          tracks: Sequence[str]) -> tuple[float, float, float, int]:
    """`clients` threads sending one-row Predicts for `seconds`; returns (QPS, p50 ms, p99 ms, errors).

    QPS counts answered requests only; a failed one counts as an error (its latency is not in p50/p99)."""
    channel = grpc.insecure_channel(target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    labels = ("like", "listen", "skip", "like", "dislike")
    requests = [contract_request([(tracks[(5 * i + j) % len(tracks)], labels[(i + j) % len(labels)])
                                  for j in range(1 + i % 9)], model_name=model_name,
                                 exclude=tracks[i % len(tracks):i % len(tracks) + i % 3]) for i in range(32)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop_at = time.monotonic() + seconds

    def client(index: int) -> None:
        i = index
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                stub.Predict(requests[i % len(requests)], timeout=10)
                latencies[index].append(time.perf_counter() - started)
            except grpc.RpcError:
                errors[index] += 1
            i += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)  # each request has a 10 s deadline, so this always suffices
    elapsed = time.monotonic() - started
    channel.close()
    flat = np.array([value for values in latencies for value in values]) * 1000.0
    if not len(flat):
        return 0.0, float("nan"), float("nan"), sum(errors)
    return len(flat) / elapsed, float(np.percentile(flat, 50)), float(np.percentile(flat, 99)), sum(errors)


BATCHING_SETTINGS = {
    "off": [],
    "on, timeout 0": ["--enable_batching", "--max_batch_size", "32", "--batch_timeout_micros", "0"],
    "on, timeout 2 ms": ["--enable_batching", "--max_batch_size", "32", "--batch_timeout_micros", "2000"],
}


def benchmark_batching(model_dir: pathlib.Path, seconds: float = 8.0, concurrency: Sequence[int] = (1, 2, 4, 8),
                       settings: Sequence[str] = tuple(BATCHING_SETTINGS),
                       model_name: Optional[str] = None) -> list[dict[str, Any]]:
    """QPS / p50 / p99 / errors over loopback gRPC for each batching setting and client count, on this machine.

    `model_dir` is a pushed version folder (`<serving base>/<model name>/<version>`); it is served as version 1
    of `model_name` (default: the name of the folder it was pushed under)."""
    if not (model_dir / "saved_model.pb").is_file():
        raise FileNotFoundError(f"--model_dir {model_dir} is not a SavedModel version folder")
    model_name = model_name or (model_dir.resolve().parent.name if model_dir.name.isdigit() else MODEL_NAME)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as root:
        base = free_base_path(pathlib.Path(root), model_name)
        copy_version(model_dir, base, 1)
        for batching in settings:
            log = pathlib.Path(root) / f"server-{len(rows)}.log"
            with ServerProcess(["--model_name", model_name, "--model_base_path", str(base),
                                *BATCHING_SETTINGS[batching]], log, rest=False) as server:
                server.wait_for_ports()
                server.wait_for_available(model_name)
                tracks = sample_tracks(server.target, model_name)
                _load(server.target, 2, 1.0, model_name, tracks)  # warm the channel and the graph
                for clients in concurrency:
                    qps, p50, p99, errors = _load(server.target, clients, seconds, model_name, tracks)
                    rows.append({"model": model_name, "batching": batching, "clients": clients, "qps": qps,
                                 "p50_ms": p50, "p99_ms": p99, "errors": errors})
                    print(f"{model_name}  batching {batching:16s}  clients {clients}  QPS {qps:7.1f}  "
                          f"p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  errors {errors}", flush=True)
            merged = re.findall(r"batching: .*", log.read_text())  # the server's own count, logged at shutdown
            if merged:
                print(f"  server {merged[-1]}", flush=True)
            elif BATCHING_SETTINGS[batching]:
                print("  server batched nothing: the model's signature is not batchable (outputs without a "
                      "declared batch dimension), so every request ran alone", flush=True)
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark", action="store_true", help="measure batching (QPS, p50, p99, errors)")
    parser.add_argument("--model_dir", type=pathlib.Path, required=True,
                        help="a pushed version folder, e.g. <serving base>/music_retrieval/<version>")
    parser.add_argument("--model_name", default=None,
                        help="the name to serve it under (default: the folder it was pushed under)")
    parser.add_argument("--seconds", type=float, default=8.0, help="load duration per setting (default 8)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8], help="concurrent clients")
    parser.add_argument("--batching", choices=list(BATCHING_SETTINGS), nargs="+", default=list(BATCHING_SETTINGS),
                        help="which settings to measure (default: all)")
    args = parser.parse_args(argv)
    if not args.benchmark:
        parser.error("nothing to do: pass --benchmark")
    if args.seconds <= 0 or min(args.clients) < 1:
        parser.error("--seconds must be > 0 and --clients >= 1")
    try:
        benchmark_batching(args.model_dir, args.seconds, args.clients, args.batching, args.model_name)
    except FileNotFoundError as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
