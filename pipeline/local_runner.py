"""Runs `create_pipeline()` here with TFX's LocalDagRunner, Beam's DirectRunner and an SQLite MLMD store.

    python -m pipeline.local_runner --data DIR --root ROOT [--set key=value ...] [--beam-arg ARG ...]
                                    [--beam-cluster DIR]

Outputs go to ROOT/pipeline/, the metadata store to ROOT/metadata.sqlite, blessed models to ROOT/serving/
(`music_retrieval/<version>/` with ScaNN, `music_retrieval_brute_force/<version>/` with stock ops only,
the layout `tensorflow_model_server --model_base_path` and `python -m serving.server` read). Anomalies found by
ExampleValidator are printed; they stop the run's exit status only with `--set fail_on_anomalies=true`,
because rows that break the contract are quarantined row by row downstream, and a daily run should not
stop on a drift report alone.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import pathlib
import sys
from typing import TYPE_CHECKING, Optional, Sequence, TextIO

from pipeline import beam_cluster, configs, library_logs

if TYPE_CHECKING:
    from pipeline import run_outputs

# TFX, TensorFlow and the pipeline's components are imported inside the functions that run or read a pipeline,
# so that `--help` and a bad `--set` answer at once, without TensorFlow's start-up time and log lines.

EXIT_ANOMALIES = 3
PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]


def export_project_path() -> None:
    """Beam worker processes import our DoFns and preprocessing_fn by module name, whatever their cwd."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(PROJECT_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *paths])


@dataclasses.dataclass(frozen=True)
class RunResult:
    outputs: dict[str, dict[str, list[str]]]
    anomalies: list[run_outputs.Anomaly]
    pushed: dict[str, Optional[str]]
    """Pusher id -> the version folder pushed by this run, None when the model was not blessed."""
    serving_base: pathlib.Path
    states: dict[str, str]
    """Component id -> its execution state in this run ('COMPLETE', or 'CACHED' when TFX reused its outputs)."""
    spans: list[int]
    """The daily spans ExampleGen read, oldest first (the training window)."""


