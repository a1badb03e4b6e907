"""The serving export's cheaper graph pieces give exactly what the straightforward versions gave: id-based
exclusions vs TFRS's string-based `query_with_exclusions` (ties included), index arithmetic vs ragged tensors for
the newest history tokens (models/serving_export.py; docs/serving.md, "Where the time goes")."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import pytest
import tensorflow_recommenders as tfrs

from models import features, serving_export

CATALOG, DIMS, RETRIEVED, K = 40, 4, 30, 10


def test_id_exclusions_match_tfrs_string_exclusions():
    rng = np.random.default_rng(7)
    embeddings = rng.normal(size=(CATALOG, DIMS)).astype(np.float32)
    embeddings[1::7] = embeddings[0]  # equal scores: ties must break the same way
    names = [f"track-{i}" for i in range(CATALOG)]
    queries = rng.normal(size=(6, DIMS)).astype(np.float32)
    queries[0] = embeddings[0]
    excluded_ids = rng.integers(0, CATALOG + 1, size=(6, RETRIEVED - K))  # CATALOG: the OOV id, like '' or unknown
    excluded_names = np.where(excluded_ids == CATALOG, "",
                              np.asarray(names + ["unused"], dtype=object)[np.minimum(excluded_ids, CATALOG)])

    reference = tfrs.layers.factorized_top_k.BruteForce(k=RETRIEVED).index(
        tf.constant(embeddings), tf.constant(names))
    want_scores, want_names = reference.query_with_exclusions(
        tf.constant(queries), tf.constant(excluded_names.astype(bytes)), k=K)

    by_position = tfrs.layers.factorized_top_k.BruteForce(k=RETRIEVED).index(tf.constant(embeddings))
    scores, candidates = by_position(tf.constant(queries), k=RETRIEVED)
    got_scores, got_ids = serving_export.exclude(scores, tf.cast(candidates, tf.int64),
                                                 tf.constant(excluded_ids, tf.int64), K)

    got_names = np.asarray(names, dtype=object)[got_ids.numpy()].astype(bytes)
    np.testing.assert_array_equal(got_names, want_names.numpy())
    np.testing.assert_array_equal(got_scores.numpy(), want_scores.numpy())
    unfiltered = np.asarray(names, dtype=object)[candidates.numpy()[:, :K]].astype(bytes)
    assert (unfiltered != want_names.numpy()).any(), "no exclusion hit a top-K candidate: the test proves nothing"
    for row, excluded in zip(got_ids.numpy(), excluded_ids):
        assert not set(row) & set(excluded)


def ragged_newest(ids, labels, present, width):
    """The export's former ragged-tensor version of `newest_real_tokens`."""
    real = tf.logical_and(present, labels >= 0)
    shape = [None, width]

    def newest(values, pad):
        return tf.ragged.boolean_mask(values, real)[:, -width:].to_tensor(pad, shape=shape)

    mask = newest(tf.ones_like(real), False)
    return (tf.where(mask, newest(ids, tf.constant(0, tf.int64)), tf.constant(features.PAD_ID, tf.int64)),
            newest(labels, tf.constant(0, tf.int64)), mask)


@pytest.mark.parametrize("history", [0, 1, 5, 20, 33])
def test_newest_real_tokens_match_the_ragged_version(history):
    rng = np.random.default_rng(history)
    rows, width = 7, 20
    ids = tf.constant(rng.integers(1, 1000, size=(rows, history)), tf.int64)
    labels = tf.constant(rng.integers(-1, 4, size=(rows, history)), tf.int64)  # -1: an unknown label
    present = tf.constant(rng.random((rows, history)) < 0.8)
    got = serving_export.newest_real_tokens(ids, labels, present, width)
    want = ragged_newest(ids, labels, present, width)
    for got_part, want_part in zip(got, want):
        assert got_part.shape == (rows, width)
        np.testing.assert_array_equal(got_part.numpy(), want_part.numpy())
    if history > width:
        assert want[2].numpy().all(axis=1).any(), "no row had more real tokens than fit: the cut is untested"
