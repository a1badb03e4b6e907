"""A FileBasedExampleGen executor that reads the training window: span S (resolved by ExampleGen) and its predecessors.

ExampleGen resolves one span per run (`{SPAN}` in the pattern: the newest, or the one a static range fixes),
both here and in the Kubeflow driver, and fingerprints it. Kubeflow cannot compile a span-range resolver, so
the window is read here instead: spans S - window + 1 ... S, concatenated into the one `events` split. Older
spans are assumed immutable (late data goes into a new span), because the cache fingerprint covers span S only.

The settings travel in ExampleGen's `custom_config` (a Struct packed in `CustomConfig`), made by
`custom_config()`; the spans read are recorded on the output artifact (custom property `window_spans`).
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Callable

import apache_beam as beam
import tensorflow as tf
from google.protobuf import struct_pb2
from tfx.components.example_gen import utils
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.span_window import parquet_files
from components.span_window.parquet_batches import ParquetToSerializedExamples

SPAN_PLACEHOLDER = utils.SPAN_SPEC
WINDOW_SPANS_PROPERTY = "window_spans"
"""Custom property of the output Examples: the span numbers read, comma-separated, oldest first."""
TFX_EXECUTORS: dict[str, type[BaseExampleGenExecutor]] = {"csv": csv_executor.Executor}
"""Formats read by TFX's own ExampleGen executor (its reader, through public API)."""
READERS: dict[str, Callable[[], Any]] = {
    "csv": lambda: TFX_EXECUTORS["csv"]().GetInputSourceToExamplePTransform(),
    "parquet": lambda: ParquetToSerializedExamples,
}
"""The span reader per format. CSV: TFX's own, through its executor's public
`GetInputSourceToExamplePTransform()`, so no private TFX name is imported. Parquet: ours, a record batch at a
time (`parquet_batches`), not TFX's one dict per row."""

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WindowConfig:
    input_format: str
    """'csv' or 'parquet'."""
    span_pattern: str
    """The split pattern with the {SPAN} placeholder, relative to input_base (e.g. 'span-{SPAN}/*')."""
    window_spans: int
    """How many spans, ending with the resolved one."""
    require_every_span: bool
    """True for an explicit range (a missing span is an error); False for a rolling window, whose first days
    simply have fewer spans."""

    def __post_init__(self) -> None:
        if self.input_format not in READERS:
            raise ValueError(f"input_format must be one of {sorted(READERS)}, got {self.input_format!r}")
        if SPAN_PLACEHOLDER not in self.span_pattern:
            raise ValueError(f"span_pattern must contain {SPAN_PLACEHOLDER}, got {self.span_pattern!r}")
        if self.window_spans < 1:
            raise ValueError(f"window_spans must be >= 1, got {self.window_spans}")


def custom_config(config: WindowConfig) -> example_gen_pb2.CustomConfig:
    """ExampleGen's `custom_config` carrying the window settings."""
    struct = struct_pb2.Struct()
    struct.update(dataclasses.asdict(config))
    packed = example_gen_pb2.CustomConfig()
    packed.custom_config.Pack(struct)
    return packed


def window_config(exec_properties: dict[str, Any]) -> WindowConfig:
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if not raw:
        raise ValueError("span_window executor needs ExampleGen(custom_config=span_window.executor.custom_config(...))")
    packed = example_gen_pb2.CustomConfig()
    proto_utils.json_to_proto(raw, packed)
    struct = struct_pb2.Struct()
    if not packed.custom_config.Unpack(struct):
        raise ValueError(f"ExampleGen custom_config is not a window config: {raw}")
    values = dict(struct)
    return WindowConfig(
        input_format=str(values["input_format"]),
        span_pattern=str(values["span_pattern"]),
        window_spans=int(values["window_spans"]),
        require_every_span=bool(values["require_every_span"]),
    )


def spans_to_read(input_base: str, config: WindowConfig, resolved_span: int) -> list[int]:
    """The window's spans that exist, oldest first; fails when a required span (or the resolved one) is absent."""
    wanted = range(max(1, resolved_span - config.window_spans + 1), resolved_span + 1)
    present = [span for span in wanted if tf.io.gfile.glob(span_pattern(input_base, config, span))]
    missing = sorted(set(wanted) - set(present))
    if resolved_span in missing:
        raise FileNotFoundError(f"no files for span {resolved_span}, the one ExampleGen resolved, under {input_base} "
                                f"(pattern {config.span_pattern!r})")
    if config.require_every_span and missing:
        raise FileNotFoundError(
            f"no files for span(s) {missing} under {input_base} (pattern {config.span_pattern!r}); "
            "write the missing days or choose another range with --set spans=...")
    if missing:
        log.info("training window: spans %s are not there yet, reading %s", missing, present)
    return present


