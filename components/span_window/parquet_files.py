"""Parquet span files -> GZIP TFRecord files of serialized tf.train.Examples, one output file per input file.

Why: TFX's ExampleGen writes every split through `write_split.WriteSplit`: one Beam element per Example,
a serialize step, a `Reshuffle` (random keys, a group-by-key, four per-element Python steps) and Beam's
TFRecord sink compressing in Python. On 2 spans of the 1M-play log (285,000 plays) that was about 30 CPU
seconds, of which encoding the Examples (`parquet_batches`, C++) is under one: the rest is per-record
Beam machinery. Here the unit of work is a whole input file: it is read a record batch at a time, encoded
by tfx_bsl's C++ encoder (the same `parquet_batches.encode_batch` as the per-table reader) and written by
TF's C++ GZIP TFRecord writer.

Each output file's name comes from its input's position in the sorted list of the window's files, and it is
written under a staging folder and renamed into place when complete: a retried bundle rewrites the same
file, so a distributed runner cannot duplicate or half-write an input. The order of Examples within the
split follows the input (TFX's shuffle only randomised it; no consumer of the split depends on order:
FeedbackLabeler groups and sorts per listener, StatisticsGen aggregates).
"""
from __future__ import annotations

import os
from typing import Iterator, Sequence

import apache_beam as beam
import pyarrow.parquet as pq
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from tfx_bsl.public import tfxio

from components.span_window.parquet_batches import encode_batch

FILE_PREFIX = "data_tfrecord"
"""The name TFX's ExampleGen gives its output files (`write_split.DEFAULT_FILE_NAME`), kept for familiarity."""
STAGING_DIR = ".staging"
"""Sibling of the split folders under the Examples artifact; removed once the pipeline has finished."""
ROWS_PER_BATCH = 100_000
"""Rows read and encoded at a time (memory ~ this many rows' Examples)."""


def output_name(index: int, count: int) -> str:
    return f"{FILE_PREFIX}-{index:05d}-of-{count:05d}.gz"


class WriteFileAsExamples(beam.DoFn):
    """(index, Parquet path) -> that file's rows written as one GZIP TFRecord file; yields its row count."""

    def __init__(self, split_uri: str, staging_uri: str, count: int) -> None:
        self._split_uri = split_uri
        self._staging_uri = staging_uri
        self._count = count

    def setup(self) -> None:
        self._encoder = tfxio.RecordBatchToExamplesEncoder()

    def process(self, element: tuple[int, str]) -> Iterator[int]:
        index, path = element
        name = output_name(index, self._count)
        staged = os.path.join(self._staging_uri, name)
        rows = 0
        with FileSystems.open(path) as source, tf.io.TFRecordWriter(staged, options="GZIP") as writer:
            for batch in pq.ParquetFile(source).iter_batches(batch_size=ROWS_PER_BATCH):
                for record in encode_batch(self._encoder, batch):
                    writer.write(record)
                rows += batch.num_rows
        tf.io.gfile.rename(staged, os.path.join(self._split_uri, name), overwrite=True)
        yield rows


def write_examples(pipeline: beam.Pipeline, paths: Sequence[str], split_uri: str,
                   staging_uri: str) -> beam.pvalue.PCollection:
    """Adds the steps that write every file of `paths` (sorted by the caller) into `split_uri`; the returned
    PCollection holds each file's row count."""
    tf.io.gfile.makedirs(split_uri)
    tf.io.gfile.makedirs(staging_uri)
    return (pipeline
            | "ParquetFiles" >> beam.Create(list(enumerate(paths)))
            | "SpreadFiles" >> beam.Reshuffle()  # one file per worker on a distributed runner, not all on one
            | "WriteFilesAsExamples" >> beam.ParDo(WriteFileAsExamples(split_uri, staging_uri, len(paths))))
