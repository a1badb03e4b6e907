"""RetrievalEvaluator's executor: evaluate, write evaluation.json + evaluation.html, write the blessing.

The blessing is a standard ModelBlessing (custom property `blessed`, plus `current_model_id`), so the
standard Pusher honours it and `LatestBlessedModelStrategy` finds the model as the next run's baseline.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Optional

import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from components.feedback_labeler import executor as labeler_executor
from components.parameters import from_exec_properties
from components.retrieval_evaluator import blessing, evaluate, report
from models import export_format
from models.exported import ExportedModel
from models.serving_params import ScannParams
from reports.json_safe import json_safe

EVALUATION_FILE = "evaluation.json"
REPORT_FILE = "evaluation.html"
BLESSED_FILE, NOT_BLESSED_FILE = "BLESSED", "NOT_BLESSED"
EVALUATOR_VERSION = "1"

log = logging.getLogger(__name__)


def _optional_single(input_dict: dict[str, list[types.Artifact]], key: str) -> Optional[types.Artifact]:
    artifacts = input_dict.get(key) or []
    if len(artifacts) > 1:
        raise ValueError(f"RetrievalEvaluator expects at most one {key!r} artifact, got {len(artifacts)}")
    return artifacts[0] if artifacts else None


def _read_json(path: str) -> Any:
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


def write_blessing(artifact: types.Artifact, result: dict[str, Any], model: types.Artifact,
                   baseline: Optional[types.Artifact]) -> None:
    artifact.set_int_custom_property("blessed", int(result["blessed"]))
    artifact.set_string_custom_property("current_model", model.uri)
    artifact.set_int_custom_property("current_model_id", model.id)
    artifact.set_string_custom_property("blessing_rule", result["blessing_rule"])
    if baseline is not None:
        artifact.set_string_custom_property("baseline_model", baseline.uri)
        artifact.set_int_custom_property("baseline_model_id", baseline.id)
    tf.io.gfile.makedirs(artifact.uri)
    with tf.io.gfile.GFile(os.path.join(artifact.uri, BLESSED_FILE if result["blessed"] else NOT_BLESSED_FILE), "w") as f:
        f.write(result["blessing_rule"] + "\n")


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        params = from_exec_properties(blessing.EvaluationParams, exec_properties)
        scann = from_exec_properties(ScannParams, exec_properties)
        model_artifact = artifact_utils.get_single_instance(input_dict["model"])
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        graph = artifact_utils.get_single_instance(input_dict["transform_graph"])
        baseline_artifact = _optional_single(input_dict, "baseline_model")
        stats_artifact = _optional_single(input_dict, "feedback_stats")
        run_artifact = _optional_single(input_dict, "model_run")

        model = ExportedModel.load(model_artifact.uri)
        baseline = ExportedModel.load(baseline_artifact.uri) if baseline_artifact is not None else None
        coverage, log_summary = None, None
        if stats_artifact is not None:
            stats = _read_json(os.path.join(stats_artifact.uri, labeler_executor.STATS_FILE))
            coverage = stats["coverage_by_input_policy"]
            log_summary = {key: stats[key] for key in ("labels", "examples", "users", "tracks") if key in stats}
        history = None
        if run_artifact is not None:
            history = _read_json(os.path.join(run_artifact.uri, export_format.TRAINING_HISTORY_FILE))["epochs"]
        result = evaluate.evaluate_model(model, evaluate.RunData(graph.uri, examples.uri), params, scann=scann,
                                         baseline=baseline, coverage_by_input_policy=coverage, training_history=history,
                                         log_summary=log_summary)
        result = {"model": model_artifact.uri, "evaluator_version": EVALUATOR_VERSION, **json_safe(result)}

        evaluation = artifact_utils.get_single_instance(output_dict["evaluation"])
        tf.io.gfile.makedirs(evaluation.uri)
        with tf.io.gfile.GFile(os.path.join(evaluation.uri, EVALUATION_FILE), "w") as handle:
            json.dump(result, handle, indent=2, allow_nan=False)
        with tf.io.gfile.GFile(os.path.join(evaluation.uri, REPORT_FILE), "w") as handle:
            handle.write(report.render(result))
        write_blessing(artifact_utils.get_single_instance(output_dict["blessing"]), result, model_artifact,
                       baseline_artifact)
        log.info("RetrievalEvaluator: %s (%s); pairwise accuracy %s, recall@100 %s; %s",
                 "blessed" if result["blessed"] else "not blessed", result["blessing_rule"],
                 result["pairwise_accuracy"], result["recall_at_k"]["100"], report.sample_text(result["test_sample"]))
