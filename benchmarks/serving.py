"""Section 4, serving: the project's TF-Serving-API gRPC server (`python -m serving.server`) on loopback with a
model the pipeline exported, against the same model called in this process.

Measured: a closed loop with 1, 2, 4, 8 clients (QPS, p50, p99); the same requests through the servable
in-process (serving.model_manager, what the server runs per request, minus gRPC and proto decoding; in a process
of its own with the server's TensorFlow settings, benchmarks.serving_worker, which also profiles the full
in-process path): the gRPC overhead, checked against issue 15's latency targets (printed, never asserted);
the first request after the model became AVAILABLE on a server started without warm-up and
on one with warm-up (the export's assets.extra records); and a version swap under load, which must fail no
request. Every loop is bounded in time; the servers are stopped (SIGTERM) when the section ends or fails.
"""
from __future__ import annotations

import json
import math
import pathlib
import shutil
import subprocess
import sys
import time
from typing import Any, Callable, Optional

from benchmarks.pipeline_runs import PipelineRuns, RunSpec
from benchmarks.results import SectionFailed
from benchmarks.serving_load import LoadGenerator, request_mix
from benchmarks.settings import Profile
from harness.numbers import ratio

SWAP_CLIENTS = 4
POLL_S = "0.5"
MODEL_NAME = "music_retrieval"
PROFILE_CALLS = 300
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def model_from_run(profile: Profile, runs: PipelineRuns) -> pathlib.Path:
    """The ScaNN export of the model run (ServingExporter's output: there whether or not it was blessed)."""
    from tfx.utils import path_utils

    run = runs.get(RunSpec.of(profile, "model"))
    return pathlib.Path(path_utils.serving_model_path(run.output("ServingExporter", "scann_model")))


def first_request(server: Any, request: Any) -> dict[str, float]:
    """Latency of the first Predict after AVAILABLE (the channel connected beforehand), and of the second."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(server.target) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        times = []
        for _ in range(2):
            began = time.perf_counter()
            stub.Predict(request, timeout=120)
            times.append((time.perf_counter() - began) * 1000.0)
    return {"first_ms": times[0], "second_ms": times[1]}


def start_server(base: pathlib.Path, log: pathlib.Path, warmup: bool, timeout_s: float) -> tuple[Any, float]:
    """A server over `base`, waited for until the model is AVAILABLE; returns it and its start-up seconds."""
    from serving.process import ServerProcess

    began = time.perf_counter()
    server = ServerProcess(["--model_name", MODEL_NAME, "--model_base_path", str(base),
                            "--file_system_poll_wait_seconds", POLL_S,
                            "--enable_model_warmup", "true" if warmup else "false"], log, rest=False)
    try:
        server.wait_for_ports(timeout_s)
        server.wait_for_available(MODEL_NAME, timeout_s)
    except BaseException:
        server.stop()
        raise
    return server, time.perf_counter() - began


def in_process(model_dir: pathlib.Path, width: int, seconds: float, out: pathlib.Path,
               profile_calls: int = PROFILE_CALLS) -> dict[str, Any]:
    """The export loaded and called in a process set up as the server sets itself up (benchmarks.serving_worker):
    load time, first call, known tracks, the signature call and the full in-process path, and their profile."""
    job = {"model_dir": str(model_dir), "model_name": MODEL_NAME, "exclude_width": width, "seconds": seconds,
           "enable_onednn": False, "profile_calls": profile_calls}
    job_path, result_path = out / "in-process-job.json", out / "in-process.json"
    job_path.write_text(json.dumps(job))
    with open(out / "in-process.log", "w") as log:
        process = subprocess.run([sys.executable, "-m", "benchmarks.serving_worker", str(job_path), str(result_path)],
                                 cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=600 + 4 * seconds)
    if process.returncode != 0:
        raise RuntimeError(f"benchmarks.serving_worker failed ({process.returncode}); see {out / 'in-process.log'}")
    return json.loads(result_path.read_text())


def exclude_width(model_dir: pathlib.Path) -> int:
    """E, the static width of exclude_track_ids in the export's serving_default signature."""
    from tensorflow.python.saved_model import loader_impl

    saved = loader_impl.parse_saved_model(str(model_dir))
    spec = saved.meta_graphs[0].signature_def["serving_default"].inputs["exclude_track_ids"]
    dims = spec.tensor_shape.dim
    return dims[1].size if len(dims) == 2 and dims[1].size > 0 else 0


