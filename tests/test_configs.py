"""Settings parse strictly, and the span selection becomes the ExampleGen configs it should."""
from __future__ import annotations

import dataclasses

import pytest
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.utils import proto_utils

from components.span_window import executor as span_window
from listening_logs import spans
from pipeline import configs
from schema import span_folders
from pipeline.pipeline import build_example_gen, detect_input_format
from tests.conftest import random_log


def test_overrides_are_typed():
    config = configs.with_overrides(
        configs.PipelineConfig(), ["spans=2-4", "fail_on_anomalies=yes", "beam_direct_num_workers=2"]
    )
    assert (config.spans, config.fail_on_anomalies, config.beam_direct_num_workers) == ("2-4", True, 2)
    assert "--direct_num_workers=2" in config.beam_pipeline_args()
    assert config.beam_pipeline_args(["--runner=FlinkRunner"])[-1] == "--runner=FlinkRunner"


def test_direct_runs_skip_tfxs_per_executor_package_build_and_other_runners_keep_it():
    from tfx.utils import dependency_utils

    config = configs.PipelineConfig()
    direct = config.beam_pipeline_args(["--direct_running_mode=multi_threading"])
    assert dependency_utils.make_beam_dependency_flags(direct) == direct  # no sdist built, nothing added
    portable = config.beam_pipeline_args(["--runner=PortableRunner", "--job_endpoint=localhost:1"])
    assert not set(configs.IN_PROCESS_WORKER_ARGS) & set(portable)


def test_direct_runs_never_try_the_prism_runner_which_downloads_a_binary(caplog):
    """Beam's DirectRunner tries Prism first (a download from the internet at run time); our args skip it and the
    stage still runs, with its options, on the FnApiRunner."""
    import logging

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.util import assert_that, equal_to

    caplog.set_level(logging.INFO, logger="apache_beam")
    args = configs.PipelineConfig().beam_pipeline_args()
    with beam.Pipeline(options=PipelineOptions(args)) as pipeline:
        assert_that(pipeline | beam.Create([1, 2, 3]) | beam.Map(lambda x: x * 2), equal_to([2, 4, 6]))
    messages = [record.getMessage() for record in caplog.records]
    assert not [message for message in messages if "Prism" in message], messages
    assert type(pipeline.runner).__name__ == "SwitchingDirectRunner"


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


def example_gen_settings(*assignments: str):
    """ExampleGen's input, range and output configs and the window, parsed back from its exec properties."""
    example_gen = build_example_gen("/data", "csv", configs.with_overrides(configs.PipelineConfig(), assignments))
    properties = example_gen.exec_properties

    def parse(key: str, message):
        return proto_utils.json_to_proto(properties[key], message) if properties.get(key) else None

    return (parse("input_config", example_gen_pb2.Input()), parse("range_config", range_config_pb2.RangeConfig()),
            parse("output_config", example_gen_pb2.Output()), span_window.window_config(properties))


def test_latest_span_reads_one_split_without_hash_splitting():
    input_config, range_config, output_config, window = example_gen_settings("spans=latest")
    assert [s.pattern for s in input_config.splits] == [f"{span_folders.folder_name('{SPAN}')}/*"]
    assert range_config is None
    assert [(s.name, s.hash_buckets) for s in output_config.split_config.splits] == [("events", 1)]
    assert (window.window_spans, window.require_every_span, window.input_format) == (1, False, "csv")


def test_by_default_every_span_up_to_the_newest_is_read(tmp_path):
    assert configs.PipelineConfig().spans == configs.ALL_SPANS
    _, range_config, _, window = example_gen_settings()
    assert range_config is None  # ExampleGen resolves the newest span; the window reaches back to span 1
    assert (window.window_spans, window.require_every_span) == (configs.ALL_SPANS_WINDOW, False)
    spans.write_spans(random_log(60, days=3), tmp_path)
    assert span_window.spans_to_read(str(tmp_path), window, 3) == [1, 2, 3]
    with pytest.raises(ValueError, match="already reads every span"):
        configs.with_overrides(configs.PipelineConfig(), ["window_spans=7"])
    kubeflow = configs.kubeflow_config()
    assert (kubeflow.spans, kubeflow.window_spans) == (configs.LATEST_SPAN, 7)


def test_single_span_uses_static_range_and_a_window_looks_back_from_it():
    _, range_config, _, window = example_gen_settings("spans=5", "window_spans=3")
    assert (range_config.static_range.start_span_number, range_config.static_range.end_span_number) == (5, 5)
    assert (window.window_spans, window.require_every_span) == (3, False)


def test_span_range_is_the_last_span_with_a_window_that_must_be_complete():
    input_config, range_config, _, window = example_gen_settings("spans=2-4")
    assert [s.pattern for s in input_config.splits] == [f"{span_folders.folder_name('{SPAN}')}/*"]
    assert range_config.static_range.start_span_number == range_config.static_range.end_span_number == 4
    assert (window.window_spans, window.require_every_span) == (3, True)
    with pytest.raises(ValueError, match="already is the window"):
        configs.with_overrides(configs.PipelineConfig(), ["spans=2-4", "window_spans=2"])
    with pytest.raises(ValueError, match="window_spans must be >= 1"):
        configs.with_overrides(configs.PipelineConfig(), ["spans=latest", "window_spans=0"])


def test_window_reads_the_spans_that_exist_and_fails_on_missing_required_ones(tmp_path):
    spans.write_spans(random_log(60, days=3), tmp_path)
    span_folders.folder(tmp_path, 5).mkdir()
    (span_folders.folder(tmp_path, 5) / "events.csv").write_text("x\n")
    rolling = span_window.WindowConfig("csv", f"{span_folders.folder_name('{SPAN}')}/*", window_spans=7,
                                       require_every_span=False)
    assert span_window.spans_to_read(str(tmp_path), rolling, 5) == [1, 2, 3, 5]
    assert span_window.spans_to_read(str(tmp_path), rolling, 2) == [1, 2]
    with pytest.raises(FileNotFoundError, match=r"span\(s\) \[4\]"):
        span_window.spans_to_read(str(tmp_path), dataclasses.replace(rolling, require_every_span=True), 5)
    with pytest.raises(FileNotFoundError, match="no files for span 6, the one ExampleGen resolved"):
        span_window.spans_to_read(str(tmp_path), rolling, 6)
    with pytest.raises(ValueError, match="SPAN"):
        span_window.WindowConfig("csv", f"{span_folders.folder_name(1)}/*", window_spans=1, require_every_span=False)


def test_remote_data_root_needs_an_explicit_format():
    from pipeline.pipeline import create_pipeline

    with pytest.raises(ValueError, match="input_format=csv"):
        create_pipeline("p", "/root", "gs://bucket/logs", configs.PipelineConfig(), "/serving")


def test_input_format_detection(tmp_path):
    with pytest.raises(FileNotFoundError, match="no span-N folders"):
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
