"""Settings parse strictly, and the span selection becomes the ExampleGen configs it should."""
from __future__ import annotations

import pytest

from listening_logs import spans
from pipeline import configs
from pipeline.pipeline import detect_input_format, example_gen_configs
from tests.conftest import random_log


def test_overrides_are_typed():
    config = configs.with_overrides(
        configs.PipelineConfig(), ["spans=2-4", "fail_on_anomalies=yes", "beam_direct_num_workers=2"]
    )
    assert (config.spans, config.fail_on_anomalies, config.beam_direct_num_workers) == ("2-4", True, 2)
    assert "--direct_num_workers=2" in config.beam_pipeline_args()
    assert config.beam_pipeline_args(["--runner=FlinkRunner"])[-1] == "--runner=FlinkRunner"


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("nope=1", "unknown setting 'nope'"),
        ("spans", "key=value"),
        ("beam_direct_num_workers=two", "expected int"),
        ("fail_on_anomalies=maybe", "true or false"),
        ("spans=last", "'latest', 'N' or 'A-B'"),
        ("input_format=json", "auto, csv or parquet"),
        ("beam_direct_num_workers=0", ">= 1"),
    ],
)
def test_bad_overrides_say_what_to_fix(assignment, message):
    with pytest.raises(ValueError, match=message):
        configs.with_overrides(configs.PipelineConfig(), [assignment])


def test_latest_span_reads_one_split_without_hash_splitting():
    input_config, range_config, output_config = example_gen_configs("latest")
    assert [s.pattern for s in input_config.splits] == ["span-{SPAN}/*"]
    assert range_config is None
    assert [(s.name, s.hash_buckets) for s in output_config.split_config.splits] == [("events", 1)]


def test_single_span_uses_static_range():
    _, range_config, _ = example_gen_configs("5")
    assert (range_config.static_range.start_span_number, range_config.static_range.end_span_number) == (5, 5)


def test_span_range_becomes_one_split_per_span():
    input_config, range_config, output_config = example_gen_configs("2-4")
    assert [(s.name, s.pattern) for s in input_config.splits] == [
        ("span_2", "span-2/*"), ("span_3", "span-3/*"), ("span_4", "span-4/*"),
    ]
    assert range_config is None and output_config is None


def test_input_format_detection(tmp_path):
    with pytest.raises(FileNotFoundError, match="no span-\\* folders"):
        detect_input_format(tmp_path)
    spans.write_spans(random_log(50, days=1), tmp_path, fmt="parquet")
    assert detect_input_format(tmp_path) == "parquet"
    spans.write_spans(random_log(50, days=2), tmp_path, fmt="csv")
    with pytest.raises(ValueError, match="only .csv or only .parquet"):
        detect_input_format(tmp_path)


def test_demo_refuses_a_folder_it_did_not_write(tmp_path):
    from pipeline import demo

    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(SystemExit, match="not written by the demo"):
        demo.prepare_out_dir(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    fresh = tmp_path / "demo"
    demo.prepare_out_dir(fresh)
    (fresh / "data").mkdir()
    demo.prepare_out_dir(fresh)
    assert not (fresh / "data").exists() and (fresh / demo.MARKER).is_file()
