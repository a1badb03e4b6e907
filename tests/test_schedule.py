"""pipeline.schedule against a fake KFP API on loopback, with the real kfp.Client and a real TFX-compiled spec."""
from __future__ import annotations

import json
import pathlib
import socket
from typing import Any, Iterator

import kfp
import pytest

from pipeline import schedule
from tests.kfp_fake_server import EXPERIMENTS, RECURRING_RUNS, FakeKfpApi

pytestmark = pytest.mark.filterwarnings("ignore:This client only works:FutureWarning")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PIPELINE_NAME = "tiny-music"
PIPELINE_ROOT = "gs://bucket/root"
IMAGE = "example.com/music:1"
COMPILED_SCHEMA = str(REPO_ROOT / "schema" / "listening_events.pbtxt")
OVERRIDE_SCHEMA = "/pipeline/schema/labeled_examples.pbtxt"


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A real KubeflowV2DagRunner output: one ImportSchemaGen whose schema_file is a runtime parameter."""
    # The modules behind tfx.v1's names: `from tfx import v1` costs ~10 s more of imports.
    from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
    from tfx.orchestration import data_types, pipeline
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as v2

    schema_file = data_types.RuntimeParameter(name="schema_file", ptype=str)
    tiny = pipeline.Pipeline(
        pipeline_name=PIPELINE_NAME, pipeline_root=PIPELINE_ROOT, components=[ImportSchemaGen(schema_file=schema_file)]
    )
    path = tmp_path_factory.mktemp("spec") / "tiny.json"
    config = v2.KubeflowV2DagRunnerConfig(default_image=IMAGE, use_pipeline_spec_2_1=True)
    v2.KubeflowV2DagRunner(config=config, output_filename=str(path)).run(
        tiny, parameter_values={"schema_file": COMPILED_SCHEMA}, write_out=True
    )
    return path


@pytest.fixture(autouse=True)
def no_user_kfp_context(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kfp.Client reads a namespace from ~/.config/kfp/context.json; the tests must not see the user's."""
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))


@pytest.fixture
def api() -> Iterator[FakeKfpApi]:
    with FakeKfpApi() as fake:
        yield fake


def run_main(spec: pathlib.Path, host: str, *extra: str) -> int:
    return schedule.main(["--spec", str(spec), "--cron", "0 3 * * *", "--host", host, *extra])


def only_recurring_run(api: FakeKfpApi) -> dict[str, Any]:
    calls = api.calls("POST", RECURRING_RUNS)
    assert len(calls) == 1, api.requests
    assert not api.unhandled(), api.unhandled()
    return calls[0].body


