"""The Beam stages on a portable cluster (a job service and an external worker pool, separate processes on
127.0.0.1) give exactly what they give in-process: labelled examples, feedback_stats, Transform's vocabulary and
transformed examples.

On the cluster only the components up to Transform run (create_pipeline's real pipeline, in a LocalDagRunner
partial run): the Trainer and after are not Beam stages. The in-process run compared with is the whole pipeline
on the same log, tests/conftest.py's `hand_log_run`, which the labelling tests read too.
"""
from __future__ import annotations

import json
import pathlib
import re

import pytest
import tensorflow as tf
import tensorflow_transform as tft

from listening_logs import spans
from models import features
from pipeline import beam_cluster, local_runner, run_outputs
from schema import contract
from tests.hand_log_runs import hand_log, labelled, run_through

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory) -> pathlib.Path:
    data = tmp_path_factory.mktemp("portable_log") / "data"
    spans.write_spans(hand_log(), data)
    return data


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Started once for the module and stopped however it ends."""
    with beam_cluster.running(tmp_path_factory.mktemp("beam_cluster")) as started:
        yield started


@pytest.fixture(scope="module")
def on_cluster(log_dir, cluster, tmp_path_factory) -> local_runner.RunResult:
    return run_through(log_dir, tmp_path_factory.mktemp("on_cluster") / "root", cluster.beam_args())


def completed_jobs(cluster: beam_cluster.Cluster) -> int:
    text = (pathlib.Path(cluster.log_dir) / "job_service.log").read_text()
    return len(re.findall(r"Completed job in .* with state DONE", text))


def started_workers(cluster: beam_cluster.Cluster) -> int:
    return (pathlib.Path(cluster.log_dir) / "worker_pool.log").read_text().count("Starting worker with command")


def test_every_beam_stage_ran_on_the_cluster(on_cluster, cluster):
    stages = list(on_cluster.states)
    assert {"FeedbackLabeler", "Transform"} <= set(stages)
    # One job per Beam stage reached the job service, and each had an SDK worker from the external pool.
    assert completed_jobs(cluster) == len(stages)
    assert started_workers(cluster) == len(stages)


def test_labelled_examples_and_stats_equal_the_in_process_run(on_cluster, hand_log_run):
    assert labelled(on_cluster) == labelled(hand_log_run)
    assert sum(map(len, labelled(on_cluster).values())) == 6
    stats = [run_outputs.read_feedback_stats(r.outputs["FeedbackLabeler"]["feedback_stats"][0])
             for r in (on_cluster, hand_log_run)]
    assert stats[0] == stats[1]
    assert stats[0]["quarantined"] == {"missing_user_id": 1, "unknown_feedback": 1}


def transformed_records(result: local_runner.RunResult) -> dict[str, list[tuple]]:
    """Each split's transformed examples as sorted (feature, values) tuples: the serialized bytes' field order
    is not fixed, the values are."""
    uri = result.outputs["Transform"]["transformed_examples"][0]
    out = {}
    for split in contract.SPLITS:
        files = sorted(str(p) for p in pathlib.Path(uri, f"Split-{split}").glob("*.gz"))
        examples = [tf.train.Example.FromString(r.numpy())
                    for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
        out[split] = sorted(
            tuple(sorted((key, tuple(f.int64_list.value) + tuple(f.float_list.value) + tuple(f.bytes_list.value))
                         for key, f in e.features.feature.items()))
            for e in examples
        )
    return out


def test_transform_vocabulary_and_examples_equal_the_in_process_run(on_cluster, hand_log_run):
    vocabularies = []
    for result in (on_cluster, hand_log_run):
        output = tft.TFTransformOutput(result.outputs["Transform"]["transform_graph"][0])
        tokens, counts = features.read_track_frequencies(output)
        vocabularies.append(dict(zip(tokens, counts.tolist())))
    assert vocabularies[0] == vocabularies[1]
    assert vocabularies[0]  # the train split's tracks, not an empty file
    records = transformed_records(on_cluster)
    assert records == transformed_records(hand_log_run)
    assert {split: len(rows) for split, rows in records.items()} == {"train": 3, "eval": 2, "test": 1}


def test_cluster_cli_start_stop_leaves_nothing_running(tmp_path, capsys):
    assert beam_cluster.main(["start", "--dir", str(tmp_path)]) == 0
    state = json.loads((tmp_path / beam_cluster.STATE_FILE).read_text())
    assert all(beam_cluster.alive(pid) for pid in state["pids"].values())
    assert beam_cluster.main(["start", "--dir", str(tmp_path)]) == 1  # one cluster per folder
    assert "exists" in capsys.readouterr().err
    assert beam_cluster.main(["args", "--dir", str(tmp_path)]) == 0
    assert f"--environment_config=127.0.0.1:{state['worker_pool_port']}" in capsys.readouterr().out
    assert beam_cluster.main(["stop", "--dir", str(tmp_path)]) == 0
    assert not any(beam_cluster.alive(pid) for pid in state["pids"].values())
    assert not (tmp_path / beam_cluster.STATE_FILE).exists()
    assert beam_cluster.main(["stop", "--dir", str(tmp_path)]) == 1
    assert "no cluster recorded" in capsys.readouterr().err
