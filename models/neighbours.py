"""A thumbs-down lowers the disliked track's nearest neighbours, and nothing else.

The query tower can answer a dislike only by moving the whole query vector (the dislikes' direct weight,
models/towers.py), which re-ranks everything the listener might hear; on the default 200k preset that answer cost
0.045 of recall@100 (docs/model-and-loss.md section 11). This rule acts where a listener expects it, on tracks
close to the one they rejected:

    score(c) -= weight * sum over the history's disliked tracks h of  max(0, cos(c, h) - floor) / (1 - floor)

so a candidate identical to a disliked track loses `weight` per dislike, one at cosine `floor` or below loses
nothing. It is a fixed rule, not trained (a learned weight would be pulled to 0 by the softmax, as the dislikes'
direct weight was); weight and floor come from an ablation over seeds on both presets. Every scorer applies it:
the Trainer's per-epoch evaluation, the evaluator (`models.exported.ExportedModel.scorer`) and the served top-k
(models/serving_export.py).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from models.params import DislikePenalty
from schema import contract

DISLIKE_ID = contract.LABELS.index(contract.DISLIKE)


def penalties(rule: DislikePenalty, candidate_units: tf.Tensor, history_units: tf.Tensor,
              disliked: tf.Tensor) -> tf.Tensor:
    """[B, K] amounts to subtract: candidate_units [B, K, D], history_units [B, L, D] (unit vectors), disliked
    [B, L] bool (a real history token with feedback 'dislike')."""
    cosines = tf.einsum("bkd,bld->bkl", candidate_units, history_units)
    closeness = tf.nn.relu(cosines - rule.floor) * (rule.weight / (1.0 - rule.floor))
    return tf.einsum("bkl,bl->bk", closeness, tf.cast(disliked, closeness.dtype))


def subtract_penalties(scores: np.ndarray, rule: DislikePenalty, catalog_units: np.ndarray, history_ids: np.ndarray,
                       history_labels: np.ndarray, history_mask: np.ndarray) -> np.ndarray:
    """scores [B, V] (changed in place and returned) minus what `penalties` gives for the whole catalog
    (catalog_units [V, D]). Only the disliked positions' rows are computed and touched: building a [B, V] penalty
    matrix and np.add.at took 2.3 s per 512-row batch on a 50k-track catalog (a loaded box), this 0.21 s."""
    history_ids = np.asarray(history_ids)
    rows, positions = np.nonzero(np.asarray(history_mask, dtype=bool) & (np.asarray(history_labels) == DISLIKE_ID))
    if not len(rows):
        return scores
    closeness = catalog_units[history_ids[rows, positions]] @ catalog_units.T  # [P, V] cosines, then in place
    np.subtract(closeness, rule.floor, out=closeness)
    np.maximum(closeness, 0.0, out=closeness)
    closeness *= rule.weight / (1.0 - rule.floor)
    # rows come sorted (np.nonzero's row-major order): each row's positions are contiguous
    disliking_rows, starts, counts = np.unique(rows, return_index=True, return_counts=True)
    single = counts == 1
    scores[disliking_rows[single]] -= closeness[starts[single]]
    for row, start, count in zip(disliking_rows[~single], starts[~single], counts[~single]):
        scores[row] -= closeness[start:start + count].sum(axis=0)
    return scores


def unit_part(embeddings: np.ndarray, embedding_dim: int) -> np.ndarray:
    """The unit-vector columns of candidate embeddings (the item bias, when there is one, is the last column)."""
    return np.ascontiguousarray(embeddings[:, :embedding_dim], dtype=np.float32)
