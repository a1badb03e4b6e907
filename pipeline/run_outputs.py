"""Reads what the latest pipeline run produced from its MLMD store: artifact URIs and validation anomalies."""
from __future__ import annotations

import dataclasses
import pathlib

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import anomalies_pb2

ANOMALIES_FILE = "SchemaDiff.pb"


def sqlite_store(path: pathlib.Path) -> mlmd.MetadataStore:
    if not path.is_file():
        raise FileNotFoundError(f"no MLMD store at {path}; run the pipeline first")
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return mlmd.MetadataStore(config)


def latest_run_outputs(store: mlmd.MetadataStore) -> dict[str, dict[str, list[str]]]:
    """{component id: {output key: [artifact URIs]}} for the newest pipeline run, cached steps included."""
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        raise LookupError("the MLMD store holds no pipeline run")
    latest = max(runs, key=lambda context: (context.create_time_since_epoch, context.id))
    outputs: dict[str, dict[str, list[str]]] = {}
    for execution in store.get_executions_by_context(latest.id):
        node = next(
            (c.name for c in store.get_contexts_by_execution(execution.id) if c.type == "node"),
            str(execution.id),
        )
        component = node.split(".", 1)[-1]
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
