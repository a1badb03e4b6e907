"""The listener's memory of tracks: a learned score offset for a candidate that is itself in the history.

A track the listener skipped a few plays ago is, on the simulated logs, mostly rejected again if it comes back
(about 60 % of the test split's real negatives are such repeats, against under 2 % of targets that were only
ever rejected), while a track they liked or listened to comes back as a target often. The towers can only say
this through the query vector, which moves the whole neighbourhood of the track: a rejection then lowers every
track like it, and recall pays (docs/model-and-loss.md section 11). This term says it about the track alone:

    offset(c) = sum over feedback types t of  weight[t] * [c is in the history with type t]

four learned scalars, added to the dot product everywhere a score is made (the loss's logits, the evaluators'
scorers, the served top-k). The rejection weights are held at or below 0, as the direct feedback weights are
(`towers.RejectionsRepel`): a skip may lower a track, never bring it back.
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np
import tensorflow as tf

from models import features
from models.params import DIRECT_REJECTIONS
from models.towers import REJECTION_LABEL_IDS, RejectionsRepel, direct_feedback_labels
from schema import contract

WEIGHT_SCALE = 10.0
"""The offsets are this times their variables, so Adam moves them as fast as the direct feedback weights at their
default scale (pipeline/configs.py direct_feedback_scale)."""


def presence(history_ids: tf.Tensor, history_labels: tf.Tensor, history_mask: tf.Tensor) -> tf.Tensor:
    """[B, L, NUM_LABELS] 0/1: position l is a real token with feedback type t."""
    real = tf.logical_and(history_mask, history_labels >= 0)
    return (tf.one_hot(tf.maximum(history_labels, 0), features.NUM_LABELS, dtype=tf.float32)
            * tf.cast(real, tf.float32)[:, :, None])


def offsets(weights: tf.Tensor, candidate_ids: tf.Tensor, history_ids: tf.Tensor, history_labels: tf.Tensor,
            history_mask: tf.Tensor) -> tf.Tensor:
    """[B, K] offsets of candidates [B, K] (or [K], the same for every row) given each row's history [B, L]."""
    if candidate_ids.shape.rank == 1:
        candidate_ids = tf.broadcast_to(candidate_ids[None, :], [tf.shape(history_ids)[0], tf.shape(candidate_ids)[0]])
    matches = tf.cast(tf.equal(candidate_ids[:, :, None], tf.cast(history_ids, candidate_ids.dtype)[:, None, :]),
                      tf.float32)  # [B, K, L]
    in_history = tf.minimum(tf.einsum("bkl,blt->bkt", matches, presence(history_ids, history_labels, history_mask)),
                            1.0)  # a track played three times with one type counts once
    return tf.einsum("bkt,t->bk", in_history, tf.cast(weights, tf.float32))


def dense_offsets(weights: np.ndarray, history_ids: np.ndarray, history_labels: np.ndarray,
                  history_mask: np.ndarray, num_ids: int) -> np.ndarray:
    """[B, num_ids] offsets of every track id: what `offsets` gives for the whole catalog, in numpy."""
    result = np.zeros((len(history_ids), num_ids), dtype=np.float32)
    real = np.asarray(history_mask, dtype=bool) & (np.asarray(history_labels) >= 0)
    for label_id, weight in enumerate(np.asarray(weights, dtype=np.float32)):
        rows, positions = np.nonzero(real & (history_labels == label_id))
        present = np.zeros_like(result, dtype=bool)
        present[rows, np.asarray(history_ids)[rows, positions]] = True
        result += weight * present
    return result


def weights_by_label(weights: Optional[np.ndarray]) -> Optional[dict[str, float]]:
    """{feedback type: offset} for model_config.json (None without the term)."""
    return None if weights is None else {label: float(w) for label, w in zip(contract.LABELS, weights)}


def weights_of(config_entry: Optional[Mapping[str, float]]) -> Optional[np.ndarray]:
    """The [NUM_LABELS] offsets back from model_config.json (None when the model has no memory term)."""
    if config_entry is None:
        return None
    missing = [label for label in contract.LABELS if label not in config_entry]
    if missing:
        raise ValueError(f"history_memory in the model config lacks {missing}; the export is inconsistent")
    return np.array([config_entry[label] for label in contract.LABELS], dtype=np.float32)


class HistoryMemory(tf.keras.layers.Layer):
    """Owns the four offsets (variables start at 0: a new model scores as if the term were not there); the
    feedback types outside `types` (a models.params.DIRECT_FEEDBACK choice) are held at 0."""

    def __init__(self, types: str = DIRECT_REJECTIONS, **kwargs) -> None:
        super().__init__(**kwargs)
        self._chosen = tf.constant(direct_feedback_labels(types))
        self._variables = self.add_weight(name="history_memory_weights", shape=(features.NUM_LABELS,),
                                          initializer="zeros", trainable=True,
                                          constraint=RejectionsRepel(REJECTION_LABEL_IDS))

    @property
    def weights_variable(self) -> tf.Variable:
        return self._variables

    def assign_label_weights(self, weights: np.ndarray) -> None:
        """Sets the offsets to `weights` [NUM_LABELS] (a warm start's); the types outside `types` stay at 0."""
        value = np.asarray(weights, np.float32) / WEIGHT_SCALE * self._chosen.numpy()
        self._variables.assign(self._variables.constraint(tf.constant(value)))

    def label_weights(self) -> tf.Tensor:
        """[NUM_LABELS]: each feedback type's offset."""
        return WEIGHT_SCALE * self._variables * self._chosen

    def call(self, candidate_ids: tf.Tensor, history_ids: tf.Tensor, history_labels: tf.Tensor,
             history_mask: tf.Tensor) -> tf.Tensor:
        return offsets(self.label_weights(), candidate_ids, history_ids, history_labels, history_mask)
