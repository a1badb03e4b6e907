"""The history memory term (models/memory.py) on hand-made histories, in the loss and in the served top-k."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from models import evaluation, features, loss, memory
from models.trainer import in_history
from models.params import CANDIDATES_ALL, CANDIDATES_NEW, CANDIDATES_NONE
from schema import contract
from tests.test_loss import assert_close, f32, i64, one_row_with_two_hard_negatives

LIKE, SKIP, DISLIKE = (contract.LABEL_IDS[name] for name in (contract.LIKE, contract.SKIP, contract.DISLIKE))
WEIGHTS = np.zeros(features.NUM_LABELS, np.float32)
WEIGHTS[[LIKE, SKIP, DISLIKE]] = (0.5, -0.25, -1.0)


def history() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row 0: 7 liked, 8 skipped twice, 9 disliked, a padded slot holding 5. Row 1: 7 skipped, then liked."""
    ids = np.array([[7, 8, 8, 9, 5], [7, 7, 0, 0, 0]], np.int64)
    labels = np.array([[LIKE, SKIP, SKIP, DISLIKE, LIKE], [SKIP, LIKE, -1, -1, -1]], np.int64)
    mask = np.array([[True, True, True, True, False], [True, True, False, False, False]])
    return ids, labels, mask


def test_each_type_counts_once_per_track_and_padding_counts_never():
    got = memory.offsets(tf.constant(WEIGHTS), i64([[7, 8, 9, 5], [7, 8, 9, 5]]), *map(tf.constant, history()))
    # row 0: 7 liked +0.5; 8 skipped twice -0.25 once; 9 disliked -1; 5 only in a padded slot 0.
    # row 1: 7 skipped and liked -0.25 + 0.5; the rest are not in its history.
    assert_close(got, [[0.5, -0.25, -1.0, 0.0], [0.25, 0.0, 0.0, 0.0]])


def test_candidates_shared_by_every_row_and_the_dense_catalog_agree():
    shared = memory.offsets(tf.constant(WEIGHTS), i64(np.arange(10)), *map(tf.constant, history()))
    dense = memory.dense_offsets(WEIGHTS, *history(), num_ids=10)
    assert_close(shared, dense)
    assert dense[0, 8] == pytest.approx(-0.25) and dense[1, 7] == pytest.approx(0.25)


def test_scorers_add_the_offsets_only_when_the_model_has_them():
    ids, labels, mask = history()
    batch = {features.HISTORY_TRACK_IDS_XF: tf.constant(ids), features.HISTORY_LABELS_XF: tf.constant(labels),
             features.HISTORY_MASK: tf.constant(mask)}
    scores = np.ones((2, 10), np.float32)
    assert evaluation.with_memory(scores, batch, None) is scores
    assert_close(evaluation.with_memory(scores, batch, WEIGHTS), 1.0 + memory.dense_offsets(WEIGHTS, ids, labels, mask, 10))


def test_offsets_enter_the_softmax_and_the_pairwise_term_before_the_temperature():
    inputs = one_row_with_two_hard_negatives()  # s_pos 0.6, hard 0.8 and 0.0; the in-batch column is masked
    layer = loss.RetrievalLoss(loss.PAIRWISE, negative_loss_weight=2.0, temperature=0.5, use_logq=False)
    offsets = loss.ScoreOffsets(positive=f32([[0.1]]), in_batch=f32([[5.0]]), hard=f32([[-0.4, 0.2]]))
    # scores + offsets: positive 0.7, hard 0.4 and 0.2 -> logits 1.4, 0.8, 0.4 (the masked column stays masked)
    softmax = -1.4 + np.log(np.exp(1.4) + np.exp(0.8) + np.exp(0.4))
    pairwise = (np.log1p(np.exp((0.4 - 0.7) / 0.5)) + np.log1p(np.exp((0.2 - 0.7) / 0.5))) / 2
    assert_close(layer.per_example_loss(**inputs, offsets=offsets), [softmax + 2.0 * pairwise])
    assert_close(layer.per_example_loss(**inputs, offsets=loss.NO_OFFSETS), layer.per_example_loss(**inputs))


def test_rejection_offsets_never_rise_above_zero_and_unchosen_types_stay_at_zero():
    layer = memory.HistoryMemory("rejections")
    wanted = np.ones(features.NUM_LABELS, np.float32)
    wanted[DISLIKE] = -1.0
    layer.weights_variable.assign(layer.weights_variable.constraint(tf.constant(wanted)))
    weights = layer.label_weights().numpy()
    assert weights[SKIP] == 0.0 and weights[DISLIKE] == pytest.approx(-memory.WEIGHT_SCALE)
    assert weights[LIKE] == 0.0, "likes are outside 'rejections'"
    everything = memory.HistoryMemory("all")
    everything.weights_variable.assign(np.where(np.arange(features.NUM_LABELS) == LIKE, 0.1, 0.0))
    assert everything.label_weights().numpy()[LIKE] == pytest.approx(0.1 * memory.WEIGHT_SCALE)


