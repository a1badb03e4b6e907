"""Daily scheduled runs on real TFX: a new span arrives, the run reads it with its training window, the Trainer
warm-starts from the last blessed model, and a run killed during Trainer resumes from TFX's cache."""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from listening_logs import spans
from experiments import training
from models import export_format
from pipeline import configs, local_runner
from schema import span_folders
from tests.conftest import REPO_ROOT, random_log

pytestmark = pytest.mark.pipeline
SETTINGS = [
    "spans=latest", "window_spans=2", "warm_start=true", "positive_policy=like+listen", "epochs=6", "patience=6",
    "serving_top_k=5", "serving_max_exclusions=2", "max_history=5",
    # Blessing floors off: these runs are about scheduling, not model quality.
    "min_pairwise_accuracy=0", "max_regression=1", "min_ann_recall=0", "most_popular_tolerance=1",
]
RUNNING = 2
"""MLMD's Execution.RUNNING."""
KILL_DEADLINE_S = 600


@dataclasses.dataclass(frozen=True)
class ScheduledRuns:
    first: local_runner.RunResult
    resumed: local_runner.RunResult
    killed_trainer_states: list[int]
    root: pathlib.Path


def trainer_executions(metadata: pathlib.Path) -> list[tuple[int, int]]:
    """(execution id, state) of every Trainer execution, read while another process writes the store."""
    with sqlite3.connect(f"file:{metadata}?mode=ro", uri=True, timeout=30) as connection:
        return connection.execute(
            "SELECT e.id, e.last_known_state FROM Execution e JOIN Type t ON e.type_id = t.id "
            "WHERE t.name LIKE '%.Trainer' ORDER BY e.id").fetchall()


def run_and_kill_during_trainer(data: pathlib.Path, root: pathlib.Path, before: set[int]) -> list[int]:
    """Starts the local runner in a child process and SIGKILLs it once a new Trainer execution is running."""
    command = [sys.executable, "-m", "pipeline.local_runner", "--data", str(data), "--root", str(root),
               *(part for setting in SETTINGS for part in ("--set", setting))]
    with open(root / "killed_run.log", "w") as log:
        child = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + KILL_DEADLINE_S
    try:
        while time.monotonic() < deadline:
            assert child.poll() is None, f"the run ended (status {child.returncode}) before its Trainer started"
            try:
                running = [eid for eid, state in trainer_executions(root / configs.METADATA_FILE)
                           if eid not in before and state == RUNNING]
            except sqlite3.OperationalError:  # the store is locked by the writer or not created yet: poll again
                running = []
            if running:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=60)
                return [state for eid, state in trainer_executions(root / configs.METADATA_FILE) if eid not in before]
            time.sleep(0.2)
        raise AssertionError(f"no Trainer started within {KILL_DEADLINE_S} s")
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=60)


@pytest.fixture(scope="module")
def scheduled_runs(tmp_path_factory) -> ScheduledRuns:
    work = tmp_path_factory.mktemp("scheduled")
    written = work / "written"
    spans.write_spans(random_log(1400, days=2, seed=5), written)
    data, root = work / "data", work / "root"
    data.mkdir()
    config = configs.with_overrides(configs.PipelineConfig(), SETTINGS)

    shutil.copytree(span_folders.folder(written, 1), span_folders.folder(data, 1))  # day 1
    first = local_runner.run(data, root, config)

    # day 2 arrives; the scheduled run dies in Trainer
    shutil.copytree(span_folders.folder(written, 2), span_folders.folder(data, 2))
    before = {eid for eid, _ in trainer_executions(root / configs.METADATA_FILE)}
    killed_states = run_and_kill_during_trainer(data, root, before)

    resumed = local_runner.run(data, root, config)  # started again
    return ScheduledRuns(first, resumed, killed_states, root)


def model_config(result: local_runner.RunResult) -> dict:
    model_uri = result.outputs["Trainer"]["model"][0]
    export = pathlib.Path(export_format.exported_model_dir(model_uri))
    return json.loads((export / export_format.MODEL_CONFIG_FILE).read_text())


def test_first_run_reads_span_1_trains_cold_and_is_pushed(scheduled_runs):
    first = scheduled_runs.first
    assert first.spans == [1]
    assert model_config(first)["warm_start"] is None
    assert all(first.pushed.values()), first.pushed


def test_killed_run_died_inside_trainer(scheduled_runs):
    assert scheduled_runs.killed_trainer_states == [RUNNING]


def test_resumed_run_reuses_finished_steps_and_reads_the_new_span_with_its_window(scheduled_runs):
    states = scheduled_runs.resumed.states
    for component in ("ExampleGen", "StatisticsGen", "FeedbackLabeler", "Transform"):
        assert states[component] == "CACHED", (component, states)
    assert states["Trainer"] == "COMPLETE"
    assert scheduled_runs.resumed.spans == [1, 2]
    assert all(scheduled_runs.resumed.pushed.values())


def test_resumed_trainer_warm_starts_from_the_first_blessed_model(scheduled_runs):
    warm = model_config(scheduled_runs.resumed)["warm_start"]
    first_model = export_format.exported_model_dir(scheduled_runs.first.outputs["Trainer"]["model"][0])
    assert warm["base_model"] == first_model
    assert warm["tracks_copied"] > 100 and warm["variables_copied"] > 10
    assert warm["tracks_copied"] + warm["tracks_new"] == model_config(scheduled_runs.resumed)["tower"]["num_track_ids"]
    first_offsets = model_config(scheduled_runs.first)[export_format.HISTORY_MEMORY_KEY]
    assert warm["memory_offsets_copied"] == sum(1 for value in first_offsets.values() if value != 0)


def test_report_names_the_spans_and_the_cached_steps(scheduled_runs, capsys):
    local_runner.print_report(scheduled_runs.resumed)
    out = capsys.readouterr().out
    assert "ExampleGen read spans 1, 2" in out
    assert "Reused from TFX's cache" in out and "FeedbackLabeler" in out


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_trainer_workers_train_together_with_multi_worker_mirrored(scheduled_runs, tmp_path):
    """Two worker processes on loopback (TF_CONFIG) train one model; only the chief writes the outputs."""
    outputs = scheduled_runs.resumed.outputs["Transform"]
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    workers = []
    for index in range(2):
        environment = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                                                        "index": index}}))
        log = open(tmp_path / f"worker{index}.log", "w")
        workers.append((subprocess.Popen(
            [sys.executable, "-m", "tests.train_worker", "--transform-graph", outputs["transform_graph"][0],
             "--examples", outputs["transformed_examples"][0], "--out", str(tmp_path / "out"),
             *(part for setting in [*SETTINGS, "epochs=2", "patience=2", "warm_start=false",
                                    "distribution_strategy=multi_worker_mirrored"] for part in ("--set", setting))],
            cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT), log))
    try:
        statuses = [process.wait(timeout=900) for process, _ in workers]
    finally:
        for process, log in workers:
            if process.poll() is None:
                process.kill()
            log.close()
    logs = [(tmp_path / f"worker{index}.log").read_text() for index in range(2)]
    assert statuses == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert all("2 replica(s)" in text for text in logs)
    export = tmp_path / "out" / training.MODEL_DIR
    assert (export / export_format.MODEL_CONFIG_FILE).is_file() and (export / export_format.QUERY_MODEL_DIR).is_dir()
    history = json.loads((tmp_path / "out" / training.RUN_DIR / export_format.TRAINING_HISTORY_FILE).read_text())
    assert len(history["epochs"]) == 2