def test_creates_one_recurring_run_with_the_body_the_api_expects(
    spec_file: pathlib.Path, api: FakeKfpApi, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(spec_file, api.host, "--param", f"schema_file={OVERRIDE_SCHEMA}") == 0

    created = api.calls("POST", EXPERIMENTS)
    assert [c.body["display_name"] for c in created] == [PIPELINE_NAME]
    assert len(api.experiments) == 1
    experiment_id = next(iter(api.experiments))
    body = only_recurring_run(api)
    compiled = json.loads(spec_file.read_text())
    assert body["pipeline_spec"] == compiled["pipelineSpec"]
    assert body["pipeline_spec"]["deploymentSpec"]["executors"]["ImportSchemaGen_executor"]["container"]["image"] == IMAGE
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert body["max_concurrency"] == 1
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["experiment_id"] == experiment_id
    assert body["display_name"] == f"{PIPELINE_NAME} daily"
    assert body["runtime_config"] == {"pipeline_root": PIPELINE_ROOT, "parameters": {"schema_file": OVERRIDE_SCHEMA}}
    assert "pipeline_version_reference" not in body

    run_id = next(iter(api.recurring_runs))
    out = capsys.readouterr().out
    assert f"recurring run id: {run_id}" in out
    assert f"recurring run name: {PIPELINE_NAME} daily" in out


def test_compiled_parameter_values_are_sent_when_not_overridden(spec_file: pathlib.Path, api: FakeKfpApi) -> None:
    """KFP refuses a run that leaves a declared parameter unset, so the compiled value must travel along."""
    assert run_main(spec_file, api.host) == 0
    assert only_recurring_run(api)["runtime_config"]["parameters"] == {"schema_file": COMPILED_SCHEMA}


def test_options_reach_the_request(spec_file: pathlib.Path, api: FakeKfpApi) -> None:
    code = run_main(
        spec_file, api.host, "--experiment", "nightly", "--name", "retrain", "--max-concurrency", "3",
        "--catchup", "--disable", "--pipeline-root", "gs://other/root",
    )
    assert code == 0
    body = only_recurring_run(api)
    assert (body["display_name"], body["max_concurrency"], body["no_catchup"], body["mode"]) == ("retrain", 3, False, "DISABLE")
    assert body["runtime_config"]["pipeline_root"] == "gs://other/root"
    assert [e["display_name"] for e in api.experiments.values()] == ["nightly"]


def test_an_existing_experiment_is_reused(spec_file: pathlib.Path, api: FakeKfpApi) -> None:
    api.add_experiment("other")
    existing = api.add_experiment(PIPELINE_NAME)
    assert run_main(spec_file, api.host) == 0
    assert api.calls("POST", EXPERIMENTS) == []
    assert only_recurring_run(api)["experiment_id"] == existing["experiment_id"]


@pytest.mark.parametrize(
    ("written", "sent"),
    [("0 3 * * *", "0 0 3 * * *"), ("*/15 9-17 * * MON-FRI", "0 */15 9-17 * * MON-FRI"), ("30 0 3 * * *", "30 0 3 * * *")],
)
def test_kfp_cron_adds_the_seconds_field(written: str, sent: str) -> None:
    assert schedule.kfp_cron(written) == sent


@pytest.mark.parametrize(
    ("cron", "says"),
    [("0 3 * *", "4 fields"), ("0 0 3 * * * 2026", "7 fields"), ("@daily", "1 fields"), ("0 3 * * ;", "not cron syntax")],
)
def test_bad_cron_is_refused_before_any_request(
    cron: str, says: str, spec_file: pathlib.Path, api: FakeKfpApi, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(schedule.ScheduleError, match=says):
        schedule.kfp_cron(cron)
    assert schedule.main(["--spec", str(spec_file), "--cron", cron, "--host", api.host]) == 2
    assert says in capsys.readouterr().err
    assert api.requests == []


def test_a_refusing_server_makes_a_non_zero_exit_with_its_message(
    spec_file: pathlib.Path, api: FakeKfpApi, capsys: pytest.CaptureFixture[str]
) -> None:
    message = "Failed to create a recurring run: quota of scheduled workflows exceeded in namespace kubeflow"
    api.fail("POST", RECURRING_RUNS, 400, message)
    assert run_main(spec_file, api.host) == 1
    captured = capsys.readouterr()
    assert message in captured.err and "HTTP 400" in captured.err
    assert "recurring run id" not in captured.out
    assert api.recurring_runs == {}


def test_an_unreachable_host_is_reported(spec_file: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert run_main(spec_file, f"http://127.0.0.1:{port}") == 1
    assert "cannot reach the KFP API" in capsys.readouterr().err


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "not found"),
        ("{not json", "is not valid JSON"),
        ('{"pipelineSpec": [1]}', "not a compiled Kubeflow PipelineJob"),
        ('{"displayName": "x"}', "not a compiled Kubeflow PipelineJob"),
    ],
)
def test_missing_or_malformed_spec_is_named(
    content: str | None, says: str, tmp_path: pathlib.Path, api: FakeKfpApi, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "spec.json"
    if content is not None:
        write(path, content)
    assert run_main(path, api.host) == 2
    err = capsys.readouterr().err
    assert str(path) in err and says in err
    assert api.requests == []


def test_schema_2_0_specs_are_refused_with_the_fix(spec_file: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """The KFP backend only accepts schema 2.1.0; TFX writes 2.0.0 unless told otherwise."""
    job = json.loads(spec_file.read_text())
    job["pipelineSpec"]["schemaVersion"] = "2.0.0"
    with pytest.raises(schedule.ScheduleError, match=r"use_pipeline_spec_2_1=True"):
        schedule.load_spec(write(tmp_path / "old.json", json.dumps(job)))


def test_parameters_are_checked_against_the_spec_and_typed(spec_file: pathlib.Path, api: FakeKfpApi) -> None:
    with pytest.raises(schedule.ScheduleError, match=r"no such parameter \(declared: schema_file\)"):
        schedule.parse_params(["span=3"], schedule.load_spec(spec_file).parameter_types)
    with pytest.raises(schedule.ScheduleError, match="KEY=VALUE"):
        schedule.parse_params(["schema_file"], {"schema_file": "STRING"})
    types = {"n": "NUMBER_INTEGER", "x": "NUMBER_DOUBLE", "b": "BOOLEAN", "l": "LIST", "s": "STRING"}
    values = schedule.parse_params(["n=5", "x=0.5", "b=False", "l=[1, 2]", "s=a=b"], types)
    assert values == {"n": 5, "x": 0.5, "b": False, "l": [1, 2], "s": "a=b"}
    with pytest.raises(schedule.ScheduleError, match="NUMBER_INTEGER"):
        schedule.parse_params(["n=five"], types)
    assert run_main(spec_file, api.host, "--param", "span=3") == 2
    assert api.requests == []


def test_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        schedule.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--spec", "--cron", "--host", "--experiment", "--name", "--namespace", "--max-concurrency",
                   "--catchup", "--no-catchup", "--disable", "--param", "--pipeline-root", "--existing-token"):
        assert option in out
