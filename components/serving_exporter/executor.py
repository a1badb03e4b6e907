"""Builds the ScaNN and the brute-force serving SavedModels from a Trainer export."""
from __future__ import annotations

import json
import logging
import os
from typing import Any

import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components.parameters import from_exec_properties
from components.retrieval_evaluator import executor as evaluator_executor
from models import serving_export
from models.exported import ExportedModel

EXPORTER_VERSION = "1"
OUTPUT_KEYS = {serving_export.SCANN: "scann_model", serving_export.BRUTE_FORCE: "brute_force_model"}
"""Output channel per index kind."""

log = logging.getLogger(__name__)


def tuned_scann_params(evaluation_uri: str, configured: serving_export.ScannParams) -> serving_export.ScannParams:
    """The ScaNN settings whose recall the evaluator measured (and blessed), so what ships is what was judged."""
    with tf.io.gfile.GFile(os.path.join(evaluation_uri, evaluator_executor.EVALUATION_FILE)) as handle:
        measured = json.load(handle).get("scann")
    if measured is None:
        return configured
    return serving_export.ScannParams(**measured)


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        serving = from_exec_properties(serving_export.ServingParams, exec_properties)
        scann = from_exec_properties(serving_export.ScannParams, exec_properties)
        evaluations = input_dict.get("evaluation") or []
        if evaluations:
            scann = tuned_scann_params(artifact_utils.get_single_instance(evaluations).uri, scann)
        model = ExportedModel.load(artifact_utils.get_single_instance(input_dict["model"]).uri)
        for kind, key in OUTPUT_KEYS.items():
            target = path_utils.serving_model_path(artifact_utils.get_single_instance(output_dict[key]).uri)
            serving_export.export(model, kind, target, exec_properties[f"{kind}_model_name"], serving, scann)
            log.info("ServingExporter: %s export in %s", kind, target)
