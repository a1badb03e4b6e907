"""The evaluator's metrics on hand-computed cases: pairs with ties, ranks, NDCG, disliked-in-top-k, coverage, slices."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from models import evaluation, features, metrics
from schema import contract

LISTEN, SKIP, DISLIKE = (contract.LABELS.index(label) for label in (contract.LISTEN, contract.SKIP, contract.DISLIKE))

# Four test examples over six tracks (ids 0..5). Histories and hard negatives are padded to width 2.
BATCH = {
    features.USER_ID_XF: [b"a", b"b", b"a", b"c"],
    features.TARGET_TRACK_ID_XF: [2, 4, 5, 0],
    features.HISTORY_TRACK_IDS_XF: [[0, 1], [5, 0], [3, 0], [0, 0]],
    features.HISTORY_LABELS_XF: [[LISTEN, DISLIKE], [SKIP, 0], [LISTEN, 0], [0, 0]],
    features.HISTORY_MASK: [[True, True], [True, False], [True, False], [False, False]],
    features.HARD_NEGATIVE_TRACK_IDS_XF: [[3, 0], [1, 3], [0, 0], [0, 0]],
    features.HARD_NEGATIVE_MASK: [[True, False], [True, True], [False, False], [False, False]],
    features.STATION_ID_XF: [0, 0, 0, 0],
}
SCORES = np.array([
    [0.9, 0.8, 0.5, 0.5, 0.1, 0.7],   # a: 0, 1 excluded; 5 beats the target, 3 ties: rank 1.5; pair 2 vs 3 ties
    [0.2, 0.9, 0.3, 0.1, 0.6, 0.95],  # b: 5 excluded; only 1 beats target 4: rank 1; pairs: lose vs 1, win vs 3
    [0.0, 0.99, 0.0, 0.0, 0.0, 0.5],  # a: 3 excluded; track 1 (a disliked it earlier) tops the list: rank 1
    [0.3, 0.1, 0.2, 0.4, 0.0, 0.0],   # c: no history (not covered); track 3 beats target 0: rank 1
])


def collected() -> evaluation.Collected:
    dataset = tf.data.Dataset.from_tensors({key: tf.constant(value) for key, value in BATCH.items()})
    return evaluation.collect(dataset, lambda batch: SCORES, max_k=2)


def test_summary_matches_the_hand_computed_values():
    result = evaluation.summarize(collected(), ks=(1, 2))
    assert result["pairs"] == 3 and result["pairwise_accuracy"] == pytest.approx((0.5 + 1) / 3)
    assert result["recall_at_k"] == {1: 0.0, 2: 1.0}
    ranks = np.array([1.5, 1.0, 1.0, 1.0])
    assert result["ndcg_at_k"][2] == pytest.approx(np.mean(1 / np.log2(ranks + 2)))
    assert result["mrr"] == pytest.approx(np.mean(1 / (ranks + 1)))
    # Top-1 ids: 5, 1, 1, 3. Only row 2's track 1 is disliked by its listener (a's history in row 0).
    assert result["disliked_in_top_k"] == {1: pytest.approx(1 / 4), 2: pytest.approx(1 / 8)}
    assert result["coverage"] == pytest.approx(2 / 3) and result["users"] == 3 and result["examples"] == 4


def test_summary_of_a_selection_and_of_nothing():
    data = collected()
    only_b = evaluation.summarize(data, ks=(1, 2), selection=data.user_ids == b"b")
    assert only_b["pairwise_accuracy"] == 0.5 and only_b["pairs"] == 2 and only_b["mrr"] == 0.5
    empty = evaluation.summarize(data, ks=(1, 2), selection=np.zeros(len(data), dtype=bool))
    assert empty["examples"] == 0 and np.isnan(empty["pairwise_accuracy"]) and np.isnan(empty["coverage"])


def test_top_k_ids_put_excluded_tracks_last():
    scores = np.array([[0.1, -np.inf, 0.3, 0.2]])
    assert metrics.top_k_ids(scores, 3).tolist() == [[2, 3, 0]]
    assert metrics.top_k_ids(scores, 10).shape == (1, 4)


def test_head_tracks_hold_the_requested_share_of_plays():
    counts = np.array([10, 50, 10, 30])
    assert sorted(evaluation.head_track_ids(counts, 0.5).tolist()) == [1]
    assert sorted(evaluation.head_track_ids(counts, 0.6).tolist()) == [1, 3]
    assert evaluation.head_track_ids(np.zeros(3), 0.5).size == 0


def test_slices_cut_by_activity_skips_and_popularity():
    rules = evaluation.SliceRules(cold_max_train_examples=1, heavy_min_train_examples=10,
                                  skip_heavy_min_share=0.5, head_play_share=0.5)
    counts = np.array([100, 1, 1, 1, 1, 1])  # track 0 alone is the head
    slices = evaluation.slice_selections(collected(), rules, {b"a": 12, b"b": 3}, counts)
    assert slices["heavy_users"].tolist() == [True, False, True, False]
    assert slices["warm_users"].tolist() == [False, True, False, False]
    assert slices["cold_users"].tolist() == [False, False, False, True]  # c has no training example
    assert slices["skip_heavy_users"].tolist() == [False, True, False, False]  # b: 1 skip of 1 token
    assert slices["head_tracks"].tolist() == [False, False, False, True]
    assert (slices["tail_tracks"] == ~slices["head_tracks"]).all()


def test_slice_rules_refuse_inconsistent_cuts():
    with pytest.raises(ValueError, match="cold_max_train_examples"):
        evaluation.SliceRules(10, 10, 0.5, 0.5)
    with pytest.raises(ValueError, match="head_play_share"):
        evaluation.SliceRules(1, 10, 0.5, 0.0)


def test_popularity_percentiles_are_mid_ranks_and_rejections_are_profiled():
    from models import evaluation as ev

    counts = np.array([0, 5, 5, 10])  # ids 0..3
    # id 0: nothing below, 1 equal -> 12.5; ids 1, 2: 1 below, 2 equal -> 50; id 3: 3 below -> 87.5
    np.testing.assert_allclose(ev.popularity_percentiles(counts), [12.5, 50.0, 50.0, 87.5])
    collected = ev.Collected(
        user_ids=np.array([b"u", b"v"]), target_ids=np.array([3, 1]), ranks=np.zeros(2), pair_wins=np.zeros(2),
        pair_counts=np.zeros(2), top_ids=np.zeros((2, 1), dtype=np.int64), history_lengths=np.zeros(2),
        history_skips=np.zeros(2), negative_ranks=np.full(2, np.inf),
        negative_ids=np.array([[0, 2], [0, 0]]), negative_mask=np.array([[True, True], [True, False]]),
        disliked={})
    profile = ev.rejection_popularity(collected, counts)
    assert profile["target_popularity_percentile"] == {"mean": 68.75, "median": 68.75, "count": 2}
    # negatives: ids 0, 2 of row 0 and id 0 of row 1 -> 12.5, 50, 12.5
    assert profile["real_negative_popularity_percentile"] == {"mean": 25.0, "median": 12.5, "count": 3}


def test_row_blocks_cover_every_row_once_within_the_budget():
    blocks = metrics.row_blocks(1000, 30_000, elements=100_000)
    assert [b.stop - b.start for b in blocks] == [3] * 333 + [1]
    assert blocks[0].start == 0 and all(a.stop == b.start for a, b in zip(blocks, blocks[1:])) and blocks[-1].stop == 1000
    assert metrics.row_blocks(5, 10_000_000) == [slice(i, i + 1) for i in range(5)]  # at least one row
    assert metrics.row_blocks(0, 10) == []


def test_collect_in_row_blocks_equals_the_whole_matrix_arithmetic():
    """A batch wider than one block (400 x 5,000 scores: two blocks) gives each row what the unblocked
    functions give on the whole matrix, ties included."""
    rng = np.random.default_rng(3)
    rows, tracks = 400, 5_000
    assert len(metrics.row_blocks(rows, tracks)) > 1
    scores = rng.integers(0, 50, (rows, tracks)).astype(np.float32)  # many ties
    batch = {
        features.USER_ID_XF: np.array([b"u%d" % (i % 37) for i in range(rows)]),
        features.TARGET_TRACK_ID_XF: rng.integers(0, tracks, rows),
        features.HISTORY_TRACK_IDS_XF: rng.integers(0, tracks, (rows, 5)),
        features.HISTORY_LABELS_XF: rng.integers(0, 4, (rows, 5)),
        features.HISTORY_MASK: rng.random((rows, 5)) < 0.8,
        features.HARD_NEGATIVE_TRACK_IDS_XF: rng.integers(0, tracks, (rows, 3)),
        features.HARD_NEGATIVE_MASK: rng.random((rows, 3)) < 0.7,
        features.STATION_ID_XF: np.zeros(rows, dtype=np.int64),
    }
    dataset = tf.data.Dataset.from_tensors({key: tf.constant(value) for key, value in batch.items()})
    found = evaluation.collect(dataset, lambda _: scores, max_k=100)
    history, mask = batch[features.HISTORY_TRACK_IDS_XF], batch[features.HISTORY_MASK]
    targets = batch[features.TARGET_TRACK_ID_XF]
    masked = metrics.exclude(scores, targets, history, mask)
    np.testing.assert_array_equal(found.ranks, metrics.ranks_of_targets(masked, targets))
    np.testing.assert_array_equal(np.sort(masked[np.arange(rows)[:, None], found.top_ids], axis=1),
                                  np.sort(-np.sort(-masked, axis=1)[:, :100], axis=1))  # the 100 best scores
    np.testing.assert_array_equal(found.negative_ranks, metrics.best_held_out_negative_ranks(
        masked, batch[features.HARD_NEGATIVE_TRACK_IDS_XF], batch[features.HARD_NEGATIVE_MASK], targets, history, mask))
    quick = evaluation.ranking_and_pairs(dataset, lambda _: scores)
    assert quick["mrr"] == evaluation.summarize(found)["mrr"] and quick["queries"] == rows
