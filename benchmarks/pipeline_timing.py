"""Section 5, pipeline: end-to-end wall time of `pipeline.local_runner` on a simulated log, per component.

Per-component times come from the run's MLMD store: each execution's creation and last update times, which
LocalDagRunner sets when the component starts and when it finishes. Each component's share of the run is
the ratio this section reports (the alternative to a step is not running it).
"""
from __future__ import annotations

import pathlib
from typing import Any, Callable

from benchmarks.pipeline_runs import PipelineRun, PipelineRuns, RunSpec
from benchmarks.settings import Profile
from harness.numbers import ratio

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
    slowest = max(rows, key=lambda row: row["seconds"])
    stats = run_outputs.read_feedback_stats(run.output("FeedbackLabeler", "feedback_stats"))
    return {
        "plays": run.plays,
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
    spec = RunSpec.of(profile, "pipeline")
    pipeline_run = runs.get(spec)
    section = summarize(pipeline_run)
    say(f"pipeline: {section['plays']:,} plays in {section['mlmd_span_s']:.1f} s (MLMD); slowest "
        f"{section['slowest_component']} ({section['slowest_share']:.0%})")
    return section
