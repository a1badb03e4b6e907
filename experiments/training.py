"""Train and judge one model variant in this process, on a finished pipeline run's Transform output.

The variants of the hard-negative and random-negative experiments differ only in Trainer settings, so they
reuse the base run's Transform output and call the Trainer's own `run_fn` (no copy of the model) instead
of re-running the whole pipeline for each.
"""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import statistics
import time
from typing import Any, Mapping, Optional, Sequence

import tensorflow as tf
from tfx.components.trainer import fn_args_utils
from tfx.components.util import tfxio_utils
from tfx.types import artifact_utils, standard_artifacts

from components.retrieval_evaluator import blessing
from components.retrieval_evaluator.evaluate import RunData, evaluate_model
from models import export_format, trainer
from models.exported import ExportedModel
from models.params import TrainingParams
from schema import contract

ACCURACY = "eval_pairwise_accuracy"
SECONDS = "train_seconds_cumulative"
MODEL_DIR = "model"
RUN_DIR = "run"


@dataclasses.dataclass(frozen=True)
class TrainedVariant:
    """Where one in-process training exported its model, and its per-epoch history."""

    model_dir: str
    history: list[dict[str, Any]]
    seconds: float


@dataclasses.dataclass(frozen=True)
class TimeToTarget:
    """When a training first reached an eval pairwise accuracy; None/False when it never did."""

    reached: bool
    seconds: Optional[float]
    epochs: Optional[int]


def fn_args_for(data: RunData, out_dir: pathlib.Path, params: TrainingParams) -> fn_args_utils.FnArgs:
    """The FnArgs the TFX Trainer would hand `run_fn` for this run's transformed examples."""
    examples = standard_artifacts.Examples()
    examples.uri = data.examples_uri
    examples.split_names = artifact_utils.encode_split_names(list(contract.SPLITS))
    accessor = fn_args_utils.DataAccessor(
        tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
        record_batch_factory=tfxio_utils.get_record_batch_factory_from_artifact([examples], []),
        data_view_decode_fn=None,
    )
    return fn_args_utils.FnArgs(
        train_files=[data.split_pattern(contract.TRAIN)],
        eval_files=[data.split_pattern(contract.EVAL)],
        transform_output=data.transform_graph_uri,
        data_accessor=accessor,
        serving_model_dir=str(out_dir / MODEL_DIR),
        model_run_dir=str(out_dir / RUN_DIR),
        custom_config=dataclasses.asdict(params),
    )


def read_history(model_run_dir: str | pathlib.Path) -> list[dict[str, Any]]:
    """The Trainer's per-epoch rows (`training_history.json`)."""
    path = pathlib.Path(model_run_dir) / export_format.TRAINING_HISTORY_FILE
    return json.loads(path.read_text())["epochs"]


def train_variant(data: RunData, params: TrainingParams, out_dir: pathlib.Path) -> TrainedVariant:
    """Runs the Trainer's `run_fn` on `data`; a fresh Keras session each time so variants do not share state."""
    tf.keras.backend.clear_session()
    out_dir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    trainer.run_fn(fn_args_for(data, out_dir, params))
    seconds = time.perf_counter() - began
    return TrainedVariant(str(out_dir / MODEL_DIR), read_history(out_dir / RUN_DIR), seconds)


def evaluate_on(model_dir: str, reference: RunData, params: blessing.EvaluationParams,
                coverage_by_input_policy: Optional[Mapping[str, Any]] = None,
                training_history: Optional[Sequence[Mapping[str, Any]]] = None) -> dict[str, Any]:
    """The evaluator's numbers for one exported model on the reference run's test split."""
    model = ExportedModel.load(model_dir)
    return evaluate_model(model, reference, params, coverage_by_input_policy=coverage_by_input_policy,
                          training_history=training_history)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def best_accuracy(history: Sequence[Mapping[str, Any]]) -> Optional[float]:
    """The highest eval pairwise accuracy of a training (None when no epoch could measure it)."""
    values = [row[ACCURACY] for row in history if _finite(row.get(ACCURACY))]
    return max(values) if values else None


def tracing_seconds(history: Sequence[Mapping[str, Any]]) -> float:
    """What the first epoch took beyond a steady epoch (graph tracing, input pipeline warm-up): its seconds
    minus the median of the later epochs'; 0 with a single epoch (nothing to compare with)."""
    cumulative = [float(row[SECONDS]) for row in sorted(history, key=lambda r: r["epoch"])]
    if len(cumulative) < 2:
        return 0.0
    later = [after - before for before, after in zip(cumulative, cumulative[1:])]
    return max(0.0, cumulative[0] - statistics.median(later))


def time_to_target(history: Sequence[Mapping[str, Any]], target: Optional[float]) -> TimeToTarget:
    """Training seconds and epochs until the first epoch whose eval pairwise accuracy is >= target.

    Seconds are the Trainer's cumulative training time (per-epoch evaluation excluded) after the first
    epoch's graph tracing (`tracing_seconds`), so a variant is charged neither for how long the metric takes
    to compute nor for a one-off cost that does not depend on how fast it learns.
    """
    if target is None or not math.isfinite(target):
        return TimeToTarget(False, None, None)
    tracing = tracing_seconds(history)
    for row in sorted(history, key=lambda r: r["epoch"]):
        if _finite(row.get(ACCURACY)) and row[ACCURACY] >= target:
            return TimeToTarget(True, round(float(row[SECONDS]) - tracing, 3), int(row["epoch"]))
    return TimeToTarget(False, None, None)


def curve(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The few history columns the report plots (accuracy against training seconds)."""
    return [{"epoch": row["epoch"], SECONDS: row[SECONDS], "wall_seconds": row.get("wall_seconds"),
             ACCURACY: row.get(ACCURACY), "eval_recall_at_100": row.get("eval_recall_at_100")} for row in history]
