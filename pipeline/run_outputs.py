"""Reads what the latest pipeline run produced from its MLMD store: artifact URIs and validation anomalies."""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Optional

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import anomalies_pb2

from components.feedback_labeler import executor as labeler_executor
from components.retrieval_evaluator import executor as evaluator_executor
from components.retrieval_evaluator import report as evaluator_report
from schema import contract

ANOMALIES_FILE = "SchemaDiff.pb"


def sqlite_store(path: pathlib.Path) -> mlmd.MetadataStore:
    if not path.is_file():
        raise FileNotFoundError(f"no MLMD store at {path}; run the pipeline first")
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return mlmd.MetadataStore(config)


def latest_run(store: mlmd.MetadataStore) -> metadata_store_pb2.Context:
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        raise LookupError("the MLMD store holds no pipeline run")
    return max(runs, key=lambda context: (context.create_time_since_epoch, context.id))


def component_of(store: mlmd.MetadataStore, execution: metadata_store_pb2.Execution) -> str:
    node = next((c.name for c in store.get_contexts_by_execution(execution.id) if c.type == "node"),
                str(execution.id))
    return node.split(".", 1)[-1]


def latest_run_outputs(store: mlmd.MetadataStore) -> dict[str, dict[str, list[str]]]:
    """{component id: {output key: [artifact URIs]}} for the newest pipeline run, cached steps included."""
    outputs: dict[str, dict[str, list[str]]] = {}
    for execution in store.get_executions_by_context(latest_run(store).id):
        component = component_of(store, execution)
        events = [
            event
            for event in store.get_events_by_execution_ids([execution.id])
            if event.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
        ]
        artifacts = {a.id: a for a in store.get_artifacts_by_id([event.artifact_id for event in events])}
        for event in events:
            key = event.path.steps[0].key if event.path.steps else "output"
            outputs.setdefault(component, {}).setdefault(key, []).append(artifacts[event.artifact_id].uri)
    return outputs


def latest_run_states(store: mlmd.MetadataStore) -> dict[str, str]:
    """{component id: 'COMPLETE', 'CACHED', ...} for the newest run: which steps ran and which TFX reused."""
    return {component_of(store, execution): metadata_store_pb2.Execution.State.Name(execution.last_known_state)
            for execution in store.get_executions_by_context(latest_run(store).id)}


def string_property(store: mlmd.MetadataStore, uri: str, name: str) -> Optional[str]:
    """A string custom property of the (newest) artifact at `uri`, None when unset."""
    artifacts = store.get_artifacts_by_uri(uri)
    if not artifacts:
        raise LookupError(f"no artifact at {uri} in the MLMD store")
    value = max(artifacts, key=lambda artifact: artifact.id).custom_properties.get(name)
    return value.string_value if value is not None else None


PUSHED_MODEL_KEY = "pushed_model"
"""The standard Pusher's output key."""


@dataclasses.dataclass(frozen=True)
class Anomaly:
    split: str
    feature: str
    short_description: str
    description: str


def read_anomalies(anomalies_uri: str) -> list[Anomaly]:
    """Every feature anomaly ExampleValidator wrote, per split."""
    found: list[Anomaly] = []
    for split_dir in sorted(pathlib.Path(anomalies_uri).glob("Split-*")):
        proto = anomalies_pb2.Anomalies()
        proto.ParseFromString((split_dir / ANOMALIES_FILE).read_bytes())
        split = split_dir.name.removeprefix("Split-")
        for feature, info in sorted(proto.anomaly_info.items()):
            found.append(Anomaly(split, feature, info.short_description, info.description))
        if proto.HasField("dataset_anomaly_info"):
            info = proto.dataset_anomaly_info
            found.append(Anomaly(split, "<dataset>", info.short_description, info.description))
    return found


def read_feedback_stats(stats_uri: str) -> dict[str, Any]:
    return json.loads((pathlib.Path(stats_uri) / labeler_executor.STATS_FILE).read_text())


