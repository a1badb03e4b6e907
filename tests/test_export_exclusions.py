"""The serving export's id-based exclusions remove exactly what TFRS's string-based `query_with_exclusions` does,
ties included (models/serving_export.py matches ids instead of strings to save ~1 ms per request)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from models import serving_export

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
