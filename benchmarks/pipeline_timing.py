"""Section 5, pipeline: end-to-end wall time of `pipeline.local_runner` on simulated logs, per component, and
how it grows with the log (the cost curve).

Per-component times come from the run's MLMD store: each execution's creation and last update times, which
LocalDagRunner sets when the component starts and when it finishes. Each component's share of the run is
the ratio this section reports (the alternative to a step is not running it). CPU seconds and peak RSS per
component are cut from the run's process tree sampled while it ran (benchmarks.measure.PeakRssSampler): CPU
seconds are what a loaded machine changes least. The run is one process, so a component's RSS includes what
earlier components left allocated: a component's peak is the process's peak while it ran.

The cost curve runs the profile's log at each `pipeline_scales` multiplier (plays, listeners and catalog
together) and reports the growth exponent log(cost_b / cost_a) / log(plays_b / plays_a) between consecutive
sizes: 1 is linear; issue 14 asks for at most LINEAR_EXPONENT.
"""
from __future__ import annotations

import math
import pathlib
from typing import Any, Callable, Optional, Sequence

import numpy as np

from benchmarks.measure import MB, ResourceSample, load_average
from benchmarks.pipeline_runs import PipelineRun, PipelineRuns, RunSpec
from benchmarks.settings import Profile
from harness.numbers import ratio

LINEAR_EXPONENT = 1.1
"""Issue 14's bar for the growth exponent of the whole run between sizes."""

STATE_NAMES = {0: "UNKNOWN", 1: "NEW", 2: "RUNNING", 3: "COMPLETE", 4: "FAILED", 5: "CACHED", 6: "CANCELED"}


