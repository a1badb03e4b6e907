"""FeedbackLabeler and Transform as real TFX components in a LocalDagRunner run, in-process and with 2 workers."""
from __future__ import annotations

import pathlib

import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from listening_logs import spans
from models import features
from pipeline import configs, local_runner, run_outputs
from schema import contract
from tests.test_feedback_labeler_executor import MIN, PLAYS, T0, read_split, strings

pytestmark = pytest.mark.pipeline

SETTINGS = [f"eval_cutoff={T0 + 50 * MIN}", f"test_cutoff={T0 + 92 * MIN}", "max_history=3",
            "hard_negative_window_ms=600000", "epochs=2", "serving_top_k=1", "serving_max_exclusions=1"]
"""The hand-written log's examples hold five tracks: K + E + max_history must fit in them."""


def hand_log() -> pd.DataFrame:
    """The executor test's plays as a CSV log, plus rows that break the contract."""
    rows = [
        {contract.USER_ID: u, contract.TRACK_ID: t, contract.STATION_ID: s, contract.TIMESTAMP_MS: T0 + minutes * MIN,
         contract.LISTEN_MS: listen, contract.TRACK_MS: 200_000, contract.FEEDBACK: feedback}
        for u, t, s, minutes, listen, feedback in PLAYS
    ]
    rows.append({contract.USER_ID: "", contract.TRACK_ID: "t", contract.TIMESTAMP_MS: T0})
    rows.append({contract.USER_ID: "u9", contract.TRACK_ID: "t", contract.TIMESTAMP_MS: T0, contract.FEEDBACK: "meh"})
    return pd.DataFrame(rows)


def labelled(result: local_runner.RunResult) -> dict[str, list[tuple]]:
    """Every labelled example as a comparable tuple, per split, in a stable order."""
    uri = result.outputs["FeedbackLabeler"]["labeled_examples"][0]
    keys = contract.EXAMPLE_SCALAR_FEATURES[:-1] + contract.EXAMPLE_LIST_FEATURES
    return {
        split: sorted(tuple(tuple(strings(e, key)) for key in keys) for e in read_split(uri, split))
        for split in contract.SPLITS
    }


@pytest.fixture(scope="module")
def in_process_run(tmp_path_factory) -> local_runner.RunResult:
    tmp = tmp_path_factory.mktemp("in_process")
    spans.write_spans(hand_log(), tmp / "data")
    config = configs.with_overrides(configs.PipelineConfig(), SETTINGS)
    return local_runner.run(tmp / "data", tmp / "root", config)


def test_labeler_in_pipeline_writes_sequences_and_stats(in_process_run):
    examples = labelled(in_process_run)
    assert {split: sorted(row[2][0] for row in rows) for split, rows in examples.items()} == {
        "train": ["a", "e", "p"], "eval": ["q", "y"], "test": ["k"],
    }
    stats = run_outputs.read_feedback_stats(in_process_run.outputs["FeedbackLabeler"]["feedback_stats"][0])
    assert stats["quarantined"] == {"missing_user_id": 1, "unknown_feedback": 1}
    assert stats["examples"] == {"train": 3, "eval": 2, "test": 1}
    # ExampleValidator reported the same rows without stopping the run.
    assert {a.feature for a in in_process_run.anomalies} >= {contract.FEEDBACK}


def test_transform_ids_round_trip_to_track_strings(in_process_run):
    graph_uri = in_process_run.outputs["Transform"]["transform_graph"][0]
    transformed_uri = in_process_run.outputs["Transform"]["transformed_examples"][0]
    tf_transform_output = tft.TFTransformOutput(graph_uri)
    tokens, counts = features.read_track_frequencies(tf_transform_output)
    train = read_split(in_process_run.outputs["FeedbackLabeler"]["labeled_examples"][0], contract.TRAIN)
    occurrences = [
        track for e in train
        for key in (contract.EX_TARGET_TRACK_ID, contract.EX_HISTORY_TRACK_IDS, contract.EX_HARD_NEGATIVE_TRACK_IDS)
        for track in strings(e, key)
    ]
    assert int(counts.sum()) == len(occurrences)
    assert dict(zip(tokens, counts.tolist())) == {t: occurrences.count(t) for t in set(occurrences)}

    spec = tf_transform_output.transformed_feature_spec()
    files = [str(p) for p in pathlib.Path(transformed_uri, "Split-test").glob("*.gz")]
    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    (row,) = [tf.io.parse_single_example(r, spec) for r in records]
    history = [tokens[i] if i < len(tokens) else "<oov>" for i in tf.sparse.to_dense(row[features.HISTORY_TRACK_IDS_XF]).numpy()]
    test_example = read_split(in_process_run.outputs["FeedbackLabeler"]["labeled_examples"][0], contract.TEST)[0]
    expected = [t if t in tokens else "<oov>" for t in strings(test_example, contract.EX_HISTORY_TRACK_IDS)]
    assert history == expected
    target = int(row[features.TARGET_TRACK_ID_XF].numpy())
    assert target == features.track_vocab_size(tf_transform_output)  # 'k' is never seen in train: OOV


def test_two_worker_processes_give_the_same_examples(in_process_run, tmp_path):
    spans.write_spans(hand_log(), tmp_path / "data")
    config = configs.with_overrides(
        configs.PipelineConfig(),
        SETTINGS + ["beam_direct_running_mode=multi_processing", "beam_direct_num_workers=2"],
    )
    result = local_runner.run(tmp_path / "data", tmp_path / "root", config)
    assert labelled(result) == labelled(in_process_run)
    stats = run_outputs.read_feedback_stats(result.outputs["FeedbackLabeler"]["feedback_stats"][0])
    expected = run_outputs.read_feedback_stats(in_process_run.outputs["FeedbackLabeler"]["feedback_stats"][0])
    assert stats == expected
    assert "Transform" in result.outputs