def swapped(server: Any) -> bool:
    """Version 2 serves and version 1 is unloaded (END, or no longer listed)."""
    from tensorflow_serving.apis import get_model_status_pb2

    status = get_model_status_pb2.ModelVersionStatus
    states = {version: entry.state for version, entry in server.version_states(MODEL_NAME).items()}
    return states.get(2) == status.AVAILABLE and states.get(1, status.END) == status.END


def version_swap(server: Any, base: pathlib.Path, model_dir: pathlib.Path, requests: list[Any], profile: Profile,
                 say: Callable[[str], None]) -> dict[str, Any]:
    """Load with SWAP_CLIENTS clients; push version 2 (file by file, as a Pusher); keep loading until version 2
    answers and version 1 is gone, then `serving_swap_s` more. Failed requests must be 0."""
    from serving.process import wait_for

    load = LoadGenerator(server.target, requests, SWAP_CLIENTS, profile.serving_timeout_s + 4 * profile.serving_swap_s)
    load.start()
    try:
        time.sleep(profile.serving_swap_s)
        pushed_at = time.perf_counter()
        shutil.copytree(model_dir, base / "2")
        wait_for(lambda: swapped(server), profile.serving_timeout_s, "version 2 AVAILABLE and version 1 unloaded",
                 server.log)
        swapped_after = time.perf_counter() - pushed_at
        time.sleep(profile.serving_swap_s)
    finally:
        result = load.stop()
    say(f"serving: version swap under {SWAP_CLIENTS} clients: {result['requests']} answered, {result['failed']} "
        f"failed, answers by version {result['answers_by_version']}, swapped {swapped_after:.1f} s after the push")
    return {**result, "swap_seconds_after_push": swapped_after, "pushed_version": 2}


ISSUE_15_IN_PROCESS_P50_MS = 3.8  # the in-process p50 before issue 15's request-path work (RESULTS.md, 2026-11-29)


