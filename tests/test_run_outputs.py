"""The run report's summaries read the labeler's and the Trainer's files as they are written."""
from __future__ import annotations

import json

from pipeline import run_outputs


def test_feedback_stats_summary_orders_splits_and_policies():
    stats = {
        "valid_plays": 10, "quarantined": {"unknown_feedback": 2},
        "labels": {"train": {"like": 3, "skip": 2}, "test": {"like": 1}},
        "examples": {"eval": 1, "test": 1, "train": 3},
        "coverage_by_input_policy": {
            "all": {"covered_users": 2, "users_with_test_targets": 2, "share": 1.0},
            "positives": {"covered_users": 1, "users_with_test_targets": 2, "share": 0.5},
            "positives+skips": {"covered_users": 2, "users_with_test_targets": 2, "share": 1.0},
        },
        "capped_users": 1, "plays_over_user_cap": 4,
    }
    lines = run_outputs.feedback_stats_summary(stats)
    assert lines[0] == "plays: 10 valid, quarantined 2 {'unknown_feedback': 2}"
    assert lines[1] == "labels: like 4, skip 2"
    assert lines[2] == "examples: train 3, eval 1, test 1"
    assert lines[3] == ("test-user coverage by input policy: positives 1/2 (50.0%), "
                        "positives+skips 2/2 (100.0%), all 2/2 (100.0%)")
    assert "4 older plays of 1 heavy listeners" in lines[4]


def test_training_summary_names_the_best_epoch(tmp_path):
    rows = [
        {"epoch": 1, "wall_seconds": 10.0, "train_seconds_cumulative": 8.0, "examples_per_second": 100.0,
         "eval_pairwise_accuracy": 0.55, "eval_recall_at_10": 0.1, "eval_recall_at_100": 0.3},
        {"epoch": 2, "wall_seconds": 20.0, "train_seconds_cumulative": 14.0, "examples_per_second": 300.0,
         "eval_pairwise_accuracy": 0.60, "eval_recall_at_10": 0.2, "eval_recall_at_100": 0.4},
    ]
    (tmp_path / "history.json").write_text(json.dumps({"epochs": rows}))
    lines = run_outputs.training_summary(str(tmp_path), "history.json")
    assert lines[0] == "2 epochs in 20 s (training 14 s), 300 examples/s after the first epoch"
    assert lines[1] == "best epoch 2: eval pairwise accuracy 0.6000, recall@10 0.2000, recall@100 0.4000"
    rows[0]["eval_early_stopping_value"], rows[1]["eval_early_stopping_value"] = 0.95, 0.90  # what training watched
    (tmp_path / "history.json").write_text(json.dumps({"epochs": rows}))
    lines = run_outputs.training_summary(str(tmp_path), "history.json")
    assert lines[1].startswith("best epoch 1: ")
