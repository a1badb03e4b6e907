"""The two towers of DESIGN §5: a transformer over the listener's feedback-typed history, and the track tower.

Both towers share one track embedding table, so a track means the same thing as a history token and as
a candidate (as in SASRec-style sequence recommenders); each tower has its own projection on top.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from models import features


@dataclasses.dataclass(frozen=True)
class TowerConfig:
    num_track_ids: int
    num_station_ids: int
    embedding_dim: int = 64
    num_layers: int = 2
    num_heads: int = 2
    max_history: int = 20
    dropout: float = 0.1


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


def recency_positions(mask: tf.Tensor) -> tf.Tensor:
    """0 for the newest real token, 1 for the one before...; histories are left-aligned, oldest first."""
    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1, keepdims=True)
    index = tf.range(tf.shape(mask)[1])[None, :]
    return tf.where(mask, lengths - 1 - index, tf.zeros_like(index))


class QueryTower(tf.keras.Model):
    """History tokens (track + feedback type + recency) -> transformer -> masked mean (+ station) -> unit vector."""

    def __init__(self, config: TowerConfig, track_embedding: tf.keras.layers.Embedding, **kwargs) -> None:
        super().__init__(**kwargs)
        self._config = config
        self._track_embedding = track_embedding
        self._label_embedding = tf.keras.layers.Embedding(features.NUM_LABELS, config.embedding_dim)
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
    def station_table(self) -> tf.Variable:
        """The station embedding table [num_station_ids, D]."""
        return self._station_embedding.embeddings

    def label_embeddings(self) -> np.ndarray:
        """The feedback-type table [NUM_LABELS, D]: row i is contract.LABELS[i]."""
        return self._label_embedding.embeddings.numpy()

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        track_ids = inputs[features.HISTORY_TRACK_IDS_XF]
        label_ids = inputs[features.HISTORY_LABELS_XF]
        mask = tf.logical_and(inputs[features.HISTORY_MASK], label_ids >= 0)  # unknown labels act as padding
        tokens = (
            self._track_embedding(track_ids)
            + self._label_embedding(tf.maximum(label_ids, 0))
            + self._position_embedding(recency_positions(mask))
        )
        for block in self._blocks:
            tokens = block(tokens, mask, training=training)
        weights = tf.cast(mask, tokens.dtype)[:, :, None]
        pooled = tf.reduce_sum(self._final_norm(tokens) * weights, axis=1) / tf.maximum(
            tf.reduce_sum(weights, axis=1), 1.0
        )
        query = pooled + self._station_embedding(inputs[features.STATION_ID_XF])
        return tf.math.l2_normalize(self._projection(query), axis=-1)


class CandidateTower(tf.keras.Model):
    """Track ids (any shape) -> unit vectors of the same shape plus D."""

    def __init__(self, config: TowerConfig, track_embedding: tf.keras.layers.Embedding, **kwargs) -> None:
        super().__init__(**kwargs)
        self._track_embedding = track_embedding
        self._projection = tf.keras.layers.Dense(config.embedding_dim)

    def call(self, track_ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        return tf.math.l2_normalize(self._projection(self._track_embedding(track_ids)), axis=-1)


def build_towers(config: TowerConfig) -> tuple[QueryTower, CandidateTower]:
    track_embedding = tf.keras.layers.Embedding(config.num_track_ids, config.embedding_dim, name="track_embedding")
    return QueryTower(config, track_embedding, name="query_tower"), CandidateTower(
        config, track_embedding, name="candidate_tower"
    )
