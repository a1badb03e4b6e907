"""Smoke test of `python -m benchmarks.labeler` at a tiny size, in-process only."""
from __future__ import annotations

import json

import tensorflow as tf

from benchmarks import labeler
from schema import contract

RUN_FIELDS = {
    "mode", "workers", "beam_pipeline_args", "wall_s", "events_per_s", "peak_rss_mb", "peak_rss_self_mb",
    "peak_rss_children_mb", "rss_before_mb", "peak_processes", "rss_samples",
    "rss_sample_interval_effective_s", "examples", "valid_plays", "users",
    "quarantined", "capped_users", "loadavg_before", "loadavg_after", "output_dir",
}
REPORT_FIELDS = {
    "benchmark", "created_utc", "sizes", "input", "imports_s", "preparation_s", "labeling_params",
    "memory_measurement", "environment", "loadavg", "runs", "throughput_ratio", "examples_match",
    "feedback_stats_identical",
}


def test_tiny_in_process_run_writes_a_complete_report(tmp_path, capsys):
    out = tmp_path / "bench"
    assert labeler.main(["--events", "3000", "--users", "60", "--tracks", "400", "--days", "3",
                         "--workers", "1", "--shards", "2", "--out", str(out)]) == 0

    report = json.loads((out / labeler.RESULT_FILENAME).read_text())
    assert set(report) == REPORT_FIELDS
    assert report["sizes"] == {"events": 3000, "events_requested": 3000, "users": 60, "tracks": 400, "days": 3,
                               "seed": 0, "shards": 2}
    assert {"apache-beam", "tfx", "tensorflow", "cpu_count", "python"} <= set(report["environment"])
    assert len(report["loadavg"]["at_start"]) == 3
    assert report["throughput_ratio"] == {}
    assert report["examples_match"] is True
    (run,) = report["runs"]
    assert set(run) == RUN_FIELDS
    assert run["mode"] == "in_memory" and run["workers"] == 1
    assert run["wall_s"] > 0 and run["events_per_s"] > 0 and run["peak_rss_mb"] >= run["rss_before_mb"] > 0
    assert run["rss_samples"] >= 2
    assert list(run["examples"]) == list(contract.SPLITS) and sum(run["examples"].values()) > 0
    assert run["valid_plays"] == 3000 and run["quarantined"] == {}
    assert "events/s" in capsys.readouterr().out


def test_written_examples_are_what_example_gen_would_write(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({
        contract.USER_ID: ["u1", "u2"], contract.TRACK_ID: ["t1", "t2"], contract.STATION_ID: ["st1", ""],
        contract.TIMESTAMP_MS: [1_767_225_600_000, 1_767_225_600_001], contract.LISTEN_MS: [5_000, 200_000],
        contract.TRACK_MS: [200_000, 210_000], contract.FEEDBACK: ["thumb_up", ""], contract.ARTIST_ID: ["a1", "a2"],
    })
    (path,) = labeler.write_examples(frame, tmp_path / "Split-events", shards=1)
    records = [tf.train.Example.FromString(r.numpy())
               for r in tf.data.TFRecordDataset([str(path)], compression_type="GZIP")]
    first, second = (r.features.feature for r in records)
    assert set(first) == set(contract.COLUMNS)
    assert set(second) == set(contract.COLUMNS) - {contract.STATION_ID, contract.FEEDBACK}  # empty cells left out
    assert first[contract.FEEDBACK].bytes_list.value == [b"thumb_up"]
    assert second[contract.USER_ID].bytes_list.value == [b"u2"]
    assert second[contract.TIMESTAMP_MS].int64_list.value == [1_767_225_600_001]
    assert second[contract.TRACK_MS].int64_list.value == [210_000]
