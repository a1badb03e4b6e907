"""Exact evaluation over a dataset of padded batches, for any scorer of the whole catalog.

The same loop judges the trained towers and the most-popular baseline, so their numbers are comparable.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from models import features, metrics

Scorer = Callable[[dict[str, tf.Tensor]], np.ndarray]
"""Maps a padded batch to scores [b, num_track_ids] for every track id."""


def evaluate(dataset: tf.data.Dataset, scorer: Scorer, ks: Sequence[int] = metrics.DEFAULT_KS) -> dict[str, object]:
    """Pairwise accuracy on each example's hard negatives, and ranking metrics against the catalog."""
    ranking = metrics.RankingAccumulator(ks)
    wins, pairs = 0.0, 0
    for batch in dataset:
        scores = scorer(batch)
        targets = batch[features.TARGET_TRACK_ID_XF].numpy()
        rows = np.arange(len(targets))
        negative_ids = batch[features.HARD_NEGATIVE_TRACK_IDS_XF].numpy()
        accuracy, batch_pairs = metrics.pairwise_accuracy(
            scores[rows, targets], scores[rows[:, None], negative_ids], batch[features.HARD_NEGATIVE_MASK].numpy()
        )
        if batch_pairs:
            wins += accuracy * batch_pairs
            pairs += batch_pairs
        ranking.add(
            metrics.target_ranks(
                scores, targets, batch[features.HISTORY_TRACK_IDS_XF].numpy(), batch[features.HISTORY_MASK].numpy()
            )
        )
    return {"pairwise_accuracy": wins / pairs if pairs else float("nan"), "pairs": pairs, **ranking.result()}


def embedding_scorer(query_tower: tf.keras.Model, candidate_embeddings: np.ndarray) -> Scorer:
    """Cosine scores of the query tower's embedding against every candidate embedding."""
    candidates = tf.constant(candidate_embeddings)

    def score(batch: dict[str, tf.Tensor]) -> np.ndarray:
        return tf.matmul(query_tower(batch, training=False), candidates, transpose_b=True).numpy()

    return score


def popularity_scorer(track_counts: np.ndarray) -> Scorer:
    """The most-popular baseline: every listener gets the catalog ordered by play count."""
    popularity = np.asarray(track_counts, dtype=np.float64)

    def score(batch: dict[str, tf.Tensor]) -> np.ndarray:
        return np.broadcast_to(popularity, (int(tf.shape(batch[features.TARGET_TRACK_ID_XF])[0]), popularity.size))

    return score
