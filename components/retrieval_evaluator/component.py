"""The RetrievalEvaluator TFX component: trained model + test split in; ModelBlessing + evaluation report out."""
from __future__ import annotations

import dataclasses
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.feedback_labeler.component import FeedbackStats
from components import ARTIFACT_TYPE_NAMESPACE
from components.parameters import execution_parameters
from components.retrieval_evaluator import blessing, executor
from models.serving_params import ScannParams


class RetrievalEvaluation(types.Artifact):
    """evaluation.json (the numbers of record) and evaluation.html (the same, readable, with plots)."""

    TYPE_NAME = f"{ARTIFACT_TYPE_NAMESPACE}.RetrievalEvaluation"


class RetrievalEvaluatorSpec(types.ComponentSpec):
    PARAMETERS = {**execution_parameters(blessing.EvaluationParams), **execution_parameters(ScannParams),
                  "evaluator_version": ExecutionParameter(type=str)}
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "model_run": ChannelParameter(type=standard_artifacts.ModelRun, optional=True),
        "transform_graph": ChannelParameter(type=standard_artifacts.TransformGraph),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "feedback_stats": ChannelParameter(type=FeedbackStats, optional=True),
        "baseline_model": ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {
        "blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
        "evaluation": ChannelParameter(type=RetrievalEvaluation),
    }


class RetrievalEvaluator(base_component.BaseComponent):
    """Judges the trained towers on the test split with exact scores and blesses them, or says why not.

    `examples` are Transform's transformed examples (the test split is read; the train split gives the
    user-activity slices); `baseline_model` is the last blessed model (a Resolver's output; absent at first).
    """

    SPEC_CLASS = RetrievalEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, transform_graph: types.BaseChannel, examples: types.BaseChannel,
                 params: blessing.EvaluationParams, scann: ScannParams, model_run: Optional[types.BaseChannel] = None,
                 feedback_stats: Optional[types.BaseChannel] = None,
                 baseline_model: Optional[types.BaseChannel] = None) -> None:
        super().__init__(spec=RetrievalEvaluatorSpec(
            model=model, model_run=model_run, transform_graph=transform_graph, examples=examples,
            feedback_stats=feedback_stats, baseline_model=baseline_model,
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            evaluation=types.Channel(type=RetrievalEvaluation),
            evaluator_version=executor.EVALUATOR_VERSION,
            **dataclasses.asdict(params),
            **dataclasses.asdict(scann),
        ))
