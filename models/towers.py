"""The two towers of docs/design.md §5: a transformer over the listener's feedback-typed history, and the track tower.

Both towers share one track embedding table, so a track means the same thing as a history token and as
a candidate (as in SASRec-style sequence recommenders); each tower has its own projection on top.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np
import tensorflow as tf

from models import features
from models.params import (DIRECT_ALL, DIRECT_FEEDBACK, DIRECT_OFF, DIRECT_REJECTIONS, HISTORY_GAIN_STARTS,
                           HISTORY_GAINS_OFF, POOL_ALL, POOL_POSITIVES)
from schema import contract


@dataclasses.dataclass(frozen=True)
class TowerConfig:
    num_track_ids: int
    num_station_ids: int
    embedding_dim: int = 64
    num_layers: int = 2
    num_heads: int = 2
    max_history: int = 20
    dropout: float = 0.1
    item_bias: bool = False
    """A learned per-track bias added to every score (see `CandidateTower`)."""
    history_pooling: str = POOL_ALL
    """Which tokens the query averages after the transformer (`pooling_weights`)."""
    history_gains: str = HISTORY_GAINS_OFF
    """'off', or where a learned per-feedback-type gain on history tokens' track embeddings starts for skips
    and dislikes (models.params.HISTORY_GAIN_STARTS); likes and listens start at +1 (`label_gains_start`)."""
    direct_feedback: str = DIRECT_OFF
    """Which feedback types also reach the query directly (`direct_feedback_vector`)."""
    direct_feedback_scale: float = 1.0
    """The direct weights are this times their variables: Adam moves a variable by about the learning rate per
    step, so this is how fast the weights can travel."""

    @property
    def output_dim(self) -> int:
        """Width of both towers' outputs: the unit vector, plus one column for the bias."""
        return self.embedding_dim + (1 if self.item_bias else 0)


