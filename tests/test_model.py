"""The towers, the model's loss wiring under every training set-up, and the exact metrics, on tiny tensors."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import tensorflow as tf

from models import evaluation, features, metrics
from models.towers import TowerConfig, build_towers, recency_positions
from models.trainer import RetrievalModel
from pipeline import configs
from schema import contract

CONFIG = TowerConfig(num_track_ids=12, num_station_ids=4, embedding_dim=8, num_layers=1, num_heads=2, max_history=4,
                     dropout=0.0)


def batch(**changes) -> dict[str, tf.Tensor]:
    """Three rows: a full history, a short one, an empty one; the last row has no hard negative."""
    values = {
        features.HISTORY_TRACK_IDS_XF: [[1, 2, 3, 4], [5, 6, 0, 0], [0, 0, 0, 0]],
        features.HISTORY_LABELS_XF: [[0, 2, 3, 1], [1, 0, 0, 0], [0, 0, 0, 0]],
        features.HISTORY_MASK: [[True] * 4, [True, True, False, False], [False] * 4],
        features.STATION_ID_XF: [1, 0, 3],
        features.TARGET_TRACK_ID_XF: [7, 8, 7],
        features.USER_ID_XF: [b"u1", b"u2", b"u1"],
        features.HARD_NEGATIVE_TRACK_IDS_XF: [[9, 10], [11, 0], [0, 0]],
        features.HARD_NEGATIVE_MASK: [[True, True], [True, False], [False, False]],
    }
    values.update(changes)
    dtypes = {features.HISTORY_MASK: tf.bool, features.HARD_NEGATIVE_MASK: tf.bool, features.USER_ID_XF: tf.string}
    return {key: tf.constant(value, dtype=dtypes.get(key, tf.int64)) for key, value in values.items()}


def test_recency_positions_count_back_from_the_newest_token():
    mask = tf.constant([[True, True, True, False], [True, False, False, False]])
    assert recency_positions(mask).numpy().tolist() == [[2, 1, 0, 0], [0, 0, 0, 0]]


def test_towers_give_unit_vectors_and_ignore_padding():
    query_tower, candidate_tower = build_towers(CONFIG)
    query = query_tower(batch()).numpy()
    assert query.shape == (3, CONFIG.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(query, axis=1), 1.0, rtol=1e-5)
    changed_padding = batch(**{features.HISTORY_TRACK_IDS_XF: [[1, 2, 3, 4], [5, 6, 11, 9], [3, 3, 3, 3]]})
    np.testing.assert_allclose(query_tower(changed_padding).numpy(), query, atol=1e-6)
    changed_real = batch(**{features.HISTORY_TRACK_IDS_XF: [[1, 2, 3, 5], [5, 6, 0, 0], [0, 0, 0, 0]]})
    assert not np.allclose(query_tower(changed_real).numpy()[0], query[0], atol=1e-4)
    candidates = candidate_tower(tf.constant([[1, 2], [3, 4]], tf.int64)).numpy()
    assert candidates.shape == (2, 2, CONFIG.embedding_dim)


def test_unknown_history_labels_act_as_padding():
    query_tower, _ = build_towers(CONFIG)
    unknown = batch(**{features.HISTORY_LABELS_XF: [[0, 2, 3, -1], [1, 0, 0, 0], [0, 0, 0, 0]]})
    short = batch(**{features.HISTORY_MASK: [[True, True, True, False], [True, True, False, False], [False] * 4]})
    np.testing.assert_allclose(query_tower(unknown).numpy(), query_tower(short).numpy(), atol=1e-6)


SETUPS = list(itertools.product([0, 5], [True, False], ["uniform", "popularity"]))


@pytest.mark.parametrize("num_random, hard_in_loss, sampler", SETUPS)
def test_every_training_setup_gives_finite_loss_and_gradients_to_both_towers(num_random, hard_in_loss, sampler):
    params = dataclasses.replace(
        configs.PipelineConfig().training_params(), max_history=4, max_hard_negatives=2, embedding_dim=8,
        num_layers=1, num_random_negatives=num_random, hard_negatives_in_loss=hard_in_loss, sampler=sampler,
        batch_size=3, dropout=0.0,
    )
    counts = np.arange(CONFIG.num_track_ids, dtype=np.int64) % 5
    model = RetrievalModel(CONFIG, params, counts)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(batch(), training=True)
    assert np.isfinite(loss.numpy())
    query_grads = tape.gradient(loss, model.query_tower.trainable_variables)
    assert any(g is not None and np.any(tf.convert_to_tensor(g).numpy() != 0) for g in query_grads)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(batch(), training=True)
    projection = model.candidate_tower.trainable_variables[-2]  # the candidate tower's own Dense kernel
    assert np.any(tape.gradient(loss, projection).numpy() != 0)


def test_hard_negatives_change_the_loss_only_when_used():
    base = dataclasses.replace(configs.PipelineConfig().training_params(), max_history=4, max_hard_negatives=2,
                               embedding_dim=8, num_layers=1, num_random_negatives=0, dropout=0.0, batch_size=3)
    counts = np.ones(CONFIG.num_track_ids, dtype=np.int64)
    tf.keras.utils.set_random_seed(1)
    with_hard = RetrievalModel(CONFIG, base, counts)
    loss_with = with_hard.compute_loss(batch()).numpy()
    without = RetrievalModel(CONFIG, dataclasses.replace(base, hard_negatives_in_loss=False), counts)
    without.compute_loss(batch())  # builds the variables
    without.set_weights(with_hard.get_weights())
    assert without.compute_loss(batch()).numpy() < loss_with


def test_pairwise_accuracy_counts_ties_half():
    accuracy, pairs = metrics.pairwise_accuracy(
        np.array([1.0, 0.5]), np.array([[0.0, 1.0, 9.0], [0.5, 0.0, 0.0]]), np.array([[1, 1, 0], [1, 1, 0]])
    )
    assert pairs == 4 and accuracy == pytest.approx((1 + 0.5 + 0.5 + 1) / 4)
    assert np.isnan(metrics.pairwise_accuracy(np.ones(1), np.ones((1, 1)), np.zeros((1, 1)))[0])


def test_target_ranks_exclude_history_but_never_the_target():
    scores = np.array([[0.9, 0.8, 0.7, 0.1], [0.5, 0.5, 0.5, 0.9]])
    ranks = metrics.target_ranks(
        scores, targets=np.array([2, 1]), exclude_ids=np.array([[0, 2], [3, 1]]), exclude_mask=np.array([[1, 1], [1, 1]])
    )
    # Row 0: track 0 is history (excluded), the target 2 is in history too but kept; only track 1 beats it.
    # Row 1: track 3 is excluded; tracks 0 and 2 tie with the target: rank 0 + 2 ties / 2 = 1.
    assert ranks.tolist() == [1.0, 1.0]
    accumulator = metrics.RankingAccumulator(ks=(1, 2))
    accumulator.add(np.array([0.0, 1.0, 5.0]))
    result = accumulator.result()
    assert result["recall_at_k"] == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3)}
    assert result["ndcg_at_k"][2] == pytest.approx((1 + 1 / np.log2(3)) / 3)
    assert result["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 6) / 3)


def test_popularity_baseline_ranks_by_count():
    dataset = tf.data.Dataset.from_tensors(batch())
    counts = np.arange(CONFIG.num_track_ids, dtype=np.float64)  # track 11 most popular
    result = evaluation.evaluate(dataset, evaluation.popularity_scorer(counts), ks=(1, 5))
    # Targets 7, 8, 7; non-excluded tracks more popular: row 0 -> 8..11 (4), row 1 -> 9..11 (3), row 2 -> 4.
    assert result["recall_at_k"] == {1: 0.0, 5: 1.0}
    assert result["mrr"] == pytest.approx((1 / 5 + 1 / 4 + 1 / 5) / 3)
    # Pairs: row 0: 7 vs 9, 10 (lose both); row 1: 8 vs 11 (lose).
    assert result["pairs"] == 3 and result["pairwise_accuracy"] == 0.0


def test_ranks_excluding_equal_target_ranks_with_ties_repeats_and_the_target_in_history():
    rng = np.random.default_rng(3)
    for _ in range(50):
        rows, tracks, history = 16, 30, 8
        scores = rng.integers(0, 6, (rows, tracks)).astype(np.float32)  # many ties
        targets = rng.integers(0, tracks, rows)
        history_ids = rng.integers(0, 10, (rows, history))  # repeated ids within a row
        history_ids[:4, 0] = targets[:4]  # the target in its own history stays ranked
        history_mask = rng.random((rows, history)) < 0.7
        expected = metrics.target_ranks(scores, targets, history_ids, history_mask)
        np.testing.assert_array_equal(metrics.ranks_excluding(scores, targets, history_ids, history_mask), expected)


def test_the_trainers_per_epoch_metrics_equal_the_full_evaluations():
    rng = np.random.default_rng(5)
    rows = 40
    batches = [batch(**{
        features.HISTORY_TRACK_IDS_XF: rng.integers(0, CONFIG.num_track_ids, (rows, 4)).tolist(),
        features.HISTORY_LABELS_XF: rng.integers(0, 4, (rows, 4)).tolist(),
        features.HISTORY_MASK: (rng.random((rows, 4)) < 0.7).tolist(),
        features.STATION_ID_XF: rng.integers(0, 4, rows).tolist(),
        features.TARGET_TRACK_ID_XF: rng.integers(0, CONFIG.num_track_ids, rows).tolist(),
        features.USER_ID_XF: [f"u{i % 7}".encode() for i in range(rows)],
        features.HARD_NEGATIVE_TRACK_IDS_XF: rng.integers(0, CONFIG.num_track_ids, (rows, 2)).tolist(),
        features.HARD_NEGATIVE_MASK: (rng.random((rows, 2)) < 0.6).tolist(),
    }) for _ in range(3)]
    dataset = tf.data.Dataset.from_tensor_slices(
        {key: tf.concat([b[key] for b in batches], axis=0) for key in batches[0]}).batch(32)  # a partial last batch
    table = rng.integers(0, 4, (CONFIG.num_track_ids, CONFIG.num_track_ids)).astype(np.float32)  # ties

    def tied_scorer(inputs: dict[str, tf.Tensor]) -> np.ndarray:
        return table[inputs[features.STATION_ID_XF].numpy() * 3 % CONFIG.num_track_ids]

    counts = rng.integers(0, 3, CONFIG.num_track_ids).astype(np.float64)
    for scorer in (tied_scorer, evaluation.popularity_scorer(counts)):
        full = evaluation.evaluate(dataset, scorer)
        fast = evaluation.ranking_and_pairs(dataset, scorer)
        assert fast["queries"] == full["examples"] == 3 * rows
        assert fast == {key: full[key] for key in fast}


# --- The item bias -------------------------------------------------------------------------------------------
def test_item_bias_adds_a_per_track_column_that_starts_at_the_popularity_prior():
    from models.towers import popularity_prior

    config = dataclasses.replace(CONFIG, item_bias=True)
    counts = np.arange(config.num_track_ids, dtype=np.float64)  # track i played i times
    prior = popularity_prior(counts, temperature=0.05)
    # 0.05 * (log(i + 1) - mean): more plays, higher start; centred on 0.
    np.testing.assert_allclose(prior, 0.05 * (np.log(counts + 1) - np.log(counts + 1).mean()), rtol=1e-6)
    query_tower, candidate_tower = build_towers(config, prior)
    query = query_tower(batch()).numpy()
    candidates = candidate_tower(tf.constant([3, 11], tf.int64)).numpy()
    assert query.shape == (3, config.embedding_dim + 1) == (3, config.output_dim)
    np.testing.assert_allclose(query[:, -1], 1.0)  # the query's bias column is a constant 1
    np.testing.assert_allclose(np.linalg.norm(query[:, :-1], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(candidates[:, -1], prior[[3, 11]], rtol=1e-6)
    # So every dot-product scorer gives cosine + bias.
    scores = query @ candidates.T
    cosines = query[:, :-1] @ candidates[:, :-1].T
    np.testing.assert_allclose(scores, cosines + prior[[3, 11]][None, :], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="one value per track id"):
        build_towers(config, prior[:3])


def test_item_bias_is_trained_by_the_loss():
    params = dataclasses.replace(configs.PipelineConfig(max_history=4, max_hard_negatives=2, embedding_dim=8,
                                                        num_heads=2, num_layers=1, dropout=0.0,
                                                        num_random_negatives=0,
                                                        item_bias=True).training_params(), batch_size=3)
    model = RetrievalModel(dataclasses.replace(CONFIG, item_bias=True), params, np.ones(CONFIG.num_track_ids))
    one_listener = batch(**{features.USER_ID_XF: [b"u1", b"u1", b"u1"]})  # in-batch columns all masked
    with tf.GradientTape() as tape:
        value = model.compute_loss(one_listener, training=True)
    gradient = tape.gradient(value, model.candidate_tower.bias_table)
    dense = tf.convert_to_tensor(gradient).numpy()[:, 0]
    # With only real negatives beside each positive: positives' biases go up under gradient descent, the real
    # negatives' (tracks 9, 10, 11) go down.
    assert dense[7] < 0 and dense[8] < 0
    assert dense[9] > 0 and dense[10] > 0 and dense[11] > 0


def test_item_bias_starts_at_the_scaled_popularity_prior():
    from models.towers import popularity_prior

    counts = np.arange(CONFIG.num_track_ids, dtype=np.float64)
    starts = {}
    for scale in (1.0, 0.5, 0.0):
        params = dataclasses.replace(configs.PipelineConfig(max_history=4, max_hard_negatives=2, embedding_dim=8,
                                                            num_heads=2, num_layers=1, item_bias=True,
                                                            item_bias_prior_scale=scale).training_params())
        model = RetrievalModel(dataclasses.replace(CONFIG, item_bias=True), params, counts)
        model.candidate_tower(tf.constant([0], tf.int64))  # builds the bias table
        starts[scale] = model.candidate_tower.bias_table.numpy()[:, 0]
    prior = popularity_prior(counts, temperature=configs.PipelineConfig().temperature)
    np.testing.assert_allclose(starts[1.0], prior, rtol=1e-6)
    np.testing.assert_allclose(starts[0.5], 0.5 * prior, rtol=1e-6)
    np.testing.assert_array_equal(starts[0.0], 0.0)
    with pytest.raises(ValueError, match="item_bias_prior_scale must be >= 0"):
        configs.PipelineConfig(item_bias_prior_scale=-1.0).training_params()


def test_early_stopping_watches_accuracy_recall_or_their_sum():
    from models.trainer import early_stopping_value

    assert early_stopping_value("pairwise_accuracy", 0.6, 0.4) == 0.6
    assert early_stopping_value("recall_at_100", 0.6, 0.4) == 0.4
    assert early_stopping_value("pairwise_accuracy+recall_at_100", 0.6, 0.4) == pytest.approx(1.0)
    assert early_stopping_value("pairwise_accuracy+recall_at_100", float("nan"), 0.4) == 0.4  # no pairs in eval
    floor = "pairwise_accuracy_with_recall_floor"
    above = [early_stopping_value(floor, accuracy, 0.5, recall_floor=0.45) for accuracy in (0.55, 0.6)]
    below = [early_stopping_value(floor, 0.9, recall, recall_floor=0.45) for recall in (0.3, 0.44)]
    assert above[1] > above[0] > below[1] > below[0]  # any epoch at the floor beats every epoch under it
    assert early_stopping_value(floor, 0.6, 0.45, recall_floor=0.45) == pytest.approx(1.6)  # the floor counts as reached
    with pytest.raises(ValueError, match="recall floor"):
        early_stopping_value(floor, 0.6, 0.4)
    with pytest.raises(ValueError, match="early_stopping must be one of"):
        early_stopping_value("ndcg", 0.6, 0.4)


def test_early_stopping_by_the_sum_keeps_only_epochs_that_beat_most_popular_on_both():
    from models.trainer import early_stopping_value

    rule = "pairwise_accuracy+recall_at_100_with_floors"
    floors = {"recall_floor": 0.45, "accuracy_floor": 0.6}
    # The seed-42 trajectory that motivated the rule: accuracy peaks in epoch 3, recall keeps rising.
    epochs = [(0.708, 0.480), (0.704, 0.516), (0.703, 0.527)]
    values = [early_stopping_value(rule, accuracy, recall, **floors) for accuracy, recall in epochs]
    assert values == pytest.approx([2 + 0.708 + 0.480, 2 + 0.704 + 0.516, 2 + 0.703 + 0.527])
    assert max(range(3), key=values.__getitem__) == 2
    under_accuracy = early_stopping_value(rule, 0.58, 0.9, **floors)  # best sum, but loses on accuracy
    under_recall = early_stopping_value(rule, 0.95, 0.40, **floors)
    assert under_accuracy == pytest.approx(-0.02) and under_recall == pytest.approx(-0.05)
    assert min(values) > under_accuracy > under_recall  # the nearer miss ranks higher, every pass above both
    assert early_stopping_value(rule, 0.6, 0.45, **floors) == pytest.approx(3.05)  # a floor counts as reached
    assert early_stopping_value(rule, 0.3, 0.5, recall_floor=0.45, accuracy_floor=float("nan")) == pytest.approx(2.8)
    assert early_stopping_value(rule, float("nan"), 0.5, **floors) == 0.5  # no pairs in eval: recall alone
    with pytest.raises(ValueError, match="accuracy floor"):
        early_stopping_value(rule, 0.6, 0.5, recall_floor=0.45)
    with pytest.raises(ValueError, match="recall floor"):
        early_stopping_value(rule, 0.6, 0.5, accuracy_floor=0.6)


@pytest.mark.parametrize("gains, start", [("signed", -1.0), ("zero", 0.0), ("learned", 1.0)])
def test_history_gains_start_per_feedback_type_and_are_trained(gains, start):
    config = dataclasses.replace(CONFIG, history_gains=gains)
    params = dataclasses.replace(configs.PipelineConfig(max_history=4, max_hard_negatives=2, embedding_dim=8,
                                                        num_heads=2, num_layers=1, dropout=0.0,
                                                        history_gains=gains).training_params(), batch_size=3)
    model = RetrievalModel(config, params, np.arange(1, CONFIG.num_track_ids + 1, dtype=np.float64))
    with tf.GradientTape() as tape:
        loss_value = model.compute_loss(batch(), training=True)
    table = model.query_tower.label_gain_table
    expected = {"like": 1.0, "listen": 1.0, "skip": start, "dislike": start}
    np.testing.assert_array_equal(table.numpy(), [[expected[label]] * config.embedding_dim for label in contract.LABELS])
    gradient = tape.gradient(loss_value, table)
    assert gradient is not None and np.all(np.abs(tf.convert_to_tensor(gradient).numpy()).sum(axis=1) > 0)


def test_zero_history_gain_hides_a_rejected_tracks_identity_until_trained():
    """At the 'zero' start a skip or dislike token says only 'a rejection here'; a like's track still counts."""
    query_tower, _ = build_towers(dataclasses.replace(CONFIG, history_gains="zero"))
    base = query_tower(batch()).numpy()  # row 0's labels: like, skip, dislike, listen
    other_skipped = batch(**{features.HISTORY_TRACK_IDS_XF: [[1, 9, 10, 4], [5, 6, 0, 0], [0, 0, 0, 0]]})
    np.testing.assert_allclose(query_tower(other_skipped).numpy(), base, atol=1e-6)
    other_liked = batch(**{features.HISTORY_TRACK_IDS_XF: [[9, 2, 3, 4], [5, 6, 0, 0], [0, 0, 0, 0]]})
    assert not np.allclose(query_tower(other_liked).numpy()[0], base[0], atol=1e-4)
    with pytest.raises(ValueError, match="history_gains must be one of"):
        configs.PipelineConfig(history_gains="negated").training_params()


