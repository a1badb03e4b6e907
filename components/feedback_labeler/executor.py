"""FeedbackLabeler's Beam executor: validate, label, group per listener, build sequences, split by time.

The Beam runner comes from the pipeline's `beam_pipeline_args` (`_make_beam_pipeline`), so the same code
runs on the DirectRunner here and on Dataflow, Flink or Spark.

The work is columnar (issue 14, docs/data-plane.md): ExampleGen's records are read in batches, decoded into
Arrow record batches and validated, labelled and grouped a batch at a time (`batch_steps`); the shuffle moves
one record per (listener group, batch), not one per play, and the examples are written as files by TF's
C++ writer rather than one Beam element per example.

Memory per listener is bounded: `batch_steps.RecentPlays` keeps only the `max_events_per_user` most recent
plays of each listener (compacting as it reads a group after the shuffle), so a heavy listener's whole life
never sits in one worker's memory. Plays dropped by that cap are counted in `feedback_stats`
(`capped_users`, `plays_over_user_cap`).
"""
from __future__ import annotations

import collections
import json
import logging
import os
from typing import Any, Iterable

import apache_beam as beam
import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils
from tensorflow_metadata.proto.v0 import schema_pb2

from components.feedback_labeler import batch_steps, sequences
from components.parameters import from_exec_properties
from schema import contract

LABELER_VERSION = "1"  # the outputs of the columnar labeller equal the per-play one's: TFX may reuse them
STATS_FILE = "feedback_stats.json"
METRICS_NAMESPACE = batch_steps.METRICS_NAMESPACE
RECORDS_PER_BATCH = 25_000
"""Plays decoded, validated and grouped at once. The batch's working set (records, Arrow columns, Python
strings) costs about 3 KB per play: 100,000-play batches held ~250 MB more at peak than 25,000-play ones,
which cost no more CPU (per-batch costs are a few hundred Arrow calls)."""


def example_to_raw(example: tf.train.Example) -> dict[str, Any]:
    """The first value of each feature (bytes or int), None when absent or empty: the row-wise reading."""
    raw: dict[str, Any] = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values = getattr(feature, kind).value if kind else []
        raw[name] = values[0] if len(values) else None
    return raw


def to_tf_example(example: sequences.TrainingExample) -> tf.train.Example:
    def strings(values: Iterable[str]) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode("utf-8") for v in values]))

    features = {
        contract.EX_USER_ID: strings([example.user_id]),
        contract.EX_STATION_ID: strings([example.station_id]),
        contract.EX_TARGET_TRACK_ID: strings([example.target_track_id]),
        contract.EX_TARGET_LABEL: strings([example.target_label]),
        contract.EX_TARGET_TIMESTAMP_MS: tf.train.Feature(
            int64_list=tf.train.Int64List(value=[example.target_timestamp_ms])
        ),
        contract.EX_HISTORY_TRACK_IDS: strings(example.history_track_ids),
        contract.EX_HISTORY_LABELS: strings(example.history_labels),
        contract.EX_HARD_NEGATIVE_TRACK_IDS: strings(example.hard_negative_track_ids),
    }
    return tf.train.Example(features=tf.train.Features(feature=features))


class MergeCounters(beam.CombineFn):
    def create_accumulator(self) -> collections.Counter:
        return collections.Counter()

    def add_input(self, accumulator: collections.Counter, counter: collections.Counter) -> collections.Counter:
        accumulator.update(counter)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[collections.Counter]) -> collections.Counter:
        merged: collections.Counter = collections.Counter()
        for accumulator in accumulators:
            merged.update(accumulator)
        return merged

    def extract_output(self, accumulator: collections.Counter) -> collections.Counter:
        return accumulator