def reader_for(input_format: str) -> Any:
    """The `(pipeline, exec_properties, split_pattern) -> PCollection[Example or serialized Example]` PTransform
    that reads one span of this format (READERS)."""
    return READERS[input_format]()


def span_pattern(input_base: str, config: WindowConfig, span: int) -> str:
    return os.path.join(input_base, config.span_pattern.replace(SPAN_PLACEHOLDER, str(span)))


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(Any)
def _WindowToExample(pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str):  # noqa: N802
    """Every span of the window through the format's own ExampleGen reader, flattened into one split."""
    config = window_config(exec_properties)
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    spans = spans_to_read(input_base, config, int(exec_properties[utils.SPAN_PROPERTY_NAME]))
    reader = reader_for(config.input_format)
    relative = [config.span_pattern.replace(SPAN_PLACEHOLDER, str(span)) for span in spans]
    log.info("ExampleGen reads spans %s of %s (%s)", spans, input_base, config.input_format)
    return [pipeline | f"ReadSpan[{span}]" >> reader(exec_properties, pattern)
            for span, pattern in zip(spans, relative)] | "FlattenSpans" >> beam.Flatten()


class Executor(BaseExampleGenExecutor):
    """csv or parquet, one span or a window of them; records which spans it read."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802
        return _WindowToExample

    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]) -> None:
        config = window_config(exec_properties)
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        spans = spans_to_read(input_base, config, int(exec_properties[utils.SPAN_PROPERTY_NAME]))
        split = single_output_split(exec_properties)
        if config.input_format == "parquet" and split is not None:
            self._write_parquet_files(output_dict, exec_properties, split,
                                      [path for span in spans
                                       for path in sorted(tf.io.gfile.glob(span_pattern(input_base, config, span)))])
        else:
            super().Do(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        examples.set_string_custom_property(WINDOW_SPANS_PROPERTY, ",".join(str(span) for span in spans))

    def _write_parquet_files(self, output_dict: dict[str, list], exec_properties: dict[str, Any], split: str,
                             paths: list[str]) -> None:
        """What TFX's `Do` writes (the split's GZIP TFRecords and the artifact's split names, payload and file
        format), a whole input file per unit of work (`parquet_files`) instead of one Beam element per play."""
        output_file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY,
                                                 example_gen_pb2.FILE_FORMAT_UNSPECIFIED)
        if write_split.to_file_format_str(output_file_format) != "tfrecords_gzip":
            raise ValueError(f"ExampleGen output_file_format {output_file_format} is not GZIP TFRecords")
        payload_format = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
        if payload_format not in (None, example_gen_pb2.FORMAT_TF_EXAMPLE):
            raise ValueError(f"ExampleGen output_data_format {payload_format} is not tf.train.Example")
        artifacts = output_dict[standard_component_specs.EXAMPLES_KEY]
        examples = artifact_utils.get_single_instance(artifacts)
        examples.split_names = artifact_utils.encode_split_names([split])
        staging = os.path.join(examples.uri, parquet_files.STAGING_DIR)
        log.info("ExampleGen writes %d Parquet files into split %s, one file at a time", len(paths), split)
        with self._make_beam_pipeline() as pipeline:
            parquet_files.write_examples(pipeline, paths, artifact_utils.get_split_uri(artifacts, split), staging)
        tf.io.gfile.rmtree(staging)
        for artifact in artifacts:
            if payload_format is not None:
                examples_utils.set_payload_format(artifact, payload_format)
            examples_utils.set_file_format(artifact, write_split.to_file_format_str(output_file_format))


def single_output_split(exec_properties: dict[str, Any]) -> str | None:
    """The name of ExampleGen's one output split when every record goes to it (one output split, or one input
    split and no output split config); None otherwise (TFX's hash partitioning then decides)."""
    input_config, output_config = example_gen_pb2.Input(), example_gen_pb2.Output()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
    proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
    names = utils.generate_output_split_names(input_config, output_config)
    return names[0] if len(names) == 1 else None