def test_config_entries_round_trip_and_an_incomplete_one_is_an_error():
    assert memory.weights_of(memory.weights_by_label(WEIGHTS)).tolist() == WEIGHTS.tolist()
    assert memory.weights_of(None) is None and memory.weights_by_label(None) is None
    with pytest.raises(ValueError, match="lacks"):
        memory.weights_of({contract.LIKE: 1.0})


def test_a_term_query_with_its_gradient_stopped_moves_the_candidates_and_offsets_alone():
    inputs = one_row_with_two_hard_negatives()
    query, hard = tf.Variable(inputs.pop("query")), tf.Variable(inputs.pop("hard"))
    hard_offset = tf.Variable(f32([[0.0, 0.0]]))

    def gradients(weight: float, frozen_query: bool = False) -> list:
        layer = loss.RetrievalLoss(loss.PAIRWISE, negative_loss_weight=weight, temperature=0.5, use_logq=False)
        with tf.GradientTape() as tape:
            value = layer(query=query, hard=hard, offsets=loss.ScoreOffsets(hard=hard_offset),
                          term_query=tf.stop_gradient(query) if frozen_query else None, **inputs)
        return [g.numpy() for g in tape.gradient(value, [query, hard, hard_offset])]

    softmax_only, kept, frozen = gradients(0.0), gradients(1.0), gradients(1.0, frozen_query=True)
    np.testing.assert_allclose(frozen[0], softmax_only[0], rtol=1e-6)  # the query: the softmax's gradient alone
    assert not np.allclose(kept[0], softmax_only[0]), "with the query moving, the term adds to its gradient"
    np.testing.assert_allclose(frozen[1], kept[1], rtol=1e-6)  # the candidates and the offsets: the full term
    np.testing.assert_allclose(frozen[2], kept[2], rtol=1e-6)
    assert (frozen[2] > 0).all(), "a descent step lowers both real negatives' offsets"


def test_a_term_kept_off_the_candidates_moves_only_the_offsets_or_the_new_negatives():
    inputs = one_row_with_two_hard_negatives()
    query, hard, positive = (tf.Variable(inputs.pop(name)) for name in ("query", "hard", "positive"))
    hard_offset = tf.Variable(f32([[0.0, 0.0]]))
    first_in_history = tf.constant([[True, False]])

    def gradients(weight: float, moves: str) -> list:
        layer = loss.RetrievalLoss(loss.PAIRWISE, negative_loss_weight=weight, temperature=0.5, use_logq=False,
                                   term_moves_candidates=moves)
        with tf.GradientTape() as tape:
            value = layer(query=query, hard=hard, positive=positive, offsets=loss.ScoreOffsets(hard=hard_offset),
                          term_query=tf.stop_gradient(query), hard_in_history=first_in_history, **inputs)
        return [g.numpy() for g in tape.gradient(value, [positive, hard, hard_offset])]

    softmax_only, kept = gradients(0.0, CANDIDATES_ALL), gradients(1.0, CANDIDATES_ALL)
    offsets_only, new_only = gradients(1.0, CANDIDATES_NONE), gradients(1.0, CANDIDATES_NEW)
    for index in (0, 1):  # 'none': the positive and the real negatives get the softmax's gradient alone
        np.testing.assert_allclose(offsets_only[index], softmax_only[index], rtol=1e-6)
        assert not np.allclose(kept[index], softmax_only[index]), "on the candidates, the term adds to their gradient"
    # 'new': the negative already in the history gets the softmax's gradient, the other and the positive the term's
    np.testing.assert_allclose(new_only[1][0, 0], softmax_only[1][0, 0], rtol=1e-6)
    np.testing.assert_allclose(new_only[1][0, 1], kept[1][0, 1], rtol=1e-6)
    np.testing.assert_allclose(new_only[0], kept[0], rtol=1e-6)
    for moved in (offsets_only, new_only):
        np.testing.assert_allclose(moved[2], kept[2], rtol=1e-6)
    assert (offsets_only[2] > 0).all(), "a descent step still lowers both real negatives' offsets"
    with pytest.raises(ValueError, match="needs hard_in_history"):
        loss.RetrievalLoss(loss.PAIRWISE, term_moves_candidates=CANDIDATES_NEW, use_logq=False)(
            query=query, hard=hard, positive=positive, **inputs)
    with pytest.raises(ValueError, match="term_moves_candidates must be one of"):
        loss.RetrievalLoss(term_moves_candidates="some")


def test_in_history_marks_real_history_tokens_only():
    got = in_history(tf.constant([[8, 5, 3]], tf.int64), tf.constant(history()[0][:1]), tf.constant(history()[2][:1]))
    assert got.numpy().tolist() == [[True, False, False]]  # 5 is only in a padded slot, 3 nowhere