def latency_targets(loops: list[dict[str, Any]], local: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 15's serving latency goals, each with the measured value and whether it was met."""
    by_clients = {row["clients"]: row for row in loops}
    goals: list[tuple[str, Optional[float], Callable[[float], bool]]] = []
    if 1 in by_clients:
        one = by_clients[1]
        goals += [("gRPC p50 - in-process p50, 1 client (ms) <= 1.0", one["p50_ms"] - local["p50_ms"],
                   lambda value: value <= 1.0),
                  ("gRPC p99, 1 client (ms) <= 5", one["p99_ms"], lambda value: value <= 5.0)]
    goals.append((f"in-process p50 speed-up over {ISSUE_15_IN_PROCESS_P50_MS} ms >= 2x",
                  ratio(ISSUE_15_IN_PROCESS_P50_MS, local["p50_ms"]), lambda value: value >= 2.0))
    if 1 in by_clients and 2 in by_clients:
        goals.append(("QPS 2 clients / 1 client >= 1.6x", ratio(by_clients[2]["qps"], by_clients[1]["qps"]),
                      lambda value: value >= 1.6))
    rows = [{"target": target, "value": value, "met": value is not None and math.isfinite(value) and check(value)}
            for target, value, check in goals]
    return rows


def run(profile: Profile, runs: PipelineRuns, out: pathlib.Path, say: Callable[[str], None],
        model_dir: Optional[pathlib.Path] = None) -> dict[str, Any]:
    source = "--model-dir" if model_dir else "the model run's ServingExporter (ScaNN export)"
    model_dir = model_dir or model_from_run(profile, runs)
    if not (model_dir / "saved_model.pb").is_file():
        raise FileNotFoundError(f"{model_dir} is not a SavedModel version folder (no saved_model.pb)")
    out.mkdir(parents=True, exist_ok=True)
    width = exclude_width(model_dir)
    local = in_process(model_dir, width, profile.serving_loop_s, out)
    tracks = local.pop("tracks")
    requests = request_mix(tracks, MODEL_NAME, width)
    say(f"serving: model {model_dir} ({source}); exclude width {width}; {len(requests)} request variants")

    cold_base = out / "cold" / MODEL_NAME
    shutil.copytree(model_dir, cold_base / "1")
    server, cold_start_s = start_server(cold_base, out / "server-no-warmup.log", False, profile.serving_timeout_s)
    try:
        cold = first_request(server, requests[0])
    finally:
        server.stop()
    say(f"serving: without warm-up: first request {cold['first_ms']:.1f} ms, second {cold['second_ms']:.1f} ms")

    base = out / "models" / MODEL_NAME
    shutil.copytree(model_dir, base / "1")
    server, warm_start_s = start_server(base, out / "server.log", True, profile.serving_timeout_s)
    try:
        warm = first_request(server, requests[0])
        say(f"serving: with warm-up: first request {warm['first_ms']:.1f} ms (server start {warm_start_s:.1f} s vs "
            f"{cold_start_s:.1f} s without)")
        LoadGenerator(server.target, requests, 2, 1.0).run_for(min(1.0, profile.serving_loop_s))  # warm the channel
        loops = []
        for clients in profile.clients:
            row = LoadGenerator(server.target, requests, clients, profile.serving_loop_s).run_for(profile.serving_loop_s)
            loops.append(row)
            say(f"serving: {clients} client(s): {row['qps']:.1f} QPS, p50 {row['p50_ms']:.2f} ms, "
                f"p99 {row['p99_ms']:.2f} ms, failed {row['failed']}")
        swap = version_swap(server, base, model_dir, requests, profile, say)
    finally:
        exit_code = server.stop()
    say(f"serving: in-process {local['qps']:.1f} calls/s, p50 {local['p50_ms']:.2f} ms (signature call); full path "
        f"(decode, run, encode) p50 {local['full_path']['p50_ms']:.2f} ms")

    one = next((row for row in loops if row["clients"] == 1), loops[0])
    best = max(loops, key=lambda row: row["qps"])
    targets = latency_targets(loops, local)
    for target in targets:
        shown = "n/a" if target["value"] is None else f"{target['value']:.2f}"
        say(f"serving: target {target['target']}: {shown} ({'met' if target['met'] else 'MISSED'})")
    section = {
        "model_dir": str(model_dir), "model_source": source, "exclude_width": width, "catalog_sample": len(tracks),
        "closed_loop": loops,
        "max_qps": best["qps"], "max_qps_clients": best["clients"],
        "in_process": local,
        "targets": targets,
        "grpc_overhead": {
            "p50_ratio_grpc_over_in_process": ratio(one["p50_ms"], local["p50_ms"]),
            "p50_added_ms": one["p50_ms"] - local["p50_ms"],
            "p50_added_ms_over_full_path": one["p50_ms"] - local["full_path"]["p50_ms"],
            "qps_ratio_grpc_1_client_over_in_process": ratio(one["qps"], local["qps"]),
            "qps_ratio_grpc_max_over_in_process": ratio(best["qps"], local["qps"]),
        },
        "first_request": {
            "without_warmup_ms": cold["first_ms"], "with_warmup_ms": warm["first_ms"],
            "steady_p50_ms": one["p50_ms"],
            "ratio_without_over_with": ratio(cold["first_ms"], warm["first_ms"]),
            "server_start_s_without_warmup": cold_start_s, "server_start_s_with_warmup": warm_start_s,
            "second_request_ms_without_warmup": cold["second_ms"],
            "in_process_first_call_ms": local["first_call_ms"],
        },
        "version_swap": swap,
        "server_exit_code": exit_code,
        "failed_requests_total": sum(row["failed"] for row in loops) + swap["failed"],
    }
    if swap["failed"]:
        raise SectionFailed(f"{swap['failed']} requests failed during the version swap ({swap['failures_by_code']})",
                            section)
    if "2" not in swap["answers_by_version"]:
        raise SectionFailed("version 2 never answered during the swap", section)
    return section
