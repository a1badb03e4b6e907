"""The first pipeline stage end to end with real TFX components, LocalDagRunner and Beam's DirectRunner.

One run of its own (the CLI in a child process); the span-range checks read the shared trained pipeline's run."""
from __future__ import annotations

import pathlib
import subprocess
import sys

import pandas as pd
import pytest
import tensorflow as tf

from listening_logs import spans
from pipeline import library_logs, local_runner
from schema import contract
from schema import span_folders
from tests.conftest import REPO_ROOT, random_log

pytestmark = pytest.mark.pipeline
COMPONENTS = {"ExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "FeedbackLabeler",
              "LabeledSchemaGen", "Transform", "Trainer", "RetrievalEvaluator", "ServingExporter", "ScannPusher",
              "BruteForcePusher"}
QUICK_SETTINGS = ["epochs=2", "serving_top_k=5", "serving_max_exclusions=2", "max_history=5"]
"""These tests are about the pipeline's wiring (tests/test_training.py judges training itself); the latest span of
the log holds ~30 tracks, and K + E + max_history must fit in the catalog."""


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


def test_span_range_reads_every_span_into_the_events_split(trained_pipeline):
    """Read from the shared trained pipeline's run (spans=1-7 over a seven-day log): no run of its own."""
    result = trained_pipeline.result
    assert "spans=1-7" in trained_pipeline.settings
    assert COMPONENTS <= set(result.outputs)
    assert result.spans == [1, 2, 3, 4, 5, 6, 7]
    written = sum(len(pd.read_csv(path)) for path in trained_pipeline.data.glob(f"{span_folders.GLOB}/events.csv"))
    examples = split_examples(result.outputs["ExampleGen"]["examples"][0])
    assert {name: len(rows) for name, rows in examples.items()} == {"events": written}
    assert len({t // spans.DAY_MS for t in timestamps(examples["events"])}) == 7
    assert (pathlib.Path(result.outputs["StatisticsGen"]["statistics"][0]) / "Split-events").is_dir()
    assert result.anomalies == []


def test_latest_parquet_span_with_out_of_domain_feedback_fails_on_request(tmp_path):
    """One run as a user runs it (a process of its own) covers three things: spans=latest reads only the newest
    span, anomalies in a Parquet log stop the exit status with fail_on_anomalies, and the libraries' log lines
    go to ROOT/library.log instead of the terminal (where Beam's stages show no Prism runner attempt: see
    configs.IN_PROCESS_WORKER_ARGS)."""
    log = random_log(900, days=3, seed=3)  # ~300 plays in the newest span, as in the tests this one replaced
    newest_day = log[contract.TIMESTAMP_MS] // spans.DAY_MS == (log[contract.TIMESTAMP_MS] // spans.DAY_MS).max()
    log.loc[log.index[newest_day][:5], contract.FEEDBACK] = "meh"
    written = spans.write_spans(log, tmp_path / "data", fmt="parquet")
    assert sorted(written) == [1, 2, 3]
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.local_runner", "--data", str(tmp_path / "data"), "--root", str(tmp_path / "root"),
         "--set", "spans=latest", "--set", "fail_on_anomalies=true",
         *(part for setting in QUICK_SETTINGS for part in ("--set", setting))],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )
    assert done.returncode == local_runner.EXIT_ANOMALIES, done.stderr[-3000:]
    assert "ExampleGen read spans 3\n" in done.stdout
    assert "[events] feedback:" in done.stdout
    assert "ExampleGen.examples" in done.stdout
    [examples_uri] = (tmp_path / "root").glob("pipeline/ExampleGen/examples/*")
    examples = split_examples(str(examples_uri))
    assert list(examples) == ["events"] and len(examples["events"]) == written[3]
    assert len({t // spans.DAY_MS for t in timestamps(examples["events"])}) == 1
    assert done.stderr.strip() == "error: anomalies found and fail_on_anomalies is set", done.stderr[-3000:]
    library_log = (tmp_path / "root" / library_logs.LOG_FILE).read_text()
    assert "absl" in library_log and "tfx" in library_log, library_log[-3000:]
    assert "apache_beam.runners" in library_log and "Prism" not in library_log  # Beam ran, and tried no download
    assert str(tmp_path / "root" / library_logs.LOG_FILE) in done.stdout


def test_bad_setting_is_a_usage_error(three_day_log, tmp_path, capsys):
    data, _ = three_day_log
    status = local_runner.main(["--data", str(data), "--root", str(tmp_path / "root"), "--set", "spans=3-1"])
    assert status == 2
    assert "1 <= A <= B" in capsys.readouterr().err
    assert not (tmp_path / "root").exists()
