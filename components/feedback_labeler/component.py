"""The FeedbackLabeler TFX component: Examples + Schema in, labelled Examples (train/eval/test) + stats out."""
from __future__ import annotations

import dataclasses

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.feedback_labeler import executor, sequences
from components import ARTIFACT_TYPE_NAMESPACE
from components.parameters import execution_parameters


class FeedbackStats(types.Artifact):
    """A JSON document (feedback_stats.json) of label counts, quarantine reasons, splits and coverage."""

    TYPE_NAME = f"{ARTIFACT_TYPE_NAMESPACE}.FeedbackStats"


def _parameters() -> dict[str, ExecutionParameter]:
    return {**execution_parameters(sequences.LabelingParams), "labeler_version": ExecutionParameter(type=str)}


class FeedbackLabelerSpec(types.ComponentSpec):
    PARAMETERS = _parameters()
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "schema": ChannelParameter(type=standard_artifacts.Schema),
    }
    OUTPUTS = {
        "labeled_examples": ChannelParameter(type=standard_artifacts.Examples),
        "feedback_stats": ChannelParameter(type=FeedbackStats),
    }


class FeedbackLabeler(base_beam_component.BaseBeamComponent):
    """Validates, labels and sessionizes plays into listening sequences with real hard negatives.

    `labeler_version` is an execution parameter so that TFX's cache never reuses output of older logic.
    """

    SPEC_CLASS = FeedbackLabelerSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, schema: types.BaseChannel, params: sequences.LabelingParams):
        super().__init__(
            spec=FeedbackLabelerSpec(
                examples=examples,
                schema=schema,
                labeled_examples=types.Channel(type=standard_artifacts.Examples),
                feedback_stats=types.Channel(type=FeedbackStats),
                labeler_version=executor.LABELER_VERSION,
                **dataclasses.asdict(params),
            )
        )