def run(
    data_root: pathlib.Path,
    root: pathlib.Path,
    config: configs.PipelineConfig,
    extra_beam_args: Sequence[str] = (),
    to_nodes: Sequence[str] = (),
) -> RunResult:
    """Runs the pipeline to completion (raises if any component fails) and reads back what it wrote.

    `to_nodes`: component ids to stop at (TFX's partial run: they and everything upstream of them run, nothing
    downstream); empty runs every component."""
    from tfx import v1 as tfx
    from tfx.orchestration.pipeline import RunOptions

    from pipeline.pipeline import create_pipeline

    if not data_root.is_dir():
        raise FileNotFoundError(f"--data {data_root} is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()  # Beam workers on a portable runner run in another cwd: every path they get is absolute
    export_project_path()
    metadata_path = root / configs.METADATA_FILE
    serving_base = root / configs.SERVING_DIR
    pipeline = create_pipeline(
        pipeline_name=configs.PIPELINE_NAME,
        pipeline_root=str(root / configs.PIPELINE_ROOT_DIR),
        data_root=str(data_root.resolve()),
        config=config,
        serving_base=str(serving_base),
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(str(metadata_path)),
        beam_pipeline_args=config.beam_pipeline_args(extra_beam_args),
    )
    tfx.orchestration.LocalDagRunner().run(pipeline, run_options=RunOptions(to_nodes=list(to_nodes)) if to_nodes
                                           else None)
    return read_result(root)


def read_result(root: pathlib.Path) -> RunResult:
    """What the newest run under `root` (a `run` root) wrote, read back from its MLMD store: how `run` reports a
    run it just made, and how the benchmarks re-measure a finished run without running it again."""
    from pipeline import run_outputs

    store = run_outputs.sqlite_store(root / configs.METADATA_FILE)  # FileNotFoundError when no run wrote one
    outputs = run_outputs.latest_run_outputs(store)
    anomalies: list[run_outputs.Anomaly] = []
    for uri in outputs.get("ExampleValidator", {}).get("anomalies", []):
        anomalies.extend(run_outputs.read_anomalies(uri))
    return RunResult(outputs, anomalies, run_outputs.pushed_destinations(store, outputs), root / configs.SERVING_DIR,
                     run_outputs.latest_run_states(store), example_gen_spans(store, outputs))


def example_gen_spans(store, outputs: dict[str, dict[str, list[str]]]) -> list[int]:
    from components.span_window import executor as span_window
    from pipeline import run_outputs
    from pipeline.pipeline import EXAMPLE_GEN_ID

    uris = outputs.get(EXAMPLE_GEN_ID, {}).get("examples", [])
    text = run_outputs.string_property(store, uris[0], span_window.WINDOW_SPANS_PROPERTY) if uris else None
    return [int(span) for span in text.split(",")] if text else []


def print_report(result: RunResult, out: TextIO | None = None) -> None:
    from models.export_format import TRAINING_HISTORY_FILE
    from pipeline import run_outputs

    out = out or sys.stdout
    print("Artifacts of this run:", file=out)
    for component, keys in sorted(result.outputs.items()):
        for key, uris in sorted(keys.items()):
            for uri in uris:
                print(f"  {component}.{key}: {uri}", file=out)
    if result.spans:
        print(f"ExampleGen read spans {', '.join(map(str, result.spans))}", file=out)
    cached = sorted(component for component, state in result.states.items() if state == "CACHED")
    if cached:
        print(f"Reused from TFX's cache (same inputs and settings as an earlier run): {', '.join(cached)}", file=out)
    for uri in result.outputs.get("FeedbackLabeler", {}).get("feedback_stats", []):
        print("FeedbackLabeler:", file=out)
        for line in run_outputs.feedback_stats_summary(run_outputs.read_feedback_stats(uri)):
            print(f"  {line}", file=out)
    for uri in result.outputs.get("Trainer", {}).get("model_run", []):
        print("Trainer:", file=out)
        for line in run_outputs.training_summary(uri, TRAINING_HISTORY_FILE):
            print(f"  {line}", file=out)
    for uri in result.outputs.get("RetrievalEvaluator", {}).get("evaluation", []):
        print("RetrievalEvaluator:", file=out)
        for line in run_outputs.evaluation_summary(uri):
            print(f"  {line}", file=out)
    for pusher, destination in sorted(result.pushed.items()):
        print(f"{pusher}: " + (f"pushed {destination}" if destination else "not pushed (the model was not blessed)"),
              file=out)
    if result.anomalies:
        print(f"ExampleValidator found {len(result.anomalies)} anomalies:", file=out)
        for anomaly in result.anomalies:
            print(f"  [{anomaly.split}] {anomaly.feature}: {anomaly.short_description} ({anomaly.description})", file=out)
    else:
        print("ExampleValidator found no anomalies.", file=out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.local_runner", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=pathlib.Path, required=True, help="folder holding span-N/ folders of plays")
    parser.add_argument("--root", type=pathlib.Path, required=True, help="folder for artifacts and the MLMD store")
    configs.add_settings_argument(parser)
    parser.add_argument(
        "--beam-arg", dest="beam_args", action="append", default=[], metavar="ARG",
        help="extra Beam pipeline argument, e.g. --beam-arg=--runner=FlinkRunner (repeatable)",
    )
    parser.add_argument(
        "--beam-cluster", type=pathlib.Path, metavar="DIR",
        help="run every Beam stage on the portable cluster that `python -m pipeline.beam_cluster start --dir DIR` "
             "started (its job service and external worker pool); --beam-arg flags come after its flags",
    )
    parser.add_argument("--verbose", action="store_true", help=library_logs.VERBOSE_HELP + " (ROOT)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = configs.with_overrides(configs.PipelineConfig(), args.settings)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    beam_args = list(args.beam_args)
    if args.beam_cluster:
        try:
            beam_args = [*beam_cluster.load(args.beam_cluster).beam_args(), *beam_args]
        except beam_cluster.ClusterError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    log_path = args.root / library_logs.LOG_FILE
    if not args.verbose:
        print(f"running the pipeline; the output of TensorFlow, TFX and Beam goes to {log_path} (--verbose prints it)",
              flush=True)
    with library_logs.library_output(log_path, args.verbose):
        result = run(args.data, args.root, config, beam_args)
    print_report(result)
    if result.anomalies and config.fail_on_anomalies:
        print("error: anomalies found and fail_on_anomalies is set", file=sys.stderr)
        return EXIT_ANOMALIES
    return 0


if __name__ == "__main__":
    sys.exit(main())
