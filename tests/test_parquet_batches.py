"""The batched Parquet reader writes what TFX's per-row Parquet reader writes, but keeps zeros."""
from __future__ import annotations

import collections

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf
from tfx.components.example_gen.custom_executors import parquet_executor

from components.feedback_labeler.executor import example_to_raw
from components.span_window.parquet_batches import EncodeTable, ParquetToSerializedExamples
from schema import contract

T0 = 1_767_225_600_000


def canonical(record) -> tuple:
    """A serialized tf.train.Example's non-empty features as sorted (name, values) pairs."""
    example = tf.train.Example.FromString(record)
    features = []
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values = tuple(getattr(feature, kind).value) if kind else ()
        if values:
            features.append((name, values))
    return tuple(sorted(features))


def test_batched_parquet_reader_matches_tfx_reader(tmp_path):
    rows = 700  # more than one record batch per file
    table = pa.table({
        contract.USER_ID: [f"u{i % 7}" for i in range(rows)],
        contract.TRACK_ID: ["t1" if i % 11 else "" for i in range(rows)],
        contract.STATION_ID: [None if i % 5 == 0 else f"s{i % 3}" for i in range(rows)],
        contract.TIMESTAMP_MS: [T0 + i for i in range(rows)],
        contract.LISTEN_MS: pa.array([None if i % 4 == 0 else 1000 * i + 1 for i in range(rows)], pa.int64()),
        contract.FEEDBACK: ["thumb_up" if i % 9 == 0 else "" for i in range(rows)],
        "rating": pa.array([(i + 1) / 8 for i in range(rows)], pa.float64()),  # no zero: TFX drops zeros
    })
    (tmp_path / "span-1").mkdir()
    pq.write_table(table, tmp_path / "span-1" / "events.parquet", row_group_size=256)
    properties = {"input_base": str(tmp_path)}

    with beam.Pipeline() as pipeline:
        _ = (pipeline | "Theirs" >> parquet_executor._ParquetToExample(properties, "span-1/*")
             | beam.Map(lambda example: example.SerializeToString())
             | "WriteTheirs" >> beam.io.WriteToTFRecord(str(tmp_path / "theirs")))
        _ = (pipeline | "Ours" >> ParquetToSerializedExamples(properties, "span-1/*")
             | "WriteOurs" >> beam.io.WriteToTFRecord(str(tmp_path / "ours")))
    theirs, ours = (collections.Counter(canonical(r.numpy()) for r in tf.data.TFRecordDataset(
        [str(p) for p in tmp_path.glob(f"{name}-*")])) for name in ("theirs", "ours"))
    assert sum(ours.values()) == rows
    assert ours == theirs


def test_a_null_or_empty_cell_writes_an_empty_feature_that_reads_as_missing():
    table = pa.table({contract.USER_ID: ["u1"], contract.STATION_ID: pa.array([None], pa.string()),
                      contract.LISTEN_MS: pa.array([None], pa.int64()), contract.FEEDBACK: [""]})
    encode = EncodeTable()
    encode.setup()
    (record,) = list(encode.process(table))
    example = tf.train.Example.FromString(record)
    assert canonical(record) == ((contract.USER_ID, (b"u1",)),)  # null and '' cells: empty features
    raw = example_to_raw(example)
    assert raw.get(contract.STATION_ID) is None and raw.get(contract.LISTEN_MS) is None


def test_a_zero_stays_a_zero():
    """TFX's dict_to_example drops every falsy value; a 0 ms track must still reach absurd_track_ms."""
    table = pa.table({contract.USER_ID: ["u1"], contract.TRACK_ID: ["t"], contract.TIMESTAMP_MS: [T0],
                      contract.LISTEN_MS: [0], contract.TRACK_MS: [0]})
    encode = EncodeTable()
    encode.setup()
    (record,) = list(encode.process(table))
    raw = example_to_raw(tf.train.Example.FromString(record))
    assert raw[contract.LISTEN_MS] == 0
    assert contract.validate_row(raw).reason == contract.absurd(contract.TRACK_MS)
