"""FeedbackLabeler and Transform as real TFX components in a LocalDagRunner run, in-process and with 2 workers.

The in-process run is tests/conftest.py's `hand_log_run` (the whole pipeline); the two-worker run stops after
Transform, the last Beam stage, since what it must match is the Beam stages' output."""
from __future__ import annotations

import pathlib

import pytest
import tensorflow as tf
import tensorflow_transform as tft

from listening_logs import spans
from models import features
from pipeline import run_outputs
from schema import contract
from tests.hand_log_runs import hand_log, labelled, run_through
from tests.test_feedback_labeler_executor import read_split, strings

pytestmark = pytest.mark.pipeline


def test_labeler_in_pipeline_writes_sequences_and_stats(hand_log_run):
    examples = labelled(hand_log_run)
    assert {split: sorted(row[2][0] for row in rows) for split, rows in examples.items()} == {
        "train": ["a", "e", "p"], "eval": ["q", "y"], "test": ["k"],
    }
    stats = run_outputs.read_feedback_stats(hand_log_run.outputs["FeedbackLabeler"]["feedback_stats"][0])
    assert stats["quarantined"] == {"missing_user_id": 1, "unknown_feedback": 1}
    assert stats["examples"] == {"train": 3, "eval": 2, "test": 1}
    # ExampleValidator reported the same rows without stopping the run.
    assert {a.feature for a in hand_log_run.anomalies} >= {contract.FEEDBACK}


def test_transform_ids_round_trip_to_track_strings(hand_log_run):
    graph_uri = hand_log_run.outputs["Transform"]["transform_graph"][0]
    transformed_uri = hand_log_run.outputs["Transform"]["transformed_examples"][0]
    tf_transform_output = tft.TFTransformOutput(graph_uri)
    tokens, counts = features.read_track_frequencies(tf_transform_output)
    train = read_split(hand_log_run.outputs["FeedbackLabeler"]["labeled_examples"][0], contract.TRAIN)
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
    test_example = read_split(hand_log_run.outputs["FeedbackLabeler"]["labeled_examples"][0], contract.TEST)[0]
    expected = [t if t in tokens else "<oov>" for t in strings(test_example, contract.EX_HISTORY_TRACK_IDS)]
    assert history == expected
    target = int(row[features.TARGET_TRACK_ID_XF].numpy())
    assert target == features.track_vocab_size(tf_transform_output)  # 'k' is never seen in train: OOV


def test_two_worker_processes_give_the_same_examples(hand_log_run, tmp_path):
    spans.write_spans(hand_log(), tmp_path / "data")
    result = run_through(tmp_path / "data", tmp_path / "root",
                         extra_settings=["beam_direct_running_mode=multi_processing", "beam_direct_num_workers=2"])
    assert labelled(result) == labelled(hand_log_run)
    stats = run_outputs.read_feedback_stats(result.outputs["FeedbackLabeler"]["feedback_stats"][0])
    expected = run_outputs.read_feedback_stats(hand_log_run.outputs["FeedbackLabeler"]["feedback_stats"][0])
    assert stats == expected
    assert "Transform" in result.outputs