def component_times(metadata_path: pathlib.Path) -> list[dict[str, Any]]:
    """[{component, type, state, start_ms, end_ms, seconds}] of the store's newest pipeline run, in start order."""
    from pipeline import run_outputs

    store = run_outputs.sqlite_store(metadata_path)
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        raise LookupError(f"{metadata_path} holds no pipeline run")
    latest = max(runs, key=lambda context: (context.create_time_since_epoch, context.id))
    rows = []
    for execution in store.get_executions_by_context(latest.id):
        node = next((c.name for c in store.get_contexts_by_execution(execution.id) if c.type == "node"),
                    str(execution.id))
        rows.append({
            "component": node.split(".", 1)[-1],
            "type": execution.type,
            "state": STATE_NAMES.get(execution.last_known_state, str(execution.last_known_state)),
            "start_ms": execution.create_time_since_epoch,
            "end_ms": execution.last_update_time_since_epoch,
            "seconds": (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000.0,
        })
    return sorted(rows, key=lambda row: (row["start_ms"], row["component"]))


def stage_resources(timeline: Optional[Sequence[ResourceSample]], start_ms: float,
                    end_ms: float) -> tuple[Optional[float], Optional[float]]:
    """(CPU seconds, peak RSS MB) of the sampled process tree between two times; (None, None) unsampled.

    CPU seconds are the cumulative CPU interpolated at both ends; the peak is the largest sample inside the
    window (the nearest sample when the window is shorter than the sampling interval)."""
    if not timeline:
        return None, None
    times = [sample.time_ms for sample in timeline]
    cpu = [sample.children_cpu_s for sample in timeline]

    def cpu_at(when: float) -> float:
        return float(np.interp(when, times, cpu))

    inside = [sample.children_rss for sample in timeline if start_ms <= sample.time_ms <= end_ms]
    if not inside:
        middle = (start_ms + end_ms) / 2
        inside = [min(timeline, key=lambda sample: abs(sample.time_ms - middle)).children_rss]
    return max(0.0, cpu_at(end_ms) - cpu_at(start_ms)), max(inside) / MB


def growth_exponent(cost_a: Optional[float], cost_b: Optional[float], plays_a: int, plays_b: int) -> Optional[float]:
    """log(cost_b / cost_a) / log(plays_b / plays_a): 1 when cost grows as the log does, 2 when quadratically."""
    if not cost_a or not cost_b or cost_a <= 0 or cost_b <= 0 or plays_a <= 0 or plays_b == plays_a:
        return None
    return math.log(cost_b / cost_a) / math.log(plays_b / plays_a)


def cost_curve(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Growth exponents between consecutive run summaries (ascending plays): the whole run's MLMD span and
    CPU seconds, and each component's seconds and CPU seconds."""
    ordered = sorted(points, key=lambda point: point["plays"])
    steps = []
    for small, large in zip(ordered, ordered[1:]):
        a, b = small["plays"], large["plays"]
        by_name = {row["component"]: row for row in small["components"]}
        components = {}
        for row in large["components"]:
            before = by_name.get(row["component"])
            if before is not None:
                components[row["component"]] = {
                    "seconds": growth_exponent(before["seconds"], row["seconds"], a, b),
                    "cpu_s": growth_exponent(before.get("cpu_s"), row.get("cpu_s"), a, b)}
        steps.append({"from_plays": a, "to_plays": b,
                      "run_s": growth_exponent(small["mlmd_span_s"], large["mlmd_span_s"], a, b),
                      "run_cpu_s": growth_exponent(small.get("cpu_s"), large.get("cpu_s"), a, b),
                      "components": components})
    run_exponents = [step["run_s"] for step in steps if step["run_s"] is not None]
    sizes = [{**{key: point.get(key) for key in ("plays", "users", "tracks", "mlmd_span_s", "cpu_s", "peak_rss_mb",
                                                 "wall_s", "load_average")},
              "components": {row["component"]: {key: row.get(key) for key in ("seconds", "cpu_s", "peak_rss_mb")}
                             for row in point["components"]}}
             for point in ordered]
    return {"sizes": sizes,
            "exponents": steps,
            "max_run_exponent": max(run_exponents) if run_exponents else None,
            "linear_exponent": LINEAR_EXPONENT,
            "linear": all(value <= LINEAR_EXPONENT for value in run_exponents) if run_exponents else None}


def summarize(run: PipelineRun) -> dict[str, Any]:
    """The section's numbers for one finished run."""
    from pipeline import configs, run_outputs

    rows = component_times(run.root / configs.METADATA_FILE)
    failed = [row["component"] for row in rows if row["state"] not in ("COMPLETE", "CACHED")]
    if failed:
        raise RuntimeError(f"pipeline run {run.root}: components not complete: {failed}")
    cached = [row["component"] for row in rows if row["state"] == "CACHED"]
    span_s = (max(row["end_ms"] for row in rows) - min(row["start_ms"] for row in rows)) / 1000.0
    total = sum(row["seconds"] for row in rows)
    for row in rows:
        row["share_of_run"] = ratio(row["seconds"], span_s)
        row["cpu_s"], row["peak_rss_mb"] = stage_resources(run.timeline, row["start_ms"], row["end_ms"])
    first, last = min(row["start_ms"] for row in rows), max(row["end_ms"] for row in rows)
    run_cpu_s, run_peak_mb = stage_resources(run.timeline, first, last)
    slowest = max(rows, key=lambda row: row["seconds"])
    stats = run_outputs.read_feedback_stats(run.output("FeedbackLabeler", "feedback_stats"))
    return {
        "plays": run.plays,
        "users": run.spec.users if run.spec else None,
        "tracks": run.spec.tracks if run.spec else None,
        "cpu_s": run_cpu_s,
        "peak_rss_mb": run_peak_mb,
        "settings": list(run.spec.settings) if run.spec else None,
        "given_root": run.spec is None,
        "root": str(run.root),
        "wall_s": run.wall_s,
        "mlmd_span_s": span_s,
        "components_sum_s": total,
        "orchestration_s": span_s - total,
        "events_per_s": ratio(run.plays, span_s),
        "components": rows,
        "cached_components": cached,
        "slowest_component": slowest["component"],
        "slowest_share": slowest["share_of_run"],
        "examples": stats["examples"],
        "pushed": dict(run.result.pushed),
        "simulate_s": run.simulate_s,
        "log": str(run.log_path) if run.log_path else None,
    }


def run(profile: Profile, runs: PipelineRuns, say: Callable[[str], None]) -> dict[str, Any]:
    """The run at scale 1 is the section's component table; every scale (one run, the given one, with
    --pipeline-root) is a point of the cost curve."""
    scales = [1.0] if runs.given is not None else profile.scales
    points = {}
    for scale in scales:
        point = summarize(runs.get(RunSpec.of(profile, "pipeline", scale)))
        point["load_average"] = load_average()
        points[scale] = point
        say(f"pipeline: {point['plays']:,} plays in {point['mlmd_span_s']:.1f} s (MLMD), "
            f"{'n/a' if point['cpu_s'] is None else format(point['cpu_s'], '.1f')} CPU s; slowest "
            f"{point['slowest_component']} ({point['slowest_share']:.0%}); load {point['load_average']}")
    section = dict(points[1.0])
    section["curve"] = cost_curve(list(points.values()))
    for step in section["curve"]["exponents"]:
        say(f"pipeline: growth exponent {step['from_plays']:,} -> {step['to_plays']:,} plays: run "
            f"{_exponent(step['run_s'])} (CPU {_exponent(step['run_cpu_s'])}); "
            + ", ".join(f"{name} {_exponent(values['seconds'])}" for name, values in step["components"].items()))
    return section


def _exponent(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.2f}"
