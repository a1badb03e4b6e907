"""ExampleGen on Parquet spans writes, a file at a time, the Examples TFX's per-record write path writes."""
from __future__ import annotations

import collections
import pathlib

import apache_beam as beam
import pyarrow.parquet as pq
import tensorflow as tf

from components.span_window import parquet_files
from components.span_window.parquet_batches import ParquetToSerializedExamples
from listening_logs import spans
from pipeline import configs
from pipeline.pipeline import build_example_gen
from schema import span_folders
from tests.conftest import random_log
from tests.test_parquet_batches import canonical


def records(paths: list[pathlib.Path]) -> collections.Counter:
    return collections.Counter(canonical(r.numpy()) for r in tf.data.TFRecordDataset(
        [str(path) for path in paths], compression_type="GZIP" if paths and paths[0].suffix == ".gz" else None))


def test_example_gen_writes_every_parquet_file_as_one_gzip_file_with_the_same_examples(tmp_path, monkeypatch):
    from tfx import v1 as tfx

    data = tmp_path / "data"
    written = spans.write_spans(random_log(600, days=3), data, fmt="parquet")
    for span in written:  # several record batches per file
        path = next((data / span_folders.folder_name(span)).glob("*.parquet"))
        pq.write_table(pq.read_table(path), path, row_group_size=50)
    monkeypatch.setattr(parquet_files, "ROWS_PER_BATCH", 70)
    config = configs.with_overrides(configs.PipelineConfig(), ["spans=1-3", "enable_cache=false"])
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name="parquet-files", pipeline_root=str(tmp_path / "root"),
        components=[build_example_gen(str(data), "parquet", config)], enable_cache=False,
        beam_pipeline_args=config.beam_pipeline_args(),
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "metadata.sqlite"))))
    (examples_dir,) = [path for path in (tmp_path / "root").rglob("Split-events")]
    ours = sorted(examples_dir.iterdir())
    assert [path.name for path in ours] == [parquet_files.output_name(index, 3) for index in range(3)]
    assert not list(examples_dir.parent.glob(parquet_files.STAGING_DIR))

    properties = {"input_base": str(data)}
    with beam.Pipeline() as pipeline:  # the per-table reader, written the way TFX's WriteSplit writes
        _ = ([pipeline | f"Read{span}" >> ParquetToSerializedExamples(properties, f"{span_folders.folder_name(span)}/*")
              for span in written] | beam.Flatten() | beam.io.WriteToTFRecord(str(tmp_path / "tfx"), file_name_suffix=".gz"))
    expected = records(sorted(tmp_path.glob("tfx*.gz")))
    assert sum(expected.values()) == sum(written.values()) == 600
    assert records(ours) == expected
