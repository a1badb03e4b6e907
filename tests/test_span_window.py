"""The span window reads each span through public API only: TFX's own CSV reader, and our batched Parquet reader.

`components.span_window.executor` asks TFX's csv ExampleGen executor for its reader
(`GetInputSourceToExamplePTransform()`, public on every BaseExampleGenExecutor) instead of importing the
private `_CsvToExample`; Parquet goes through `parquet_batches` (issue 14). These tests run each reader under
Beam on one real span and say which part of TFX changed when an upgrade breaks it.
"""
from __future__ import annotations

import ast
import pathlib

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing import util as beam_testing
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.types import standard_component_specs

from components.span_window import executor as span_window
from listening_logs import spans
from schema import contract
from schema import span_folders
from tests.conftest import random_log

EXECUTOR_SOURCE = pathlib.Path(span_window.__file__)


def test_the_executor_names_no_private_tfx_attribute():
    """`from tfx... import _x` or `module._x` on a TFX module would tie us to TFX internals again."""
    tree = ast.parse(EXECUTOR_SOURCE.read_text())
    tfx_imports = [node for node in ast.walk(tree)
                   if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tfx")]
    tfx_modules = {alias.asname or alias.name for node in tfx_imports for alias in node.names}
    attributes = {f"{node.value.id}.{node.attr}" for node in ast.walk(tree)
                  if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                  and node.value.id in tfx_modules and node.attr.startswith("_")}
    imported = {alias.name for node in tfx_imports for alias in node.names if alias.name.startswith("_")}
    private = sorted(attributes | imported)
    assert not private, f"{EXECUTOR_SOURCE.name} uses private TFX names {private}; use a public TFX API"


@pytest.mark.parametrize("input_format", sorted(span_window.TFX_EXECUTORS))
def test_tfx_executors_still_offer_their_reader_publicly(input_format):
    executor_class = span_window.TFX_EXECUTORS[input_format]
    assert issubclass(executor_class, BaseExampleGenExecutor), (
        f"TFX's {input_format} ExampleGen executor {executor_class} is no longer a BaseExampleGenExecutor: "
        "span_window.READERS needs another public source of the reader")
    assert callable(getattr(executor_class(), "GetInputSourceToExamplePTransform", None)), (
        f"{executor_class.__module__}.Executor lost GetInputSourceToExamplePTransform()")


@pytest.mark.parametrize("input_format", sorted(span_window.READERS))
def test_reader_of_each_format_turns_one_span_into_examples(tmp_path, input_format):
    frame = random_log(40, days=2)
    written = spans.write_spans(frame, tmp_path, fmt=input_format)
    reader = span_window.reader_for(input_format)
    assert callable(reader), f"the {input_format} reader is {reader!r}, not a PTransform factory"
    properties = {standard_component_specs.INPUT_BASE_KEY: str(tmp_path)}
    pattern = f"{span_folders.folder_name(1)}/*"
    with beam.Pipeline() as pipeline:
        examples = pipeline | reader(properties, pattern)
        beam_testing.assert_that(examples | beam.Map(_user_and_track), _has_rows(written[1]))


def _user_and_track(example: "tf.train.Example | bytes") -> tuple[bytes, bytes]:
    if isinstance(example, bytes):
        example = tf.train.Example.FromString(example)
    if not isinstance(example, tf.train.Example):
        raise TypeError(f"TFX's ExampleGen reader now yields {type(example).__name__}, not tf.train.Example: "
                        "components.span_window.executor must convert it")
    features = example.features.feature
    return (features[contract.USER_ID].bytes_list.value[0], features[contract.TRACK_ID].bytes_list.value[0])


def _has_rows(expected: int):
    def check(rows: list[tuple[bytes, bytes]]) -> None:
        if len(rows) != expected or not all(user.startswith(b"u") and track.startswith(b"t") for user, track in rows):
            raise beam_testing.BeamAssertException(
                f"TFX's reader gave {len(rows)} examples (expected {expected}, each with user_id u* and "
                f"track_id t*): first {rows[:3]}")
    return check
