"""The compiled Kubeflow spec: it parses with kfp's pipeline_spec_pb2, holds the local pipeline's components
with the same dependencies, and the image, pipeline root, data root and Beam args reach the components."""
from __future__ import annotations

import json
import pathlib

import kfp
import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline import configs, kubeflow_runner, schedule
from pipeline.pipeline import BASELINE_RESOLVER_ID, create_pipeline
from tests.kfp_fake_server import RECURRING_RUNS, FakeKfpApi

IMAGE = "registry.example.com/music-retrieval:test"
PIPELINE_ROOT = "gs://bucket/root"
DATA_ROOT = "gs://bucket/logs"
DATAFLOW_ARGS = ["--project=music-project", "--region=europe-west1", "--temp_location=gs://bucket/tmp"]
BEAM_COMPONENTS = ("ExampleGen", "StatisticsGen", "FeedbackLabeler", "Transform")
RESOLVER_TASK_SUFFIXES = ("-model-blessing-resolver", "-model-resolver")
"""KubeflowV2DagRunner splits the latest-blessed-model Resolver into these two tasks."""
SETTINGS = ["input_format=parquet", "epochs=3"]


@pytest.fixture(scope="module")
def compiled_path(tmp_path_factory) -> pathlib.Path:
    output = tmp_path_factory.mktemp("kfp") / "music_retrieval.json"
    status = kubeflow_runner.main([
        "--output", str(output), "--image", IMAGE, "--data-root", DATA_ROOT, "--pipeline-root", PIPELINE_ROOT,
        "--beam-runner", "DataflowRunner", *(f"--beam-arg={arg}" for arg in DATAFLOW_ARGS),
        *(part for setting in SETTINGS for part in ("--set", setting)),
    ])
    assert status == 0
    assert kubeflow_runner.library_log_path(output).name == "music_retrieval.library.log"
    assert kubeflow_runner.library_log_path(output).is_file(), "TFX's log lines go beside the spec unless --verbose"
    return output


@pytest.fixture(scope="module")
def compiled(compiled_path):
    job = json.loads(compiled_path.read_text())
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    return job, spec


def task_node(task_name: str) -> str:
    """The local pipeline's node id of a compiled task."""
    for suffix in RESOLVER_TASK_SUFFIXES:
        if task_name.endswith(suffix):
            return task_name.removesuffix(suffix)
    return task_name


def constant(spec: pipeline_spec_pb2.PipelineSpec, task: str, parameter: str) -> str:
    value = spec.root.dag.tasks[task].inputs.parameters[parameter].runtime_value.constant
    return value.string_value


def test_spec_has_the_local_pipelines_components_and_dependencies(compiled, tmp_path):
    _, spec = compiled
    local = create_pipeline(
        pipeline_name=configs.PIPELINE_NAME, pipeline_root=str(tmp_path / "root"), data_root=str(tmp_path / "data"),
        config=configs.kubeflow_config(SETTINGS), serving_base=str(tmp_path / "serving"),
    )
    local_edges = {node.id: {upstream.id for upstream in node.upstream_nodes} for node in local.components}
    tasks = spec.root.dag.tasks
    compiled_edges: dict[str, set[str]] = {}
    for name, task in tasks.items():
        compiled_edges.setdefault(task_node(name), set()).update(task_node(d) for d in task.dependent_tasks)
    compiled_edges[BASELINE_RESOLVER_ID].discard(BASELINE_RESOLVER_ID)  # its two halves feed each other
    assert compiled_edges == local_edges
    assert {f"{BASELINE_RESOLVER_ID}{suffix}" for suffix in RESOLVER_TASK_SUFFIXES} <= set(tasks)
    assert "Trainer" in local_edges and BASELINE_RESOLVER_ID in local_edges["Trainer"], "warm start wires base_model"


