"""Helpers for the serving tests: the real pushed exports, requests in their contract, a server on loopback.

The tests serve what the pipeline pushes (docs/design.md §7): `<serving base>/<model name>/<version>/` SavedModels
with `serving_default` (history_track_ids, history_feedback [B, L], station_id [B], exclude_track_ids [B, E]
-> track_ids, scores [B, K]) and `query_embedding`. `Exports` finds a run's two pushed version folders (ScaNN
and brute force) and the catalog they recommend from (the Trainer's track vocabulary); `copy_version` puts a
copy under a test's own base path as version N. `ServerProcess` (from `serving.process`) runs
`python -m serving.server` in a subprocess on free loopback ports. (The request batching measurement that
used to live here is `python -m benchmarks.serving_load`.)
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
from typing import Any, Optional, Sequence

import pandas as pd
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from models import export_format, serving_export
from models.features import read_lines
from pipeline import configs
from pipeline.demo_request import read_log
from schema import contract
from serving.process import REPO_ROOT, ServerProcess, wait_for  # noqa: F401  (re-exported for the tests)

MODEL_NAME = configs.SERVED_MODEL_NAMES[serving_export.SCANN]  # music_retrieval
BRUTE_FORCE_MODEL_NAME = configs.SERVED_MODEL_NAMES[serving_export.BRUTE_FORCE]  # music_retrieval_brute_force
PUSHER_IDS = {serving_export.SCANN: "ScannPusher", serving_export.BRUTE_FORCE: "BruteForcePusher"}
TOP_K = configs.PipelineConfig().serving_top_k  # K: tracks per answer
EXCLUDE_WIDTH = configs.PipelineConfig().serving_max_exclusions  # E: exclude_track_ids' static width


@dataclasses.dataclass(frozen=True)
class Exports:
    """The two version folders one pipeline run pushed, and the catalog (raw track ids) they recommend from."""

    scann: pathlib.Path
    brute_force: pathlib.Path
    tracks: tuple[str, ...]
    """The Trainer export's track_vocabulary.txt: every id a recommendation may be."""

    @classmethod
    def from_dirs(cls, scann: os.PathLike, brute_force: os.PathLike, trainer_model_uri: str) -> "Exports":
        for path in (scann, brute_force):
            if not (pathlib.Path(path) / "saved_model.pb").is_file():
                raise FileNotFoundError(f"{path} is not a pushed SavedModel version folder")
        directory = export_format.exported_model_dir(trainer_model_uri)
        if not tf.io.gfile.exists(os.path.join(directory, export_format.TRACK_VOCABULARY_FILE)):
            directory = trainer_model_uri
        tracks = tuple(read_lines(os.path.join(directory, export_format.TRACK_VOCABULARY_FILE)))
        if len(tracks) <= TOP_K + EXCLUDE_WIDTH:
            raise ValueError(f"a catalog of {len(tracks)} tracks is too small to test K={TOP_K}, E={EXCLUDE_WIDTH}")
        return cls(pathlib.Path(scann), pathlib.Path(brute_force), tracks)

    @classmethod
    def from_run(cls, result: Any) -> "Exports":
        """From a `local_runner.RunResult` whose model was blessed and pushed by both Pushers."""
        pushed = {kind: result.pushed.get(pusher) for kind, pusher in PUSHER_IDS.items()}
        missing = [PUSHER_IDS[kind] for kind, path in pushed.items() if not path]
        if missing:
            raise AssertionError(f"the run pushed nothing from {missing}: its model was not blessed")
        return cls.from_dirs(pushed[serving_export.SCANN], pushed[serving_export.BRUTE_FORCE],
                             result.outputs["Trainer"]["model"][0])


def recent_histories(data_dir: pathlib.Path, listeners: int, max_history: int) -> list[list[tuple[str, str]]]:
    """The newest `max_history` plays (track id, label name), oldest first, of the `listeners` busiest listeners
    of a span log: requests as the service would get them."""
    log = read_log(data_dir)
    histories = []
    for user in log[contract.USER_ID].value_counts().index[:listeners]:
        plays = log[log[contract.USER_ID] == user].sort_values(contract.TIMESTAMP_MS).tail(max_history)
        labels = contract.label_ids(plays[contract.FEEDBACK].to_numpy(),
                                    pd.to_numeric(plays[contract.LISTEN_MS], errors="coerce").to_numpy(),
                                    pd.to_numeric(plays[contract.TRACK_MS], errors="coerce").to_numpy())
        histories.append([(track, contract.LABELS[label]) for track, label in zip(plays[contract.TRACK_ID], labels)])
    return histories


def contract_request(history: Sequence[tuple[str, str]], station: str = "", exclude: Sequence[str] = (),
                     version: Optional[int] = None, model_name: str = MODEL_NAME,
                     signature_name: str = "serving_default",
                     exclude_width: int = EXCLUDE_WIDTH) -> predict_pb2.PredictRequest:
    """One-row PredictRequest in the contract's shapes (exclusions padded with "" to the model's width E).

    An empty history is sent as one "" token, the contract's padding, as the client does."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version
    tracks = [track for track, _ in history] or [""]
    feedback = [label for _, label in history] or [""]
    request.inputs["history_track_ids"].CopyFrom(tf.make_tensor_proto([tracks], dtype=tf.string))
    request.inputs["history_feedback"].CopyFrom(tf.make_tensor_proto([feedback], dtype=tf.string))
    request.inputs["station_id"].CopyFrom(tf.make_tensor_proto([station], dtype=tf.string))
    if signature_name == "serving_default":
        padded = list(exclude) + [""] * (exclude_width - len(exclude))
        request.inputs["exclude_track_ids"].CopyFrom(tf.make_tensor_proto([padded], dtype=tf.string))
    return request


def free_base_path(root: pathlib.Path, name: str = MODEL_NAME) -> pathlib.Path:
    """An empty model base path `<root>/<name>` for a test's own versions."""
    base = root / name
    base.mkdir(parents=True, exist_ok=True)
    return base


def copy_version(source: pathlib.Path, base_path: pathlib.Path, version: int) -> pathlib.Path:
    """Pushes a version folder into a model base path as `version` (copied file by file, not atomically, as a
    Pusher may)."""
    target = base_path / str(version)
    shutil.copytree(source, target, dirs_exist_ok=True)
    return target


def write_corrupt_version(base_path: pathlib.Path, version: int) -> pathlib.Path:
    """A complete-looking version directory whose saved_model.pb is not a SavedModel."""
    target = base_path / str(version)
    (target / "variables").mkdir(parents=True, exist_ok=True)
    (target / "saved_model.pb").write_bytes(b"this is not a SavedModel protocol buffer \x00\xff" * 8)
    return target
