"""Section 1, labelling: the FeedbackLabeler executor (Beam DirectRunner, in-process and N worker processes, and
Beam's portable runner on `pipeline.beam_cluster`) against the same counts computed directly with pandas, on one
simulated log.

The Beam runs read GZIP TFRecords of tf.train.Example (what ExampleGen writes) and write labelled sequences;
the pandas reference reads the same plays from daily Parquet files (see `pandas_labelling` for what it
computes and what it leaves out). Both must agree on every count of feedback_stats.json, or the section fails.
"""
from __future__ import annotations

import dataclasses
import gc
import pathlib
import time
from typing import Any, Callable

from benchmarks import labeler, pandas_labelling
from benchmarks.measure import MB, PeakRssSampler, load_average, rss_mb
from benchmarks.results import SectionFailed
from benchmarks.settings import Profile
from harness.numbers import ratio
from listening_logs import simulate, spans
from pipeline import beam_cluster, configs
from schema import span_folders

PARQUET_DIRNAME = "parquet"
PORTABLE = "portable"


def run_pandas(parquet_dir: pathlib.Path, params: Any, events: int, sample_interval: float) -> dict[str, Any]:
    """Reads the Parquet spans and computes the reference counts, timed and with sampled peak RSS."""
    gc.collect()
    before = rss_mb()
    with PeakRssSampler(sample_interval) as sampler:
        began = time.perf_counter()
        frame = pandas_labelling.read_log(parquet_dir.glob(f"{span_folders.GLOB}/*.parquet"))
        read_s = time.perf_counter() - began
        reference = pandas_labelling.label_log(frame, params)
        wall = time.perf_counter() - began
    del frame
    return {
        "wall_s": wall, "read_s": read_s, "compute_s": wall - read_s,
        "events_per_s": events / wall, "compute_events_per_s": events / (wall - read_s),
        "peak_rss_mb": sampler.peak_total / MB, "rss_before_mb": before,
        "peak_rss_increase_mb": sampler.peak_total / MB - before, "rss_samples": sampler.samples,
        "examples": reference.stats["examples"], "history_tokens": reference.stats["history_tokens"],
        "_stats": reference.stats,
    }


def run_on_portable_cluster(out: pathlib.Path, events: int, interval: float,
                            say: Callable[[str], None]) -> dict[str, Any]:
    """One labeler run on a portable cluster started for it (and stopped after it). The cluster's processes are
    this process's children, so their memory is in the sampled peak; the cluster's start-up is not in the time."""
    cluster_dir = out / "beam-cluster"
    with beam_cluster.running(cluster_dir) as cluster:
        say(f"labelling: portable cluster up (logs in {cluster.log_dir})")
        gc.collect()
        rss_before = rss_mb()
        result = labeler.run_labeler(out, out / "runs" / PORTABLE, 1, events, interval, say,
                                     extra_beam_args=cluster.beam_args(), mode=PORTABLE)
    result["peak_rss_increase_mb"] = result["peak_rss_mb"] - rss_before
    return result


def run(profile: Profile, out: pathlib.Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Simulates the log, runs Beam per worker count and pandas once, checks agreement; returns the section."""
    sizes = profile.log("labelling")
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    frame = simulate.generate(simulate.SimulationConfig(**sizes)).frame()
    simulate_s = time.perf_counter() - began
    events = len(frame)
    say(f"labelling: simulated {events:,} plays in {simulate_s:.1f} s; writing tf.train.Examples and Parquet")
    began = time.perf_counter()
    labeler.write_examples(frame, out / labeler.EXAMPLES_DIRNAME / f"Split-{labeler.SPLIT}", profile.labelling_shards)
    labeler.write_schema(out / labeler.SCHEMA_DIRNAME)
    spans.write_spans(frame, out / PARQUET_DIRNAME, "parquet")
    write_s = time.perf_counter() - began
    del frame
    gc.collect()

    params = configs.PipelineConfig().labeling_params()
    interval = 0.2 if events >= 100_000 else 0.05
    beam_runs = []
    for index, workers in enumerate(profile.workers):
        mode = labeler.beam_config(workers).beam_direct_running_mode
        gc.collect()
        rss_before = rss_mb()
        result = labeler.run_labeler(out, out / "runs" / f"{index + 1}-{mode}-{workers}", workers, events, interval, say)
        result["peak_rss_increase_mb"] = result["peak_rss_mb"] - rss_before
        beam_runs.append(result)
    if profile.labelling_cluster == PORTABLE:
        beam_runs.append(run_on_portable_cluster(out, events, interval, say))
    say(f"labelling: pandas reference on {events:,} plays")
    pandas = run_pandas(out / PARQUET_DIRNAME, params, events, interval)
    say(f"labelling: pandas {pandas['wall_s']:.2f} s ({pandas['events_per_s']:,.0f} events/s, "
        f"read {pandas['read_s']:.2f} s)")

    disagreements = {f"{run['mode']}-{run['workers']}": pandas_labelling.differences(pandas["_stats"], run["_stats"])
                     for run in beam_runs}
    for run in beam_runs:
        del run["_stats"]
    del pandas["_stats"]
    in_process = next((run for run in beam_runs if run["workers"] == 1), beam_runs[0])
    ratios: dict[str, Any] = {
        "beam_in_process_over_pandas_events_per_s": ratio(in_process["events_per_s"], pandas["events_per_s"]),
        "pandas_speedup_over_beam_in_process": ratio(pandas["events_per_s"], in_process["events_per_s"]),
        "beam_in_process_over_pandas_peak_rss_increase": ratio(in_process["peak_rss_increase_mb"],
                                                               pandas["peak_rss_increase_mb"]),
    }
    for run in beam_runs:
        if run["mode"] == PORTABLE:
            ratios["beam_portable_over_in_process_events_per_s"] = ratio(run["events_per_s"], in_process["events_per_s"])
        elif run is not in_process:
            ratios[f"beam_{run['workers']}_workers_over_pandas_events_per_s"] = ratio(run["events_per_s"],
                                                                                      pandas["events_per_s"])
            ratios[f"beam_{run['workers']}_workers_over_in_process_events_per_s"] = ratio(
                run["events_per_s"], in_process["events_per_s"])
    section = {
        "sizes": {**sizes, "events": events, "shards": profile.labelling_shards},
        "labeling_params": dataclasses.asdict(params),
        "preparation_s": {"simulate": simulate_s, "write_inputs": write_s},
        "beam": beam_runs,
        "pandas": pandas,
        "pandas_covers": list(pandas_labelling.COVERS),
        "pandas_does_not_cover": list(pandas_labelling.DOES_NOT_COVER),
        "agreement": {"compared": list(pandas_labelling.COMPARED_KEYS),
                      "agrees": not any(disagreements.values()), "differences": disagreements},
        "ratios": ratios,
        "memory_measurement": "peak RSS of this process and its children, sampled every "
                              f"{interval} s; increase = peak minus RSS just before the run",
        "loadavg_end": load_average(),
    }
    if any(disagreements.values()):
        raise SectionFailed(f"the pandas reference and the Beam labeller disagree: {disagreements}", section)
    return section