def test_image_pipeline_root_and_data_reach_the_components(compiled):
    job, spec = compiled
    assert job["runtimeConfig"]["gcsOutputDirectory"] == PIPELINE_ROOT
    assert job["pipelineSpec"]["pipelineInfo"]["name"] == configs.KUBEFLOW_PIPELINE_NAME
    assert spec.schema_version == "2.1.0", "the KFP v2 API server only accepts pipeline spec 2.1.0"
    deployment = job["pipelineSpec"]["deploymentSpec"]["executors"]
    images = {name: executor["container"]["image"] for name, executor in deployment.items() if "container" in executor}
    assert len(images) == len(spec.root.dag.tasks) - len(RESOLVER_TASK_SUFFIXES)
    assert set(images.values()) == {IMAGE}
    assert constant(spec, "ExampleGen", "input_base") == DATA_ROOT
    assert constant(spec, "ImportSchemaGen", "schema_file") == f"{configs.IMAGE_PROJECT_DIR}/schema/listening_events.pbtxt"
    assert constant(spec, "LabeledSchemaGen", "schema_file").startswith(f"{configs.IMAGE_PROJECT_DIR}/schema/")
    pushed_to = {task: constant(spec, task, "push_destination") for task in ("ScannPusher", "BruteForcePusher")}
    assert all(f"{PIPELINE_ROOT}/{configs.SERVING_DIR}/" in destination for destination in pushed_to.values())


def test_beam_args_reach_the_beam_components(compiled):
    job, _ = compiled
    deployment = job["pipelineSpec"]["deploymentSpec"]["executors"]
    for component in BEAM_COMPONENTS:
        args = deployment[f"{component}_executor"]["container"]["args"]
        assert "--runner=DataflowRunner" in args, component
        assert f"--sdk_container_image={IMAGE}" in args, component
        assert all(arg in args for arg in DATAFLOW_ARGS), component


def test_scheduled_settings_reach_the_trainer_and_example_gen(compiled):
    _, spec = compiled
    trainer_config = json.loads(constant(spec, "Trainer", "custom_config"))
    assert trainer_config["distribution_strategy"] == "multi_worker_mirrored"
    assert trainer_config["warm_start"] is True
    assert trainer_config["epochs"] == 3
    window = json.loads(constant(spec, "ExampleGen", "custom_config"))["custom_config"]["value"]
    assert window["window_spans"] == 7 and window["require_every_span"] is False
    assert "{SPAN}" in json.loads(constant(spec, "ExampleGen", "input_config"))["splits"][0]["pattern"]


def test_beam_args_per_runner():
    config = configs.PipelineConfig()
    assert kubeflow_runner.beam_args("DirectRunner", IMAGE, config, []) == config.beam_pipeline_args()
    flink = kubeflow_runner.beam_args("FlinkRunner", IMAGE, config, ["--flink_master=flink:8081"])
    assert flink == ["--runner=FlinkRunner", "--environment_type=DOCKER", f"--environment_config={IMAGE}",
                     "--flink_master=flink:8081"]
    own_image = kubeflow_runner.beam_args("DataflowRunner", IMAGE, config, [*DATAFLOW_ARGS, "--sdk_container_image=x"])
    assert f"--sdk_container_image={IMAGE}" not in own_image and "--sdk_container_image=x" in own_image
    with pytest.raises(ValueError, match="--project"):
        kubeflow_runner.beam_args("DataflowRunner", IMAGE, config, ["--region=r", "--temp_location=gs://t"])


def test_usage_errors(tmp_path, capsys):
    common = ["--output", str(tmp_path / "spec.json"), "--image", IMAGE, "--data-root", DATA_ROOT,
              "--pipeline-root", PIPELINE_ROOT]
    assert kubeflow_runner.main([*common, "--pipeline-name", "music_retrieval", "--set", "input_format=csv"]) == 2
    assert "[a-z0-9]" in capsys.readouterr().err
    assert kubeflow_runner.main(common) == 2
    assert "input_format" in capsys.readouterr().err
    assert not pathlib.Path(tmp_path / "spec.json").exists()
    with pytest.raises(SystemExit) as exit_info:
        kubeflow_runner.main(["--help"])
    assert exit_info.value.code == 0


def test_the_compiled_spec_is_scheduled_as_is(compiled_path, tmp_path, monkeypatch, capsys):
    """The project's own spec through `pipeline.schedule` to a fake KFP API that checks what the real one does."""
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    with FakeKfpApi() as api:
        status = schedule.main(["--spec", str(compiled_path), "--cron", "0 3 * * *", "--host", api.host])
        assert status == 0, capsys.readouterr()
        (request,) = api.calls("POST", RECURRING_RUNS)
    job = json.loads(compiled_path.read_text())
    assert request.body["pipeline_spec"] == job["pipelineSpec"]
    assert request.body["runtime_config"]["pipeline_root"] == PIPELINE_ROOT
    assert request.body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
