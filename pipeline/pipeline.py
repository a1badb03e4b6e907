"""The one `create_pipeline()`: the DAG every runner runs (DESIGN §2). Runners only choose where it runs."""
from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Optional, Sequence

from tfx import v1 as tfx
from tfx.components import FileBasedExampleGen
from tfx.components.example_gen.custom_executors import parquet_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2

from components.feedback_labeler.component import FeedbackLabeler
from components.retrieval_evaluator.component import RetrievalEvaluator
from components.serving_exporter import executor as exporter_executor
from components.serving_exporter.component import ServingExporter
from models import serving_export
from pipeline import configs
from schema import contract

FILE_GLOB = "*"
PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.trainer.run_fn"
BASELINE_RESOLVER_ID = "latest_blessed_model_resolver"
PUSHER_IDS = {serving_export.SCANN: "ScannPusher", serving_export.BRUTE_FORCE: "BruteForcePusher"}


def detect_input_format(data_root: pathlib.Path) -> str:
    """The single file format found in the span folders; fails with what to fix when there is none or a mix."""
    span_dirs = sorted(data_root.glob(configs.SPAN_DIR_GLOB))
    if not span_dirs:
        raise FileNotFoundError(
            f"no {configs.SPAN_DIR_GLOB} folders under {data_root}; write a log with "
            "`python -m listening_logs.simulate` or `python -m listening_logs.convert`"
        )
    suffixes = {path.suffix.lstrip(".") for span in span_dirs for path in span.iterdir() if path.is_file()}
    formats = suffixes & set(configs.INPUT_FORMATS)
    if len(formats) != 1 or suffixes - formats:
        raise ValueError(
            f"span folders under {data_root} must hold only .csv or only .parquet files, found {sorted(suffixes)}"
        )
    return formats.pop()


def example_gen_configs(
    spans: str,
) -> tuple[example_gen_pb2.Input, Optional[range_config_pb2.RangeConfig], Optional[example_gen_pb2.Output]]:
    """Input, range and output configs for the span selection.

    ExampleGen reads one span per run ('latest' or a fixed 'N', via its {SPAN} spec). A range 'A-B' becomes
    one input split per span (`span_A` ... `span_B`), because ExampleGen's static range holds one span only;
    the time split is FeedbackLabeler's job, so ExampleGen never hash-splits.
    """
    bounds = configs.parse_spans(spans)
    if bounds is None or bounds[0] == bounds[1]:
        input_config = example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name="events", pattern=f"{configs.SPAN_PATTERN_DIR}/{FILE_GLOB}")]
        )
        output_config = example_gen_pb2.Output(
            split_config=example_gen_pb2.SplitConfig(
                splits=[example_gen_pb2.SplitConfig.Split(name="events", hash_buckets=1)]
            )
        )
        range_config = None
        if bounds is not None:
            range_config = range_config_pb2.RangeConfig(
                static_range=range_config_pb2.StaticRange(start_span_number=bounds[0], end_span_number=bounds[0])
            )
        return input_config, range_config, output_config
    input_config = example_gen_pb2.Input(
        splits=[
            example_gen_pb2.Input.Split(name=f"span_{span}", pattern=f"span-{span}/{FILE_GLOB}")
            for span in range(bounds[0], bounds[1] + 1)
        ]
    )
    return input_config, None, None


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    config: configs.PipelineConfig,
    serving_base: str,
    metadata_connection_config: Optional[object] = None,
    beam_pipeline_args: Sequence[str] = (),
    schema_path: str = str(contract.SCHEMA_PATH),
) -> tfx.dsl.Pipeline:
    """ExampleGen -> StatisticsGen -> ImportSchemaGen -> ExampleValidator -> FeedbackLabeler -> Transform -> Trainer
    -> RetrievalEvaluator (against the last blessed model, found by a Resolver) -> ServingExporter -> two Pushers
    (ScaNN and brute-force twins, each to `serving_base/<model name>/<version>/`, only when blessed).

    Two curated schemas: the raw log's (`schema_path`) for validation, and the labelled sequences'
    (`contract.LABELED_SCHEMA_PATH`, imported as `LabeledSchemaGen`) for Transform.
    """
    input_format = config.input_format
    if input_format == "auto":
        input_format = detect_input_format(pathlib.Path(data_root))
    input_config, range_config, output_config = example_gen_configs(config.spans)
    example_gen_args = dict(
        input_base=data_root, input_config=input_config, output_config=output_config, range_config=range_config
    )
    if input_format == "csv":
        example_gen = tfx.components.CsvExampleGen(**example_gen_args)
    else:
        example_gen = FileBasedExampleGen(
            custom_executor_spec=executor_spec.BeamExecutorSpec(parquet_executor.Executor), **example_gen_args
        )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_path)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    feedback_labeler = FeedbackLabeler(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"], params=config.labeling_params()
    )
    labeled_schema_gen = tfx.components.ImportSchemaGen(schema_file=str(contract.LABELED_SCHEMA_PATH)).with_id(
        "LabeledSchemaGen"
    )
    transform = tfx.components.Transform(
        examples=feedback_labeler.outputs["labeled_examples"],
        schema=labeled_schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        splits_config=tfx.proto.SplitsConfig(analyze=[contract.TRAIN], transform=list(contract.SPLITS)),
        disable_statistics=True,
    )
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        train_args=tfx.proto.TrainArgs(splits=[contract.TRAIN]),
        eval_args=tfx.proto.EvalArgs(splits=[contract.EVAL]),
        custom_config=dataclasses.asdict(config.training_params()),
    )
    baseline_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id(BASELINE_RESOLVER_ID)
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
