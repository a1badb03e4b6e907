"""Where a gRPC Predict's time goes: the client's round trip, the server's handler, and a cProfile of the handler.

    python -m benchmarks.serving_profile --model_dir <pushed version folder> [--requests 400] [--out FILE.json]

Starts `python -m serving.server` on loopback through this module (`--serve_profiled`), which wraps the
PredictionService handler: for the first `--requests` requests it only times the handler, for the next ones it
also runs cProfile in it. This process is the client (one, closed loop, the benchmark's request mix). Printed:
client round trip p50, handler p50, their difference (gRPC's transport, thread hand-offs and proto
(de)serialization outside our code), and the handler's functions with the most own time. cProfile slows what it
profiles, so the profiled phase is not timed. For the in-process path alone, see benchmarks.serving_worker.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import statistics
import sys
import tempfile
import threading
import time
from typing import Any, Optional, Sequence

MODEL_NAME = "music_retrieval"


def serve_profiled(result_path: str, requests: int, server_args: list[str]) -> int:
    """Runs serving.server.main with a timed (then profiled) Predict handler; writes the numbers on exit."""
    import cProfile
    import pstats

    from benchmarks.serving_worker import PROFILE_LINES
    from serving import runtime, server

    runtime.configure_tensorflow(server.build_parser().parse_args(server_args).enable_onednn)  # as server.main
    from serving import prediction_service

    original = prediction_service.PredictionServicer.Predict
    lock = threading.Lock()
    timed: list[float] = []
    profiled = [0]
    profilers: list[cProfile.Profile] = []
    local = threading.local()

    def predict(self: Any, request: Any, context: Any) -> Any:
        with lock:
            profiling = len(timed) >= requests
        if not profiling:
            started = time.perf_counter()
            try:
                return original(self, request, context)
            finally:
                with lock:
                    timed.append(time.perf_counter() - started)
        profiler = getattr(local, "profiler", None)
        if profiler is None:
            profiler = local.profiler = cProfile.Profile()
            with lock:
                profilers.append(profiler)
        profiler.enable()
        try:
            return original(self, request, context)
        finally:
            profiler.disable()
            with lock:
                profiled[0] += 1

    prediction_service.PredictionServicer.Predict = predict
    code = server.main(server_args)
    result: dict[str, Any] = {"handler_p50_ms": statistics.median(timed) * 1000.0 if timed else None,
                              "handler_timed": len(timed), "profiled_requests": profiled[0], "top_by_own_time": []}
    if profilers and profiled[0]:
        stats = pstats.Stats(*profilers)
        rows = []
        for (filename, line, function), (_, count, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
            where = f"{pathlib.Path(filename).name}:{line}({function})" if line else function
            rows.append({"function": where, "calls_per_request": count / profiled[0],
                         "own_ms": own * 1000.0 / profiled[0], "cumulative_ms": cumulative * 1000.0 / profiled[0]})
        rows.sort(key=lambda row: row["own_ms"], reverse=True)
        result["top_by_own_time"] = rows[:PROFILE_LINES]
    pathlib.Path(result_path).write_text(json.dumps(result))
    return code


def profile(model_dir: pathlib.Path, requests: int, out: Optional[pathlib.Path]) -> dict[str, Any]:
    from benchmarks.serving_load import known_tracks, request_mix
    from serving.process import ServerProcess

    with tempfile.TemporaryDirectory() as root:
        base = pathlib.Path(root) / MODEL_NAME
        shutil.copytree(model_dir, base / "1")
        result_path = pathlib.Path(root) / "handler.json"
        module = ("benchmarks.serving_profile", "--serve_profiled", str(result_path), str(requests))
        with ServerProcess(["--model_name", MODEL_NAME, "--model_base_path", str(base)], pathlib.Path(root) / "log",
                           rest=False, module=module) as server:
            server.wait_for_ports()
            server.wait_for_available(MODEL_NAME, 180)
            mix = request_mix(known_tracks(server.target, MODEL_NAME, 50), MODEL_NAME, 50)
            stub = server.prediction_stub()
            round_trips = []
            for i in range(requests - 1):  # known_tracks sent one
                started = time.perf_counter()
                stub.Predict(mix[i % len(mix)], timeout=30)
                round_trips.append(time.perf_counter() - started)
            for i in range(requests):
                stub.Predict(mix[i % len(mix)], timeout=30)
        handler = json.loads(result_path.read_text())
    client_p50 = statistics.median(round_trips) * 1000.0
    result = {"client_round_trip_p50_ms": client_p50, **handler,
              "outside_handler_p50_ms": client_p50 - handler["handler_p50_ms"]}
    if out:
        out.write_text(json.dumps(result, indent=1))
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--serve_profiled"]:
        return serve_profiled(argv[1], int(argv[2]), argv[3:])
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving_profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", type=pathlib.Path, required=True, help="a pushed SavedModel version folder")
    parser.add_argument("--requests", type=int, default=400, help="requests timed, then as many profiled (400)")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="also write the numbers here (JSON)")
    args = parser.parse_args(argv)
    if not (args.model_dir / "saved_model.pb").is_file() or args.requests < 2:
        parser.error("--model_dir must be a SavedModel version folder and --requests >= 2")
    result = profile(args.model_dir, args.requests, args.out)
    print(f"client round trip p50 {result['client_round_trip_p50_ms']:.3f} ms; server handler p50 "
          f"{result['handler_p50_ms']:.3f} ms; outside the handler (gRPC, hand-offs, protos) "
          f"{result['outside_handler_p50_ms']:.3f} ms")
    print(f"handler profile, ms per request, {result.get('profiled_requests', 0)} requests:")
    for row in result["top_by_own_time"]:
        print(f"  {row['own_ms']:8.3f} own {row['cumulative_ms']:8.3f} cum  x{row['calls_per_request']:.0f}  "
              f"{row['function']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
