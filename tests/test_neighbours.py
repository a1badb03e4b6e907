"""The dislike-neighbour rule (models/neighbours.py) on hand-made unit vectors and histories."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from models import evaluation, features, memory, neighbours
from models.params import DislikePenalty, TrainingParams
from pipeline import configs
from schema import contract
from tests.test_loss import assert_close

LIKE, SKIP, DISLIKE = (contract.LABEL_IDS[name] for name in (contract.LIKE, contract.SKIP, contract.DISLIKE))
RULE = DislikePenalty(weight=0.3, floor=0.5)
# Track 0 and its neighbours: cosines 1, 0.8, 0.6, 0, -1 to track 0.
UNITS = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]], np.float32)


def dense_penalties(rule: DislikePenalty, units: np.ndarray, ids: np.ndarray, labels: np.ndarray,
                    mask: np.ndarray) -> np.ndarray:
    """[B, V] what the scorers subtract: subtract_penalties applied to zeros, negated."""
    return -neighbours.subtract_penalties(np.zeros((len(ids), len(units)), np.float32), rule, units, ids, labels, mask)


def history() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row 0: 3 liked, 0 disliked. Row 1: 0 skipped, 4 disliked in a padded slot. Row 2: 0 and 3 disliked."""
    ids = np.array([[3, 0], [0, 4], [0, 3]], np.int64)
    labels = np.array([[LIKE, DISLIKE], [SKIP, DISLIKE], [DISLIKE, DISLIKE]], np.int64)
    mask = np.array([[True, True], [True, False], [True, True]])
    return ids, labels, mask


def test_only_real_dislikes_lower_their_neighbours_by_closeness_above_the_floor():
    got = dense_penalties(RULE, UNITS, *history())
    # Row 0: weight x (cos - 0.5) / 0.5 for cosines 1, 0.8, 0.6 to track 0; nothing at or below the floor.
    assert_close(got[0], [0.3, 0.18, 0.06, 0.0, 0.0])
    # Row 1: a skip and a padded dislike lower nothing.
    assert_close(got[1], np.zeros(5))
    # Row 2: two dislikes add up (track 3's neighbours: cosine 0.8 for track 2, 0.6 for track 1).
    assert_close(got[2], [0.3, 0.18 + 0.06, 0.06 + 0.18, 0.3, 0.0])


def test_the_per_candidate_form_agrees_with_the_dense_catalog():
    ids, labels, mask = history()
    candidates = np.array([[0, 1, 4], [0, 1, 4], [1, 2, 3]])
    disliked = mask & (labels == DISLIKE)
    got = neighbours.penalties(RULE, tf.constant(UNITS[candidates]), tf.constant(UNITS[ids]), tf.constant(disliked))
    dense = dense_penalties(RULE, UNITS, ids, labels, mask)
    assert_close(got, np.take_along_axis(dense, candidates, axis=1))


def test_scorers_subtract_the_penalty_after_the_memory_and_need_the_catalog():
    ids, labels, mask = history()
    batch = {features.HISTORY_TRACK_IDS_XF: tf.constant(ids), features.HISTORY_LABELS_XF: tf.constant(labels),
             features.HISTORY_MASK: tf.constant(mask)}
    weights = np.zeros(features.NUM_LABELS, np.float32)
    weights[DISLIKE] = -1.0
    scores = np.ones((3, 5), np.float32)
    expected = (1.0 + memory.dense_offsets(weights, ids, labels, mask, 5)
                - dense_penalties(RULE, UNITS, ids, labels, mask))
    assert_close(evaluation.with_memory(scores, batch, weights, RULE, UNITS), expected)
    with pytest.raises(ValueError, match="unit vectors of every scored track"):
        evaluation.with_memory(scores, batch, None, RULE, UNITS[:4])


def test_the_rule_is_read_from_the_training_settings_and_validated():
    params = configs.PipelineConfig(dislike_neighbour_weight=0.3, dislike_neighbour_floor=0.5).training_params()
    assert DislikePenalty.of_training(dataclasses.asdict(params)) == RULE
    assert DislikePenalty.of_training({"dislike_neighbour_weight": 0.0, "dislike_neighbour_floor": 0.5}) is None
    assert DislikePenalty.of_training({}) is None  # a model exported before the rule
    with pytest.raises(ValueError, match="dislike_neighbour_floor"):
        configs.PipelineConfig(dislike_neighbour_floor=1.0).training_params()
    with pytest.raises(ValueError, match="dislike_neighbour_weight"):
        DislikePenalty(weight=-0.1, floor=0.5)
    assert isinstance(params, TrainingParams)


def test_unit_part_leaves_out_the_item_bias_column():
    with_bias = np.concatenate([UNITS, np.full((5, 1), 0.2, np.float32)], axis=1)
    assert_close(neighbours.unit_part(with_bias, 2), UNITS)
