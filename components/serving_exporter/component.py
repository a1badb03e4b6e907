"""The ServingExporter TFX component: one trained Model in, the ScaNN and brute-force serving Models out."""
from __future__ import annotations

import dataclasses
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.parameters import execution_parameters
from components.retrieval_evaluator.component import RetrievalEvaluation
from components.serving_exporter import executor
from models import serving_params


class ServingExporterSpec(types.ComponentSpec):
    PARAMETERS = {
        **execution_parameters(serving_params.ServingParams),
        **execution_parameters(serving_params.ScannParams),
        **{f"{kind}_model_name": ExecutionParameter(type=str) for kind in serving_params.INDEX_KINDS},
        "exporter_version": ExecutionParameter(type=str),
    }
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "evaluation": ChannelParameter(type=RetrievalEvaluation, optional=True),
    }
    OUTPUTS = {key: ChannelParameter(type=standard_artifacts.Model) for key in executor.OUTPUT_KEYS.values()}


class ServingExporter(base_component.BaseComponent):
    """Raw-string serving signatures over the trained towers; the Pushers decide (by the blessing) what ships.

    With the evaluator's `evaluation`, the ScaNN index uses the settings whose recall the evaluator measured.
    """

    SPEC_CLASS = ServingExporterSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, serving: serving_params.ServingParams,
                 scann: serving_params.ScannParams, model_names: dict[str, str],
                 evaluation: Optional[types.BaseChannel] = None) -> None:
        super().__init__(spec=ServingExporterSpec(
            model=model, evaluation=evaluation,
            **{key: types.Channel(type=standard_artifacts.Model) for key in executor.OUTPUT_KEYS.values()},
            **dataclasses.asdict(serving), **dataclasses.asdict(scann),
            **{f"{kind}_model_name": model_names[kind] for kind in serving_params.INDEX_KINDS},
            exporter_version=executor.EXPORTER_VERSION,
        ))