def feedback_stats_summary(stats: dict[str, Any]) -> list[str]:
    """A few lines a person reads first: plays, labels, examples, coverage by input policy."""
    totals: dict[str, int] = {}
    for by_label in stats["labels"].values():
        for label, count in by_label.items():
            totals[label] = totals.get(label, 0) + count
    lines = [
        f"plays: {stats['valid_plays']} valid, quarantined {sum(stats['quarantined'].values())} "
        f"{stats['quarantined'] or ''}".rstrip(),
        "labels: " + ", ".join(f"{label} {count}" for label, count in sorted(totals.items())),
        "examples: " + ", ".join(f"{split} {stats['examples'][split]}" for split in contract.SPLITS),
        "test-user coverage by input policy: " + ", ".join(
            f"{policy} {c['covered_users']}/{c['users_with_test_targets']} ({c['share']:.1%})"
            for policy, c in ((p, stats["coverage_by_input_policy"][p]) for p in contract.INPUT_POLICIES)
        ),
    ]
    if stats["capped_users"]:
        lines.append(f"{stats['plays_over_user_cap']} older plays of {stats['capped_users']} heavy listeners "
                     "were over max_events_per_user and left out")
    return lines


def training_summary(model_run_uri: str, history_file: str) -> list[str]:
    """The epoch early stopping kept (the best by the value it watched; by eval pairwise accuracy for histories
    written before it was recorded), and the training speed."""
    rows = json.loads((pathlib.Path(model_run_uri) / history_file).read_text())["epochs"]
    best = max(rows, key=lambda row: (row.get("eval_early_stopping_value", row["eval_pairwise_accuracy"]),
                                      row["eval_recall_at_100"]))
    speeds = [row["examples_per_second"] for row in rows[1:] or rows if row["examples_per_second"]]
    return [
        f"{len(rows)} epochs in {rows[-1]['wall_seconds']:.0f} s (training {rows[-1]['train_seconds_cumulative']:.0f} s), "
        f"{sum(speeds) / len(speeds):.0f} examples/s after the first epoch",
        f"best epoch {best['epoch']}: eval pairwise accuracy {best['eval_pairwise_accuracy']:.4f}, "
        f"recall@10 {best['eval_recall_at_10']:.4f}, recall@100 {best['eval_recall_at_100']:.4f}",
    ]


def read_evaluation(evaluation_uri: str) -> dict[str, Any]:
    return json.loads((pathlib.Path(evaluation_uri) / evaluator_executor.EVALUATION_FILE).read_text())


def evaluation_summary(evaluation_uri: str) -> list[str]:
    """The verdict with its deciding rule, the headline test metrics, and where the HTML report is."""
    result = read_evaluation(evaluation_uri)

    def number(value: Any) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    lines = [
        f"{'BLESSED' if result['blessed'] else 'NOT BLESSED'} ({result['blessing_rule']})",
        f"test pairwise accuracy {number(result['pairwise_accuracy'])} over {result['pairs']} pairs, "
        + ", ".join(f"recall@{k} {number(v)}" for k, v in result["recall_at_k"].items())
        + f", MRR {number(result['mrr'])}, coverage {number(result['coverage'])}",
        f"most popular: pairwise accuracy {number(result['most_popular']['pairwise_accuracy'])}, "
        f"recall@100 {number(result['most_popular']['recall_at_k']['100'])}",
        evaluator_report.sample_text(result.get("test_sample")),
    ]
    if result.get("ann_recall_at_k"):
        lines.append("ScaNN recall vs exact: " + ", ".join(f"@{k} {number(v)}" for k, v in result["ann_recall_at_k"].items()))
    if result["baseline"]:
        lines.append(f"last blessed model: pairwise accuracy {number(result['baseline']['pairwise_accuracy'])}, "
                     f"recall@100 {number(result['baseline']['recall_at_k']['100'])}")
    lines += [f"  {'ok  ' if r['passed'] else 'FAIL'} {r['text']}" for r in result["blessing_reasons"]]
    lines.append(f"report: {pathlib.Path(evaluation_uri) / evaluator_executor.REPORT_FILE}")
    return lines


def pushed_destinations(store: mlmd.MetadataStore, outputs: dict[str, dict[str, list[str]]]) -> dict[str, Optional[str]]:
    """{Pusher id: the version folder it pushed in this run, or None when it did not push (not blessed)}."""
    pushed: dict[str, Optional[str]] = {}
    for component, keys in sorted(outputs.items()):
        for uri in keys.get(PUSHED_MODEL_KEY, []):
            [artifact] = store.get_artifacts_by_uri(uri)
            properties = artifact.custom_properties
            done = properties["pushed"].int_value == 1 if "pushed" in properties else False
            pushed[component] = properties["pushed_destination"].string_value if done else None
    return pushed
