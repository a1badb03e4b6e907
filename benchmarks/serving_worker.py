"""The serving section's in-process measurement, in a process of its own. Started by benchmarks.serving.

    python -m benchmarks.serving_worker JOB.json RESULT.json

A process of its own because the server's TensorFlow settings (serving.runtime: oneDNN off unless
`--enable_onednn`) only apply if made before TensorFlow is imported, and the benchmark process imports TensorFlow
with its defaults for the other sections. This process makes the same settings as `python -m serving.server`, so
"in-process" is what the server runs per request, minus gRPC.

Measured, each in a time-bounded loop, one caller:
- `servable.run` on inputs decoded beforehand (the signature call: tensors in, numpy out);
- the full in-process request path, `Predictor.predict_on` on PredictRequests (decode, run, encode);
and, with `profile_calls` > 0, a cProfile of that full path (the functions with the most own time).
Also: load time, the first call after loading (no warm-up), and the tracks the model knows (its answer to an
empty history), from which the parent builds the same request mix.
"""
from __future__ import annotations

import cProfile
import io
import json
import pathlib
import pstats
import sys
import time
from typing import Any

MAX_CALLS = 10_000_000
PROFILE_LINES = 14


def profile_summary(call: Any, calls: int) -> dict[str, Any]:
    """cProfile of `calls` calls: total ms per call, and the top functions by own time (ms per call)."""
    profiler = cProfile.Profile()
    began = time.perf_counter()
    profiler.enable()
    for i in range(calls):
        call(i)
    profiler.disable()
    per_call_ms = (time.perf_counter() - began) * 1000.0 / calls
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (filename, line, function), (_, count, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{pathlib.Path(filename).name}:{line}({function})" if line else function
        rows.append({"function": where, "calls_per_request": count / calls, "own_ms": own * 1000.0 / calls,
                     "cumulative_ms": cumulative * 1000.0 / calls})
    rows.sort(key=lambda row: row["own_ms"], reverse=True)
    return {"calls": calls, "ms_per_call_profiled": per_call_ms, "top_by_own_time": rows[:PROFILE_LINES]}


def measure(job: dict[str, Any]) -> dict[str, Any]:
    from serving import runtime

    runtime.configure_tensorflow(job["enable_onednn"])  # as the server does, before TensorFlow is imported

    from benchmarks.measure import timed_loop
    from benchmarks.serving_load import predict_request, request_mix
    from serving import model_manager, tensors
    from serving.prediction_service import Predictor

    name, seconds = job["model_name"], job["seconds"]
    began = time.perf_counter()
    servable = model_manager.load_servable(name, 1, job["model_dir"], ["serve"])
    load_s = time.perf_counter() - began
    signature = servable.signature("serving_default")
    empty = tensors.decode_inputs(predict_request((), name, (), job["exclude_width"]).inputs, signature.inputs,
                                  signature.name)
    began = time.perf_counter()
    answer = servable.run(signature, empty)
    first_call_ms = (time.perf_counter() - began) * 1000.0
    tracks = [track.decode() for track in answer["track_ids"][0] if track]
    requests = request_mix(tracks, name, job["exclude_width"])
    arrays = [tensors.decode_inputs(request.inputs, signature.inputs, signature.name) for request in requests]
    predictor = Predictor(registry=None)  # type: ignore[arg-type]  # predict_on needs no registry

    def run(i: int) -> Any:
        return servable.run(signature, arrays[i % len(arrays)])

    def full_path(i: int) -> Any:
        return predictor.predict_on(servable, requests[i % len(requests)])

    timed_loop(full_path, min(2.0, seconds / 2), MAX_CALLS, min_calls=5 * len(requests))  # warm every variant
    loop = timed_loop(run, seconds, MAX_CALLS)
    full = timed_loop(full_path, seconds, MAX_CALLS)
    result = {
        "load_s": load_s, "first_call_ms": first_call_ms, "tracks": tracks,
        "qps": loop["calls_per_s"], "p50_ms": loop["p50_ms"], "p99_ms": loop["p99_ms"], "calls": loop["calls"],
        "seconds": loop["seconds"], "direct_graph_call": signature.flat_call is not None,
        "full_path": {"qps": full["calls_per_s"], "p50_ms": full["p50_ms"], "p99_ms": full["p99_ms"],
                      "calls": full["calls"]},
        "onednn": job["enable_onednn"],
    }
    if job.get("profile_calls"):
        result["profile"] = profile_summary(full_path, job["profile_calls"])
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    job = json.loads(pathlib.Path(argv[0]).read_text())
    pathlib.Path(argv[1]).write_text(json.dumps(measure(job)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