def _nest(flat: dict[str, int], prefix: str) -> dict[str, Any]:
    """{'a/b/c': n} under prefix 'a' -> {'b': {'c': n}}."""
    nested: dict[str, Any] = {}
    for key, value in sorted(flat.items()):
        parts = key.split("/")
        if parts[0] != prefix:
            continue
        node = nested
        for part in parts[1:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def assemble_stats(
    counters: collections.Counter,
    quarantined: dict[str, int],
    distinct_tracks: int,
    capped: dict[str, int],
    bounds: tuple[int, int] | None,
    params: sequences.LabelingParams,
) -> dict[str, Any]:
    """The feedback_stats document (its keys are described in docs/pipeline.md, FeedbackLabeler)."""
    flat = dict(counters)
    users_with_test = flat.get("coverage/users_with_test_targets", 0)
    coverage = {
        policy: {
            "covered_users": flat.get(f"coverage/covered/{policy}", 0),
            "users_with_test_targets": users_with_test,
            "share": (flat.get(f"coverage/covered/{policy}", 0) / users_with_test) if users_with_test else 0.0,
        }
        for policy in contract.INPUT_POLICIES
    }
    histogram = {
        split: {int(k): v for k, v in sorted(by_count.items(), key=lambda kv: int(kv[0]))}
        for split, by_count in _nest(flat, "hard_negatives_per_example").items()
    }
    cutoffs = sequences.resolve_cutoffs(params, *bounds) if bounds else None
    return {
        "labeler_version": LABELER_VERSION,
        "params": sequences.dataclasses.asdict(params),
        "time_range_ms": list(bounds) if bounds else None,
        "cutoffs_ms": cutoffs._asdict() if cutoffs else None,
        "valid_plays": sum(v for k, v in flat.items() if k.startswith("labels/")) + capped["plays"],
        "quarantined": dict(sorted(quarantined.items())),
        "users": flat.get("users", 0),
        "tracks": distinct_tracks,
        "labels": _nest(flat, "labels"),
        "examples": {split: flat.get(f"examples/{split}", 0) for split in contract.SPLITS},
        "hard_negatives_per_example": histogram,
        "coverage_by_input_policy": coverage,
        "capped_users": capped["users"],
        "plays_over_user_cap": capped["plays"],
    }


class Executor(base_beam_executor.BaseBeamExecutor):
    """Reads every split of the input Examples and writes train/eval/test labelled sequences + stats."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        params = from_exec_properties(sequences.LabelingParams, exec_properties)
        check_schema(artifact_utils.get_single_uri(input_dict["schema"]))
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        split_names = artifact_utils.decode_split_names(examples.split_names)
        if not split_names:
            raise ValueError(f"input Examples at {examples.uri} has no splits")
        patterns = [os.path.join(artifact_utils.get_split_uri([examples], s), "*") for s in split_names]
        labeled = artifact_utils.get_single_instance(output_dict["labeled_examples"])
        labeled.split_names = artifact_utils.encode_split_names(list(contract.SPLITS))
        stats_uri = artifact_utils.get_single_uri(output_dict["feedback_stats"])
        split_uris = {split: artifact_utils.get_split_uri([labeled], split) for split in contract.SPLITS}
        staging_uri = os.path.join(labeled.uri, batch_steps.STAGING_DIR)
        tf.io.gfile.makedirs(staging_uri)

        with self._make_beam_pipeline() as pipeline:
            files = sorted(path for pattern in patterns for path in tf.io.gfile.glob(pattern))
            if not files:
                raise ValueError(f"input Examples at {examples.uri} has no files in splits {split_names}")
            groups = batch_steps.listener_groups(sum(tf.io.gfile.stat(path).length for path in files))
            logging.info("FeedbackLabeler: %d input files, %d listener groups", len(files), groups)
            labelled = (
                pipeline
                | "Files" >> beam.Create(files)
                | "SpreadFiles" >> beam.Reshuffle()
                | "LabelFiles" >> beam.ParDo(
                    batch_steps.LabelFile(params.thresholds(), RECORDS_PER_BATCH, groups)
                ).with_outputs(batch_steps.LabelFile.QUARANTINE, batch_steps.LabelFile.SUMMARY, main="blocks")
            )
            summary = labelled[batch_steps.LabelFile.SUMMARY] | "Summarize" >> beam.CombineGlobally(
                batch_steps.SummaryFn()
            )
            bounds = (
                summary
                | "TimeRange" >> beam.Map(lambda s: s["bounds"])
                | "HasPlays" >> beam.Filter(lambda b: b is not None)
            )
            grouped = labelled.blocks | "GroupListeners" >> beam.GroupByKey()
            built = grouped | "BuildExamples" >> beam.ParDo(
                batch_steps.BuildExamples(params, staging_uri), bounds=beam.pvalue.AsSingleton(bounds)
            ).with_outputs(batch_steps.BuildExamples.STATS, batch_steps.BuildExamples.WRITTEN)
            _ = (
                built[batch_steps.BuildExamples.WRITTEN]
                | "ListFiles" >> beam.combiners.ToList()
                | "PlaceFiles" >> beam.Map(batch_steps.place_files, split_uris=split_uris)
            )

            counters = built[batch_steps.BuildExamples.STATS] | "MergeStats" >> beam.CombineGlobally(MergeCounters())
            quarantined = labelled[batch_steps.LabelFile.QUARANTINE] | "CountReasons" >> beam.CombineGlobally(
                MergeCounters()
            )
            _ = (
                counters
                | "WriteStats" >> beam.Map(
                    _write_stats,
                    stats_uri=stats_uri,
                    params=params,
                    quarantined=beam.pvalue.AsSingleton(quarantined),
                    summary=beam.pvalue.AsSingleton(summary),
                )
            )
        tf.io.gfile.rmtree(staging_uri)
        stats = json.loads(io_utils.read_string_file(os.path.join(stats_uri, STATS_FILE)))
        if stats["valid_plays"] == 0:
            raise ValueError(
                f"FeedbackLabeler found no valid play in {examples.uri} (quarantined: {stats['quarantined']}); "
                "check the input log against schema/contract.py"
            )


def _write_stats(counters, stats_uri, params, quarantined, summary) -> None:
    capped = {"users": counters.get("capped/users", 0), "plays": counters.get("capped/plays", 0)}
    stats = assemble_stats(counters, dict(quarantined), summary["tracks"], capped, summary["bounds"], params)
    io_utils.write_string_file(os.path.join(stats_uri, STATS_FILE), json.dumps(stats, indent=2, sort_keys=True))


def check_schema(schema_uri: str) -> None:
    """The imported schema must describe the contract's required columns; anything else is a wiring error."""
    schema_path = os.path.join(schema_uri, "schema.pbtxt")
    schema = io_utils.parse_pbtxt_file(schema_path, schema_pb2.Schema())
    missing = sorted(set(contract.REQUIRED_COLUMNS) - {feature.name for feature in schema.feature})
    if missing:
        raise ValueError(f"schema at {schema_path} lacks the contract's required columns {missing}")