class TransformerBlock(tf.keras.layers.Layer):
    """Pre-norm self-attention + feed-forward, both residual; padded tokens are never attended to."""

    def __init__(self, dim: int, num_heads: int, dropout: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self._attention = tf.keras.layers.MultiHeadAttention(num_heads=num_heads, key_dim=max(1, dim // num_heads))
        self._feed_forward = tf.keras.Sequential(
            [tf.keras.layers.Dense(2 * dim, activation="gelu"), tf.keras.layers.Dense(dim)]
        )
        self._norm_attention = tf.keras.layers.LayerNormalization()
        self._norm_feed_forward = tf.keras.layers.LayerNormalization()
        self._dropout = tf.keras.layers.Dropout(dropout)

    def call(self, tokens: tf.Tensor, mask: tf.Tensor, training: bool = False) -> tf.Tensor:
        attention_mask = tf.logical_and(mask[:, None, :], mask[:, :, None])  # [B, L, L]
        normed = self._norm_attention(tokens)
        attended = self._attention(normed, normed, attention_mask=attention_mask, training=training)
        tokens = tokens + self._dropout(attended, training=training)
        tokens = tokens + self._dropout(self._feed_forward(self._norm_feed_forward(tokens)), training=training)
        return tokens * tf.cast(mask[:, :, None], tokens.dtype)


REJECTION_LABEL_IDS = np.array([label in contract.NEGATIVE_LABELS for label in contract.LABELS])
"""Per label id: True for skips and dislikes."""
POSITIVE_LABEL_IDS = ~REJECTION_LABEL_IDS
"""Per label id: True for likes and listens."""


def label_gains_start(embedding_dim: int, negative_start: float) -> np.ndarray:
    """[NUM_LABELS, D] starting gains: +1 for likes and listens, `negative_start` for skips and dislikes.

    With an additive feedback-type embedding alone, a skipped track's embedding enters the mean-pooled query
    with the same sign as a liked one's, so the query points toward what the listener rejected unless the
    transformer learns to invert it. A gain that starts at -1 gives "I skipped X" the sign it means; it is
    learned per dimension, so the model can keep what a rejection says about the station's style.
    """
    signs = np.where(REJECTION_LABEL_IDS, negative_start, 1.0).astype(np.float32)
    return np.repeat(signs[:, None], embedding_dim, axis=1)


def pooling_weights(mask: tf.Tensor, label_ids: tf.Tensor, pooling: str) -> tf.Tensor:
    """[B, L] 0/1 weights of the tokens the query averages.

    'positives': only likes and listens, so the query sits among what the listener played through, while
    skips and dislikes still shape it through attention (every token attends to them); a listener whose
    history holds no positive token falls back to all tokens, so they are still served. 'all': every token.
    """
    if pooling == POOL_ALL:
        return tf.cast(mask, tf.float32)
    if pooling != POOL_POSITIVES:
        raise ValueError(f"history_pooling must be {POOL_ALL!r} or {POOL_POSITIVES!r}, got {pooling!r}")
    positive = tf.logical_and(mask, tf.gather(tf.constant(POSITIVE_LABEL_IDS), tf.maximum(label_ids, 0)))
    has_positive = tf.reduce_any(positive, axis=1, keepdims=True)
    return tf.cast(tf.where(has_positive, positive, mask), tf.float32)


def direct_feedback_labels(direct_feedback: str) -> np.ndarray:
    """[NUM_LABELS] 1/0: the feedback types whose history tracks reach the query directly."""
    if direct_feedback not in DIRECT_FEEDBACK:
        raise ValueError(f"direct_feedback must be one of {DIRECT_FEEDBACK}, got {direct_feedback!r}")
    chosen = {DIRECT_OFF: np.zeros_like(REJECTION_LABEL_IDS), DIRECT_REJECTIONS: REJECTION_LABEL_IDS,
              DIRECT_ALL: np.ones_like(REJECTION_LABEL_IDS)}[direct_feedback]
    return chosen.astype(np.float32)


class RejectionsRepel(tf.keras.constraints.Constraint):
    """Keeps the direct weights of skips and dislikes at or below 0 after every update (likes and listens are free).

    A rejection may only push the query away from the rejected track, never toward it: without this, a model
    trained without real negatives in its loss learns positive rejection weights (a skip says "this region"
    more than "not this"), and a thumbs-down would then bring more of the same artist.
    """

    def __init__(self, rejection: np.ndarray) -> None:
        self._rejection = tf.constant(np.asarray(rejection, dtype=bool))

    def __call__(self, weights: tf.Tensor) -> tf.Tensor:
        return tf.where(self._rejection, tf.minimum(weights, 0.0), weights)


def direct_feedback_vector(candidates: tf.Tensor, mask: tf.Tensor, label_ids: tf.Tensor,
                           weights: tf.Tensor) -> tf.Tensor:
    """[B, D]: sum over feedback types of weights[type] x the mean candidate vector of the history tracks of that type.

    candidates [B, L, D] are the history tracks as the candidate tower sees them, so the term's contribution to a
    score is weights[type] x the candidate's mean cosine to those tracks: with a negative weight for dislikes, every
    track like the one just disliked scores lower on the next request. A dot product with the query still scores
    everything, so ScaNN serves it unchanged. A type absent from a history adds nothing.
    """
    one_hot = (tf.one_hot(tf.maximum(label_ids, 0), features.NUM_LABELS, dtype=candidates.dtype)
               * tf.cast(mask, candidates.dtype)[:, :, None])
    counts = tf.reduce_sum(one_hot, axis=1)  # [B, NUM_LABELS]
    means = tf.einsum("bln,bld->bnd", one_hot, candidates) / tf.maximum(counts, 1.0)[:, :, None]
    return tf.einsum("bnd,n->bd", means, weights)


def recency_positions(mask: tf.Tensor) -> tf.Tensor:
    """0 for the newest real token, 1 for the one before...; histories are left-aligned, oldest first."""
    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1, keepdims=True)
    index = tf.range(tf.shape(mask)[1])[None, :]
    return tf.where(mask, lengths - 1 - index, tf.zeros_like(index))


class QueryTower(tf.keras.Model):
    """History tokens (track + feedback type + recency) -> transformer -> masked mean (+ station) -> unit vector."""

    def __init__(self, config: TowerConfig, track_embedding: tf.keras.layers.Embedding,
                 candidate_projection: Optional[tf.keras.layers.Dense] = None, **kwargs) -> None:
        """candidate_projection: the candidate tower's projection, needed when config.direct_feedback is not 'off'."""
        super().__init__(**kwargs)
        self._config = config
        self._track_embedding = track_embedding
        self._direct_labels = direct_feedback_labels(config.direct_feedback)
        if config.direct_feedback != DIRECT_OFF and candidate_projection is None:
            raise ValueError("direct_feedback needs the candidate tower's projection; build the towers with build_towers")
        self._candidate_projection = candidate_projection if config.direct_feedback != DIRECT_OFF else None
        self._direct_weights = (self.add_weight(name="direct_feedback_weights", shape=(features.NUM_LABELS,),
                                                initializer="zeros", trainable=True,
                                                constraint=RejectionsRepel(REJECTION_LABEL_IDS))
                                if self._candidate_projection is not None else None)
        self._label_embedding = tf.keras.layers.Embedding(features.NUM_LABELS, config.embedding_dim)
        self._label_gain = (tf.keras.layers.Embedding(
            features.NUM_LABELS, config.embedding_dim, name="label_gain",
            embeddings_initializer=tf.keras.initializers.Constant(
                label_gains_start(config.embedding_dim, HISTORY_GAIN_STARTS[config.history_gains])))
            if config.history_gains != HISTORY_GAINS_OFF else None)
        self._position_embedding = tf.keras.layers.Embedding(config.max_history, config.embedding_dim)
        self._station_embedding = tf.keras.layers.Embedding(config.num_station_ids, config.embedding_dim)
        self._blocks = [
            TransformerBlock(config.embedding_dim, config.num_heads, config.dropout, name=f"block_{i}")
            for i in range(config.num_layers)
        ]
        self._final_norm = tf.keras.layers.LayerNormalization()
        self._projection = tf.keras.layers.Dense(config.embedding_dim)

    @property
    def track_table(self) -> tf.Variable:
        """The track embedding table [num_track_ids, D], shared with the candidate tower."""
        return self._track_embedding.embeddings

    @property
    def label_gain_table(self) -> "tf.Variable | None":
        """The per-feedback-type gains [NUM_LABELS, D] on history tracks (None with history_gains 'off')."""
        return self._label_gain.embeddings if self._label_gain is not None else None

    @property
    def station_table(self) -> tf.Variable:
        """The station embedding table [num_station_ids, D]."""
        return self._station_embedding.embeddings

    @property
    def direct_feedback_weights(self) -> "tf.Variable | None":
        """[NUM_LABELS] variable of each feedback type's direct weight, which is config.direct_feedback_scale times it (None
        with direct_feedback 'off'); types outside the setting's set are held at 0."""
        return self._direct_weights

    def label_embeddings(self) -> np.ndarray:
        """The feedback-type table [NUM_LABELS, D]: row i is contract.LABELS[i]."""
        return self._label_embedding.embeddings.numpy()

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        track_ids = inputs[features.HISTORY_TRACK_IDS_XF]
        label_ids = inputs[features.HISTORY_LABELS_XF]
        mask = tf.logical_and(inputs[features.HISTORY_MASK], label_ids >= 0)  # unknown labels act as padding
        known_labels = tf.maximum(label_ids, 0)
        tracks = self._track_embedding(track_ids)
        if self._label_gain is not None:
            tracks = tracks * self._label_gain(known_labels)
        tokens = (
            tracks
            + self._label_embedding(known_labels)
            + self._position_embedding(recency_positions(mask))
        )
        for block in self._blocks:
            tokens = block(tokens, mask, training=training)
        weights = tf.cast(pooling_weights(mask, label_ids, self._config.history_pooling), tokens.dtype)[:, :, None]
        pooled = tf.reduce_sum(self._final_norm(tokens) * weights, axis=1) / tf.maximum(
            tf.reduce_sum(weights, axis=1), 1.0
        )
        query = pooled + self._station_embedding(inputs[features.STATION_ID_XF])
        unit = tf.math.l2_normalize(self._projection(query), axis=-1)
        if self._direct_weights is not None:
            unit = unit + self._direct(track_ids, mask, label_ids)
        if not self._config.item_bias:
            return unit
        return tf.concat([unit, tf.ones_like(unit[:, :1])], axis=-1)

    def _direct(self, track_ids: tf.Tensor, mask: tf.Tensor, label_ids: tf.Tensor,
                types: Optional[np.ndarray] = None) -> tf.Tensor:
        chosen = self._direct_labels if types is None else self._direct_labels * np.asarray(types, np.float32)
        candidates = tf.math.l2_normalize(self._candidate_projection(self._track_embedding(track_ids)), axis=-1)
        return direct_feedback_vector(candidates, mask, label_ids, self._config.direct_feedback_scale
                                      * self._direct_weights * tf.constant(chosen))

    def direct_part(self, inputs: dict[str, tf.Tensor], types: Optional[np.ndarray] = None) -> tf.Tensor:
        """What the direct feedback term of the feedback types `types` ([NUM_LABELS] 0/1; None: all) adds to
        `call`'s output (zeros without the term; the bias column is 0)."""
        label_ids = inputs[features.HISTORY_LABELS_XF]
        mask = tf.logical_and(inputs[features.HISTORY_MASK], label_ids >= 0)
        width = self._config.output_dim
        if self._direct_weights is None:
            return tf.zeros([tf.shape(label_ids)[0], width])
        direct = self._direct(inputs[features.HISTORY_TRACK_IDS_XF], mask, label_ids, types)
        return tf.pad(direct, [[0, 0], [0, width - self._config.embedding_dim]])


class CandidateTower(tf.keras.Model):
    """Track ids (any shape) -> unit vectors of the same shape plus D (plus the bias column with item_bias).

    With `item_bias`, a track's vector is [unit, b] and the query's [unit, 1], so the score (the dot product
    every scorer, the loss and ScaNN already use) is cosine + b: the bias lives on the cosine's scale, so the
    optimizer moves it as fast as it moves an angle. The logQ-corrected softmax leaves how popular a track is to the model;
    a cosine alone can hardly say "this track is rejected by almost everyone", a scalar per track can.
    """

    def __init__(self, config: TowerConfig, track_embedding: tf.keras.layers.Embedding,
                 bias_prior: Optional[np.ndarray] = None, projection: Optional[tf.keras.layers.Dense] = None,
                 **kwargs) -> None:
        """bias_prior [num_track_ids]: where each track's bias starts (zeros when None); projection: a Dense layer
        to share with the query tower's direct feedback term (a new one when None)."""
        super().__init__(**kwargs)
        self._track_embedding = track_embedding
        self._projection = projection or tf.keras.layers.Dense(config.embedding_dim)
        initializer: Any = "zeros"
        if bias_prior is not None:
            if np.shape(bias_prior) != (config.num_track_ids,):
                raise ValueError(f"bias_prior must have one value per track id ({config.num_track_ids}), "
                                 f"got shape {np.shape(bias_prior)}")
            initializer = tf.keras.initializers.Constant(np.asarray(bias_prior, dtype=np.float32)[:, None])
        self._bias = (tf.keras.layers.Embedding(config.num_track_ids, 1, embeddings_initializer=initializer,
                                                name="track_bias") if config.item_bias else None)

    @property
    def bias_table(self) -> "tf.Variable | None":
        """The per-track bias [num_track_ids, 1] (None without item_bias); rows follow the track vocabulary."""
        return self._bias.embeddings if self._bias is not None else None

    def call(self, track_ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        unit = tf.math.l2_normalize(self._projection(self._track_embedding(track_ids)), axis=-1)
        if self._bias is None:
            return unit
        return tf.concat([unit, self._bias(track_ids)], axis=-1)


def build_towers(config: TowerConfig, bias_prior: Optional[np.ndarray] = None) -> tuple[QueryTower, CandidateTower]:
    """The two towers over one shared track table; bias_prior only matters with config.item_bias."""
    track_embedding = tf.keras.layers.Embedding(config.num_track_ids, config.embedding_dim, name="track_embedding")
    candidate_projection = tf.keras.layers.Dense(config.embedding_dim)
    shared = candidate_projection if config.direct_feedback != DIRECT_OFF else None
    return QueryTower(config, track_embedding, shared, name="query_tower"), CandidateTower(
        config, track_embedding, bias_prior, candidate_projection, name="candidate_tower"
    )


def popularity_prior(track_counts: np.ndarray, temperature: float) -> np.ndarray:
    """temperature * centred log(count + 1) per track id: a start for the item bias at which score / temperature
    already holds the log-popularity the logQ-corrected softmax does not give the cosine for free."""
    logs = np.log(np.asarray(track_counts, dtype=np.float64) + 1.0)
    return (temperature * (logs - logs.mean())).astype(np.float32)
