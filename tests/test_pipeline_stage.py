"""The first pipeline stage end to end with real TFX components, LocalDagRunner and Beam's DirectRunner."""
from __future__ import annotations

import pathlib

import pytest
import tensorflow as tf

from listening_logs import spans
from pipeline import configs, local_runner
from schema import contract
from tests.conftest import random_log

pytestmark = pytest.mark.pipeline
COMPONENTS = {"ExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "FeedbackLabeler",
              "LabeledSchemaGen", "Transform", "Trainer", "RetrievalEvaluator", "ServingExporter", "ScannPusher",
              "BruteForcePusher"}
SMALL_CATALOG = ["serving_top_k=5", "serving_max_exclusions=2", "max_history=5"]
"""The latest span of these logs holds ~30 tracks: K + E + max_history must fit in the catalog."""
QUICK = configs.with_overrides(configs.PipelineConfig(epochs=2), SMALL_CATALOG)
"""These tests are about the pipeline's wiring; tests/test_training.py judges training itself."""


def split_examples(examples_uri: str) -> dict[str, list[tf.train.Example]]:
    """Every tf.train.Example ExampleGen wrote, per split."""
    found = {}
    for split_dir in sorted(pathlib.Path(examples_uri).glob("Split-*")):
        files = [str(path) for path in split_dir.glob("*.gz")]
        records = tf.data.TFRecordDataset(files, compression_type="GZIP")
        found[split_dir.name.removeprefix("Split-")] = [tf.train.Example.FromString(r.numpy()) for r in records]
    return found


def timestamps(examples: list[tf.train.Example]) -> list[int]:
    return [e.features.feature[contract.TIMESTAMP_MS].int64_list.value[0] for e in examples]


def test_latest_span_in_process(three_day_log, tmp_path):
    data, written = three_day_log
    result = local_runner.run(data, tmp_path / "root", configs.with_overrides(QUICK, ["spans=latest"]))
    assert COMPONENTS <= set(result.outputs)
    examples = split_examples(result.outputs["ExampleGen"]["examples"][0])
    assert list(examples) == ["events"]
    assert len(examples["events"]) == written[3]
    first_ms_of_span_3 = min(timestamps(examples["events"]))
    assert first_ms_of_span_3 // spans.DAY_MS == max(timestamps(examples["events"])) // spans.DAY_MS
    assert (pathlib.Path(result.outputs["StatisticsGen"]["statistics"][0]) / "Split-events").is_dir()
    assert result.anomalies == []


def test_span_range_reads_every_span_into_the_events_split(three_day_log, tmp_path):
    data, written = three_day_log
    config = configs.with_overrides(QUICK, ["spans=1-3"])
    result = local_runner.run(data, tmp_path / "root", config)
    examples = split_examples(result.outputs["ExampleGen"]["examples"][0])
    assert {name: len(rows) for name, rows in examples.items()} == {"events": sum(written.values())}
    days = {t // spans.DAY_MS for t in timestamps(examples["events"])}
    assert len(days) == 3
    assert result.anomalies == []


def test_parquet_log_with_out_of_domain_feedback_fails_on_request(tmp_path, capsys):
    log = random_log(300, days=1, seed=3)
    log.loc[log.index[:5], contract.FEEDBACK] = "meh"
    spans.write_spans(log, tmp_path / "data", fmt="parquet")
    status = local_runner.main(
        ["--data", str(tmp_path / "data"), "--root", str(tmp_path / "root"), "--set", "fail_on_anomalies=true",
         "--set", "epochs=2", *(part for setting in SMALL_CATALOG for part in ("--set", setting))]
    )
    out = capsys.readouterr()
    assert status == local_runner.EXIT_ANOMALIES
    assert "[events] feedback:" in out.out
    assert "ExampleGen.examples" in out.out


def test_bad_setting_is_a_usage_error(three_day_log, tmp_path, capsys):
    data, _ = three_day_log
    status = local_runner.main(["--data", str(data), "--root", str(tmp_path / "root"), "--set", "spans=3-1"])
    assert status == 2
    assert "1 <= A <= B" in capsys.readouterr().err
    assert not (tmp_path / "root").exists()
