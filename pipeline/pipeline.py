"""The one `create_pipeline()`: the DAG every runner runs (docs/design.md §2). Runners only choose where it runs."""
from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Optional, Sequence

from tfx import v1 as tfx
from tfx.components import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2

from components.feedback_labeler.component import FeedbackLabeler
from components.span_window import executor as span_window
from components.retrieval_evaluator.component import RetrievalEvaluator
from components.serving_exporter import executor as exporter_executor
from components.serving_exporter.component import ServingExporter
from models import serving_export
from pipeline import configs
from schema import contract, span_folders

FILE_GLOB = "*"
EVENTS_SPLIT = "events"
EXAMPLE_GEN_ID = "ExampleGen"
PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.trainer.run_fn"
BASELINE_RESOLVER_ID = "latest_blessed_model_resolver"
TRAINER_ID = "Trainer"
PUSHER_IDS = {serving_export.SCANN: "ScannPusher", serving_export.BRUTE_FORCE: "BruteForcePusher"}


def detect_input_format(data_root: pathlib.Path) -> str:
    """The single file format found in the span folders; fails with what to fix when there is none or a mix."""
    span_dirs = list(span_folders.folders(data_root).values())
    if not span_dirs:
        raise FileNotFoundError(
            f"no {span_folders.folder_name('N')} folders under {data_root}; write a log with "
            "`python -m listening_logs.simulate` or `python -m listening_logs.convert`"
        )
    suffixes = {path.suffix.lstrip(".") for span in span_dirs for path in span.iterdir() if path.is_file()}
    formats = suffixes & set(configs.INPUT_FORMATS)
    if len(formats) != 1 or suffixes - formats:
        raise ValueError(
            f"span folders under {data_root} must hold only .csv or only .parquet files, found {sorted(suffixes)}"
        )
    return formats.pop()


def build_example_gen(data_root: str, input_format: str, config: configs.PipelineConfig) -> FileBasedExampleGen:
    """ExampleGen over the span folders: one span resolved per run ('latest' or fixed), read with its window.

    ExampleGen's own range holds one span, so the window ('A-B', or `window_spans` back from the resolved span)
    is read by the span_window executor, into the one `events` split; the time split is FeedbackLabeler's.
    """
    resolved_span, window_spans, require_every_span = configs.window(config)
    range_config = None
    if resolved_span is not None:
        range_config = range_config_pb2.RangeConfig(
            static_range=range_config_pb2.StaticRange(start_span_number=resolved_span, end_span_number=resolved_span)
        )
    pattern = f"{span_folders.folder_name(span_window.SPAN_PLACEHOLDER)}/{FILE_GLOB}"
    return FileBasedExampleGen(
        input_base=data_root,
        input_config=example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name=EVENTS_SPLIT, pattern=pattern)]),
        output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(
            splits=[example_gen_pb2.SplitConfig.Split(name=EVENTS_SPLIT, hash_buckets=1)])),
        range_config=range_config,
        custom_config=span_window.custom_config(span_window.WindowConfig(
            input_format=input_format, span_pattern=pattern, window_spans=window_spans,
            require_every_span=require_every_span)),
        custom_executor_spec=executor_spec.BeamExecutorSpec(span_window.Executor),
    ).with_id(EXAMPLE_GEN_ID)


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    config: configs.PipelineConfig,
    serving_base: str,
    metadata_connection_config: Optional[object] = None,
    beam_pipeline_args: Sequence[str] = (),
    schema_path: str = str(contract.SCHEMA_PATH),
    labeled_schema_path: str = str(contract.LABELED_SCHEMA_PATH),
) -> tfx.dsl.Pipeline:
    """ExampleGen -> StatisticsGen -> ImportSchemaGen -> ExampleValidator -> FeedbackLabeler -> Transform -> Trainer
    -> RetrievalEvaluator (against the last blessed model, found by a Resolver) -> ServingExporter -> two Pushers
    (ScaNN and brute-force twins, each to `serving_base/<model name>/<version>/`, only when blessed).

    Two curated schemas: the raw log's (`schema_path`) for validation, and the labelled sequences'
    (`labeled_schema_path`, imported as `LabeledSchemaGen`) for Transform; a container image passes its own
    copies' paths. With `warm_start`, the Trainer starts from the model the baseline Resolver finds.
    """
    input_format = config.input_format
    if input_format == "auto":
        if "://" in data_root:
            raise ValueError(f"cannot look into {data_root} to pick the input format; "
                             "--set input_format=csv or input_format=parquet")
        input_format = detect_input_format(pathlib.Path(data_root))
    example_gen = build_example_gen(data_root, input_format, config)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_path)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    feedback_labeler = FeedbackLabeler(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"], params=config.labeling_params()
    )
    labeled_schema_gen = tfx.components.ImportSchemaGen(schema_file=labeled_schema_path).with_id(
        "LabeledSchemaGen"
    )
    transform = tfx.components.Transform(
        examples=feedback_labeler.outputs["labeled_examples"],
        schema=labeled_schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        splits_config=tfx.proto.SplitsConfig(analyze=[contract.TRAIN], transform=list(contract.SPLITS)),
        disable_statistics=True,
    )
    baseline_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id(BASELINE_RESOLVER_ID)
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        train_args=tfx.proto.TrainArgs(splits=[contract.TRAIN]),
        eval_args=tfx.proto.EvalArgs(splits=[contract.EVAL]),
        custom_config=dataclasses.asdict(config.training_params()),
        base_model=baseline_resolver.outputs["model"] if config.warm_start else None,
    ).with_id(TRAINER_ID)
    evaluator = RetrievalEvaluator(
        model=trainer.outputs["model"],
        model_run=trainer.outputs["model_run"],
        transform_graph=transform.outputs["transform_graph"],
        examples=transform.outputs["transformed_examples"],
        feedback_stats=feedback_labeler.outputs["feedback_stats"],
        baseline_model=baseline_resolver.outputs["model"],
        params=config.evaluation_params(),
        scann=config.scann_params(),
    )
    exporter = ServingExporter(model=trainer.outputs["model"], serving=config.serving_params(),
                               scann=config.scann_params(), model_names=configs.SERVED_MODEL_NAMES,
                               evaluation=evaluator.outputs["evaluation"])
    pushers = [
        tfx.components.Pusher(
            model=exporter.outputs[exporter_executor.OUTPUT_KEYS[kind]],
            model_blessing=evaluator.outputs["blessing"],
            push_destination=tfx.proto.PushDestination(filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=os.path.join(serving_base, configs.SERVED_MODEL_NAMES[kind]))),
        ).with_id(PUSHER_IDS[kind])
        for kind in serving_export.INDEX_KINDS
    ]
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[
            example_gen, statistics_gen, schema_gen, example_validator,
            feedback_labeler, labeled_schema_gen, transform, trainer, baseline_resolver, evaluator, exporter,
            *pushers,
        ],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args),
    )