def test_positive_pooling_averages_likes_and_listens_and_falls_back_to_all_tokens():
    from models.towers import pooling_weights

    like, listen, skip, dislike = (contract.LABEL_IDS[label] for label in contract.LABELS)
    labels = tf.constant([[like, skip, dislike, listen], [skip, dislike, 0, 0], [like, skip, listen, 0]], tf.int64)
    mask = tf.constant([[True] * 4, [True, True, False, False], [False, True, True, False]])  # the tower's mask
    assert pooling_weights(mask, labels, "positives").numpy().tolist() == [[1, 0, 0, 1], [1, 1, 0, 0], [0, 0, 1, 0]]
    assert pooling_weights(mask, labels, "all").numpy().tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [0, 1, 1, 0]]
    # Without attention (no transformer block) a skipped track cannot reach a positives-pooled query at all.
    query_tower, _ = build_towers(dataclasses.replace(CONFIG, num_layers=0, history_pooling="positives"))
    base = query_tower(batch()).numpy()  # row 0's labels: like, skip, dislike, listen
    other_skipped = batch(**{features.HISTORY_TRACK_IDS_XF: [[1, 9, 10, 4], [5, 6, 0, 0], [0, 0, 0, 0]]})
    np.testing.assert_allclose(query_tower(other_skipped).numpy(), base, atol=1e-6)
    with pytest.raises(ValueError, match="history_pooling must be one of"):
        configs.PipelineConfig(history_pooling="likes").training_params()


