"""Times the FeedbackLabeler Beam executor alone on a simulated log, in-process and with worker processes.

Steps:
1. Simulate a listening log in memory (`listening_logs.simulate.generate`) and write it as ExampleGen
   would: GZIP TFRecord files of tf.train.Example under `<out>/examples/Split-events/` (strings as
   bytes_list, ints as int64_list, empty cells left out). This preparation is timed separately.
2. Run `components.feedback_labeler.executor.Executor` on it with the DirectRunner, once per entry of
   `--workers`: 1 means in-process (`--direct_running_mode=in_memory`), N > 1 means N worker processes
   (`--direct_running_mode=multi_processing`). Default labelling parameters; a fresh output dir per run.
3. Per run: wall seconds, input events per second, and peak RSS summed over this process and all its
   child processes, *sampled* every `--sample-interval` s by a background thread (psutil), so short
   spikes between samples are missed. The example counts per split (feedback_stats.json) of all runs
   must match, or the benchmark fails after writing its report.
4. Prints a table and writes it, with versions, CPU count, load averages, sizes and seed, to
   `<out>/labeler_benchmark.json`.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import os
import pathlib
import platform
import sys
import tempfile
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np
import psutil

from benchmarks.measure import MB, PeakRssSampler, load_average
from harness.numbers import cli_type, int_list
from harness.progress import Progress
from harness.versions import versions
from listening_logs import simulate
from pipeline import configs
from schema import contract

DEFAULT_EVENTS = 1_000_000
DEFAULT_USERS = 20_000
DEFAULT_TRACKS = 50_000
DEFAULT_DAYS = 7
DEFAULT_SEED = 0
DEFAULT_WORKERS = "1,2"
DEFAULT_SHARDS = 4
DEFAULT_SAMPLE_INTERVAL_S = 0.2

SPLIT = "events"
EXAMPLES_DIRNAME = "examples"
SCHEMA_DIRNAME = "schema"
RUNS_DIRNAME = "runs"
RESULT_FILENAME = "labeler_benchmark.json"
TFRECORD_NAME = "data_tfrecord-{shard:05d}-of-{shards:05d}.gz"
PACKAGES = ("apache-beam", "tfx", "tensorflow")


# --- Peak memory: benchmarks.measure.PeakRssSampler (shared with the other sections) ----------------


# --- Preparation: the log as ExampleGen would write it --------------------------------------------------

def simulated_log(args: argparse.Namespace):
    """The simulated log as a pandas frame in contract columns."""
    config = simulate.SimulationConfig(users=args.users, tracks=args.tracks, events=args.events, days=args.days,
                                       seed=args.seed)
    return simulate.generate(config).frame()


def write_examples(frame, split_dir: pathlib.Path, shards: int) -> list[pathlib.Path]:
    """Writes one tf.train.Example per row into `shards` GZIP TFRecord files of contiguous rows.

    Strings go in bytes_list, ints in int64_list; empty strings and missing values are left out (as
    ExampleGen leaves out an empty CSV cell). One Example message is reused and its features overwritten
    or removed per row, which is several times faster than building a new message per row.
    """
    import tensorflow as tf

    strings = {c: [v.encode("utf-8") if isinstance(v, str) and v else None for v in frame[c].tolist()]
               for c in contract.STRING_COLUMNS if c in frame}
    ints = {}
    for column in contract.INT_COLUMNS:
        if column not in frame:
            continue
        values = frame[column]
        if values.isna().any():
            ints[column] = [None if v != v else int(v) for v in values.tolist()]  # NaN != NaN
        else:
            ints[column] = values.to_numpy(dtype=np.int64).tolist()
    n = len(frame)
    split_dir.mkdir(parents=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    bounds = np.linspace(0, n, shards + 1).astype(int)
    example = tf.train.Example()
    features = example.features.feature
    paths = []
    for shard in range(shards):
        path = split_dir / TFRECORD_NAME.format(shard=shard, shards=shards)
        with tf.io.TFRecordWriter(str(path), options) as writer:
            for i in range(bounds[shard], bounds[shard + 1]):
                for column, values in strings.items():
                    value = values[i]
                    if value is None:
                        if column in features:
                            del features[column]
                    else:
                        features[column].bytes_list.value[:] = [value]
                for column, values in ints.items():
                    value = values[i]
                    if value is None:
                        if column in features:
                            del features[column]
                    else:
                        features[column].int64_list.value[:] = [value]
                writer.write(example.SerializeToString())
        paths.append(path)
    return paths


def write_schema(schema_dir: pathlib.Path) -> None:
    schema_dir.mkdir(parents=True)
    (schema_dir / "schema.pbtxt").write_text(contract.SCHEMA_PATH.read_text())


# --- One labeler run ------------------------------------------------------------------------------------

def beam_config(workers: int) -> configs.PipelineConfig:
    mode = "in_memory" if workers == 1 else "multi_processing"
    return dataclasses.replace(configs.PipelineConfig(), beam_direct_running_mode=mode,
                               beam_direct_num_workers=workers)


def run_labeler(out: pathlib.Path, run_dir: pathlib.Path, workers: int, events: int, sample_interval: float,
                say: Callable[[str], None], extra_beam_args: Sequence[str] = (), mode: str = "") -> dict[str, Any]:
    """Runs the executor once on `<out>/examples` into the fresh `run_dir`; returns the run's measurements.

    `extra_beam_args` may send it to another runner (then `mode` names that run in the report)."""
    from tfx.dsl.components.base import base_beam_executor
    from tfx.types import artifact_utils, standard_artifacts

    from components.feedback_labeler import executor
    from components.feedback_labeler.component import FeedbackStats

    config = beam_config(workers)
    run_dir.mkdir(parents=True)
    examples = standard_artifacts.Examples()
    examples.uri = str(out / EXAMPLES_DIRNAME)
    examples.split_names = artifact_utils.encode_split_names([SPLIT])
    schema = standard_artifacts.Schema()
    schema.uri = str(out / SCHEMA_DIRNAME)
    labeled = standard_artifacts.Examples()
    labeled.uri = str(run_dir / "labeled_examples")
    stats = FeedbackStats()
    stats.uri = str(run_dir / "feedback_stats")
    pipeline_args = config.beam_pipeline_args(extra_beam_args)
    mode = mode or config.beam_direct_running_mode
    context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=pipeline_args,
                                                          tmp_dir=str(run_dir / "tmp"))
    exec_properties = {**vars(config.labeling_params()), "labeler_version": executor.LABELER_VERSION}

    gc.collect()
    load_before = load_average()
    rss_before = psutil.Process().memory_info().rss
    say(f"labeler: {mode}, {workers} worker(s), args {pipeline_args} -> {run_dir}")
    # The sampler thread needs the GIL: while the in-process runner is busy its samples come less often than
    # asked (rss_sample_interval_effective_s shows how often they came).
    with PeakRssSampler(sample_interval) as sampler:
        began = time.perf_counter()
        executor.Executor(context).Do(
            {"examples": [examples], "schema": [schema]},
            {"labeled_examples": [labeled], "feedback_stats": [stats]},
            exec_properties,
        )
        wall = time.perf_counter() - began
    feedback_stats = json.loads((run_dir / "feedback_stats" / executor.STATS_FILE).read_text())
    result = {
        "mode": mode,
        "workers": workers,
        "beam_pipeline_args": pipeline_args,
        "wall_s": round(wall, 3),
        "events_per_s": round(events / wall, 1),
        "peak_rss_mb": round(sampler.peak_total / MB, 1),
        "peak_rss_self_mb": round(sampler.peak_self / MB, 1),
        "peak_rss_children_mb": round(sampler.peak_children / MB, 1),
        "rss_before_mb": round(rss_before / MB, 1),
        "peak_processes": sampler.peak_processes,
        "rss_samples": sampler.samples,
        "rss_sample_interval_effective_s": round(wall / max(sampler.samples - 1, 1), 3),
        "examples": {split: feedback_stats["examples"][split] for split in contract.SPLITS},
        "valid_plays": feedback_stats["valid_plays"],
        "users": feedback_stats["users"],
        "quarantined": feedback_stats["quarantined"],
        "capped_users": feedback_stats["capped_users"],
        "loadavg_before": load_before,
        "loadavg_after": load_average(),
        "output_dir": str(run_dir),
        "_stats": feedback_stats,
    }
    say(f"labeler: {mode} x{workers} done in {wall:.1f} s "
        f"({result['events_per_s']:,.0f} events/s, peak RSS {result['peak_rss_mb']:,.0f} MB sampled, "
        f"examples {result['examples']})")
    return result


# --- Report ---------------------------------------------------------------------------------------------

def format_table(runs: list[dict[str, Any]]) -> str:
    header = f"{'mode':<17} {'workers':>7} {'wall s':>8} {'events/s':>10} {'peak RSS MB':>12}  examples per split"
    lines = [header, "-" * len(header)]
    for run in runs:
        splits = ", ".join(f"{split} {count}" for split, count in run["examples"].items())
        lines.append(f"{run['mode']:<17} {run['workers']:>7} {run['wall_s']:>8.1f} {run['events_per_s']:>10,.0f} "
                     f"{run['peak_rss_mb']:>12,.0f}  {splits}")
    return "\n".join(lines)


def throughput_ratios(runs: list[dict[str, Any]]) -> dict[str, Optional[float]]:
    """Events/s of each multi-worker run divided by the in-process run's (None without an in-process run)."""
    base = next((run for run in runs if run["workers"] == 1), None)
    return {f"{run['workers']}_workers_over_in_process": (round(run["events_per_s"] / base["events_per_s"], 3)
                                                          if base else None)
            for run in runs if run["workers"] > 1}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.labeler",
        description=__doc__.split("\n\n")[0],
        epilog="Workers 1 runs the DirectRunner in-process (in_memory); N > 1 runs it with N worker processes "
               "(multi_processing). Peak RSS is sampled, not exact.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="plays in the simulated log")
    parser.add_argument("--users", type=int, default=DEFAULT_USERS, help="listeners")
    parser.add_argument("--tracks", type=int, default=DEFAULT_TRACKS, help="tracks in the catalog")
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help="simulated days")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="simulation seed")
    parser.add_argument("--workers", type=cli_type(int_list, "--workers"),
                        default=int_list(DEFAULT_WORKERS, "--workers"),
                        metavar="N[,N...]", help="one labeler run per entry: 1 = in-process, N > 1 = N processes")
    parser.add_argument("--shards", type=int, default=DEFAULT_SHARDS, help="TFRecord files of the input split")
    parser.add_argument("--sample-interval", type=float, default=DEFAULT_SAMPLE_INTERVAL_S,
                        help="seconds between RSS samples")
    parser.add_argument("--out", type=pathlib.Path, default=None, metavar="DIR",
                        help="empty or new directory for inputs, outputs and the JSON report "
                             "(default: a new temporary directory, printed)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.events < 1 or args.users < 1 or args.tracks < 1 or args.days < 1 or args.shards < 1:
        parser.error("--events, --users, --tracks, --days and --shards must be >= 1")
    if args.sample_interval <= 0:
        parser.error("--sample-interval must be > 0")
    if args.out is None:
        out = pathlib.Path(tempfile.mkdtemp(prefix="labeler-benchmark-"))
    else:
        out = args.out.resolve()
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            parser.error(f"--out {out} must be a new or empty directory")
        out.mkdir(parents=True, exist_ok=True)
    say = Progress("labeler-bench")
    say(f"output directory {out}")
    load_start = load_average()
    began = time.perf_counter()
    import tensorflow  # noqa: F401  (imported here so that neither timing below includes it)
    from components.feedback_labeler import executor  # noqa: F401
    import_s = time.perf_counter() - began
    say(f"imported tensorflow, tfx and apache_beam in {import_s:.1f} s")

    say(f"simulating {args.events:,} events, {args.users:,} users, {args.tracks:,} tracks, {args.days} days, "
        f"seed {args.seed}")
    began = time.perf_counter()
    frame = simulated_log(args)
    simulate_s = time.perf_counter() - began
    n_events = len(frame)
    say(f"simulated {n_events:,} events in {simulate_s:.1f} s; writing tf.train.Examples ({args.shards} shards)")
    began = time.perf_counter()
    files = write_examples(frame, out / EXAMPLES_DIRNAME / f"Split-{SPLIT}", args.shards)
    write_s = time.perf_counter() - began
    write_schema(out / SCHEMA_DIRNAME)
    input_bytes = sum(path.stat().st_size for path in files)
    say(f"wrote {n_events:,} examples ({input_bytes / MB:.1f} MB GZIP) in {write_s:.1f} s; "
        f"preparation {simulate_s + write_s:.1f} s (not part of the labeler's time)")
    del frame
    gc.collect()

    runs = []
    for index, workers in enumerate(args.workers):
        run_dir = out / RUNS_DIRNAME / f"{index + 1}-{beam_config(workers).beam_direct_running_mode}-{workers}"
        runs.append(run_labeler(out, run_dir, workers, n_events, args.sample_interval, say))

    reference = runs[0]
    mismatched = [run for run in runs if run["examples"] != reference["examples"]]
    stats_identical = all(run["_stats"] == reference["_stats"] for run in runs)
    for run in runs:
        del run["_stats"]
    report = {
        "benchmark": "FeedbackLabeler executor, DirectRunner",
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "sizes": {"events": n_events, "events_requested": args.events, "users": args.users,
                  "tracks": args.tracks, "days": args.days, "seed": args.seed, "shards": args.shards},
        "input": {"examples_dir": str(out / EXAMPLES_DIRNAME), "files": len(files), "mb": round(input_bytes / MB, 1)},
        "imports_s": round(import_s, 3),
        "preparation_s": {"simulate": round(simulate_s, 3), "write_examples": round(write_s, 3),
                          "total": round(simulate_s + write_s, 3)},
        "labeling_params": dataclasses.asdict(configs.PipelineConfig().labeling_params()),
        "memory_measurement": (f"peak RSS summed over this process and all its child processes, sampled every "
                               f"{args.sample_interval} s by a background thread (psutil); spikes between samples "
                               "are missed, shared pages are counted once per process"),
        "environment": {**versions(PACKAGES), "cpu_count": os.cpu_count(),
                        "total_memory_mb": round(psutil.virtual_memory().total / MB),
                        "platform": platform.platform()},
        "loadavg": {"at_start": load_start, "at_end": load_average()},
        "runs": runs,
        "throughput_ratio": throughput_ratios(runs),
        "examples_match": not mismatched,
        "feedback_stats_identical": stats_identical,
    }
    report_path = out / RESULT_FILENAME
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print(f"FeedbackLabeler benchmark: {n_events:,} events, {args.users:,} users, {args.tracks:,} tracks, "
          f"{args.days} days, seed {args.seed}; {os.cpu_count()} CPUs; load average at start {load_start}, "
          f"at end {report['loadavg']['at_end']}")
    print(f"preparation (simulate + write Examples, not timed below): {simulate_s + write_s:.1f} s "
          f"({simulate_s:.1f} + {write_s:.1f})")
    print(format_table(runs))
    print("peak RSS: summed over this process and its children, sampled every "
          f"{args.sample_interval} s")
    for name, ratio in report["throughput_ratio"].items():
        print(f"throughput ratio {name.replace('_', ' ')}: {ratio if ratio is None else f'{ratio:.2f}'}")
    print(f"report: {report_path}")
    if mismatched:
        raise RuntimeError(
            "runs produced different example counts per split: "
            + "; ".join(f"{run['mode']} x{run['workers']}: {run['examples']}" for run in runs))
    if not stats_identical:
        print("warning: example counts match but other feedback_stats differ between runs; see "
              f"{', '.join(run['output_dir'] for run in runs)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