def test_direct_feedback_adds_each_types_weighted_mean_candidate_vector():
    """Row 0 is like 1, skip 2, dislike 3, listen 4: with weights (skip -0.5, dislike -1) the query moves by
    exactly -0.5 x track 2's and -1 x track 3's candidate vectors, so each candidate's score falls by its
    cosine to what was just rejected; the likes and listens stay out under 'rejections'."""
    config = dataclasses.replace(CONFIG, direct_feedback="rejections", direct_feedback_scale=4.0)
    query_tower, candidate_tower = build_towers(config)
    before = query_tower(batch()).numpy()
    weights = query_tower.direct_feedback_weights
    np.testing.assert_array_equal(weights.numpy(), np.zeros(len(contract.LABELS)))  # starts as the plain query
    by_label = {"like": 3.0, "listen": 2.0, "skip": -0.5, "dislike": -1.0}
    weights.assign([by_label[label] / 4.0 for label in contract.LABELS])  # the variables times the scale
    moved = query_tower(batch()).numpy() - before
    candidates = candidate_tower(tf.constant([2, 3, 6], tf.int64)).numpy()
    np.testing.assert_allclose(moved[0], -0.5 * candidates[0] - 1.0 * candidates[1], atol=1e-5)
    np.testing.assert_allclose(moved[1], 0.0, atol=1e-6)  # row 1: listen 5, like 6 (positives only)
    np.testing.assert_allclose(moved[2], 0.0, atol=1e-6)  # row 2: empty history

    query_all, candidate_all = build_towers(dataclasses.replace(CONFIG, direct_feedback="all"))
    before = query_all(batch()).numpy()
    query_all.direct_feedback_weights.assign([by_label[label] for label in contract.LABELS])  # scale 1
    moved = query_all(batch()).numpy() - before
    five_six = candidate_all(tf.constant([5, 6], tf.int64)).numpy()
    np.testing.assert_allclose(moved[1], 2.0 * five_six[0] + 3.0 * five_six[1], atol=1e-5)  # listen 5, like 6
    with pytest.raises(ValueError, match="direct_feedback must be one of"):
        configs.PipelineConfig(direct_feedback="skips").training_params()
    with pytest.raises(ValueError, match="direct_feedback_scale must be > 0"):
        configs.PipelineConfig(direct_feedback_scale=0.0).training_params()


def test_direct_feedback_weights_are_trained_for_the_chosen_types_only():
    params = dataclasses.replace(configs.PipelineConfig(max_history=4, max_hard_negatives=2, embedding_dim=8,
                                                        num_heads=2, num_layers=1, dropout=0.0,
                                                        direct_feedback="rejections").training_params(), batch_size=3)
    model = RetrievalModel(dataclasses.replace(CONFIG, direct_feedback="rejections"), params,
                           np.arange(1, CONFIG.num_track_ids + 1, dtype=np.float64))
    with tf.GradientTape() as tape:
        loss_value = model.compute_loss(batch(), training=True)
    weights = model.query_tower.direct_feedback_weights
    gradient = tf.convert_to_tensor(tape.gradient(loss_value, weights)).numpy()
    rejection = np.array([label in contract.NEGATIVE_LABELS for label in contract.LABELS])
    assert np.all(gradient[rejection] != 0) and np.all(gradient[~rejection] == 0)


def test_an_optimizer_step_never_lets_a_rejection_pull_the_query_toward_the_rejected_track():
    query_tower, _ = build_towers(dataclasses.replace(CONFIG, direct_feedback="all"))
    query_tower(batch())
    weights = query_tower.direct_feedback_weights
    optimizer = tf.keras.optimizers.Adam(learning_rate=0.1)
    for _ in range(3):  # a gradient that pushes every weight up
        optimizer.apply_gradients([(-tf.ones_like(weights), weights)])
    rejection = np.array([label in contract.NEGATIVE_LABELS for label in contract.LABELS])
    assert np.all(weights.numpy()[rejection] == 0) and np.all(weights.numpy()[~rejection] > 0.2)
    optimizer = tf.keras.optimizers.Adam(learning_rate=0.1)
    for _ in range(3):  # and one that pushes them down: rejections may repel
        optimizer.apply_gradients([(tf.ones_like(weights), weights)])
    assert np.all(weights.numpy()[rejection] < -0.2)


@pytest.mark.parametrize("moves", ["all", "dislikes", "none"])
def test_negative_loss_on_query_decides_what_of_the_query_the_term_moves(moves):
    """The real-negative term's own gradient (weight 1 minus weight 0): the history memory offsets always; the
    dislikes' direct weight unless 'none'; the skips' direct weight and the transformer only with 'all'."""
    def term_gradients(weight: float) -> dict[str, np.ndarray]:
        params = dataclasses.replace(configs.PipelineConfig(
            max_history=4, max_hard_negatives=2, embedding_dim=8, num_heads=2, num_layers=1, dropout=0.0,
            num_random_negatives=0, direct_feedback="rejections", history_memory="rejections",
            negative_loss_on_query=moves, negative_loss_weight=weight).training_params(), batch_size=3)
        tf.keras.utils.set_random_seed(5)
        model = RetrievalModel(dataclasses.replace(CONFIG, direct_feedback="rejections"), params,
                               np.arange(1, CONFIG.num_track_ids + 1, dtype=np.float64))
        rejected_again = batch(**{features.HARD_NEGATIVE_TRACK_IDS_XF: [[2, 3], [11, 0], [0, 0]]})  # row 0's skip, dislike
        with tf.GradientTape() as tape:
            value = model.compute_loss(rejected_again, training=True)
        watched = {"direct": model.query_tower.direct_feedback_weights, "memory": model.memory.weights_variable,
                   "projection": model.query_tower._projection.kernel}
        return {name: tf.convert_to_tensor(g).numpy() for name, g in zip(watched, tape.gradient(value, list(watched.values())))}

    with_term, without = term_gradients(1.0), term_gradients(0.0)
    term = {name: with_term[name] - without[name] for name in with_term}
    skip, dislike = contract.LABEL_IDS[contract.SKIP], contract.LABEL_IDS[contract.DISLIKE]
    assert term["memory"][skip] != 0 and term["memory"][dislike] != 0
    assert (term["direct"][dislike] != 0) == (moves != "none")
    assert (term["direct"][skip] != 0) == (moves == "all")
    assert np.any(term["projection"] != 0) == (moves == "all")
    assert (without["direct"][dislike] != 0) == (moves != "dislikes"), "with 'dislikes' that weight is the term's alone"
