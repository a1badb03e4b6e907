"""A model the Trainer exported, loaded back from its files, and scored in another run's id space.

Each run's Transform numbers tracks by its own vocabulary, so comparing a new model with the last blessed
one means translating the new run's ids into the old model's: `IdMap` does that through the raw ids both
exports carry (`track_vocabulary.txt`, `station_vocabulary.txt`; the layout is models/export_format.py).
Unknown tracks and stations get the old model's OOV ids, exactly as its Transform would have given them.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from models import evaluation, export_format, features, memory, neighbours
from models.params import DislikePenalty


@dataclasses.dataclass(frozen=True)
class Vocabularies:
    """Raw ids in id order: tracks[i] has track id i; stations[i] has station id FIRST_STATION_ID + i."""

    tracks: Sequence[str]
    stations: Sequence[str]

    @classmethod
    def of_transform(cls, tf_transform_output: tft.TFTransformOutput) -> "Vocabularies":
        """A run's own vocabularies, as its Transform computed them."""
        tracks, _ = features.read_track_frequencies(tf_transform_output)
        return cls(tracks, features.read_station_vocabulary(tf_transform_output))

    @classmethod
    def read(cls, export_dir: str) -> "Vocabularies":
        """The vocabularies a Trainer export carries."""
        return cls(features.read_lines(os.path.join(export_dir, export_format.TRACK_VOCABULARY_FILE)),
                   features.read_lines(os.path.join(export_dir, export_format.STATION_VOCABULARY_FILE)))

    @property
    def track_oov_id(self) -> int:
        return len(self.tracks)

    @property
    def station_oov_id(self) -> int:
        return features.FIRST_STATION_ID + len(self.stations)


@dataclasses.dataclass(frozen=True)
class IdMap:
    """Reference-run ids -> a model's ids (arrays indexed by the reference id, OOV included)."""

    tracks: np.ndarray
    stations: np.ndarray

    @classmethod
    def between(cls, reference: Vocabularies, model: Vocabularies) -> "IdMap":
        track_index = {token: i for i, token in enumerate(model.tracks)}
        station_index = {token: features.FIRST_STATION_ID + i for i, token in enumerate(model.stations)}
        tracks = [track_index.get(token, model.track_oov_id) for token in reference.tracks] + [model.track_oov_id]
        stations = ([features.NO_STATION_ID]
                    + [station_index.get(token, model.station_oov_id) for token in reference.stations]
                    + [model.station_oov_id])
        return cls(np.asarray(tracks, dtype=np.int64), np.asarray(stations, dtype=np.int64))


@dataclasses.dataclass
class ExportedModel:
    """The query tower's SavedModel, the candidate embeddings and the vocabularies of one Trainer export."""

    directory: str
    query_signature: Any
    candidate_embeddings: np.ndarray
    vocabularies: Vocabularies
    config: dict[str, Any]
    feedback_embeddings: dict[str, list[float]]

    @classmethod
    def load(cls, model_uri: str) -> "ExportedModel":
        """From a Trainer `model` artifact URI (or the export folder itself)."""
        directory = export_format.exported_model_dir(model_uri)
        if not tf.io.gfile.exists(os.path.join(directory, export_format.MODEL_CONFIG_FILE)):
            directory = model_uri
        missing = [name for name in export_format.REQUIRED_FILES
                   if not tf.io.gfile.exists(os.path.join(directory, name))]
        if missing:
            raise FileNotFoundError(f"{directory} is not a complete Trainer export: missing {missing} "
                                    "(models exported before the vocabularies were added cannot be compared; retrain)")
        with tf.io.gfile.GFile(os.path.join(directory, export_format.CANDIDATE_EMBEDDINGS_FILE), "rb") as handle:
            embeddings = np.load(handle)
        with tf.io.gfile.GFile(os.path.join(directory, export_format.MODEL_CONFIG_FILE)) as handle:
            config = json.load(handle)
        with tf.io.gfile.GFile(os.path.join(directory, export_format.FEEDBACK_EMBEDDINGS_FILE)) as handle:
            feedback = json.load(handle)
        loaded = tf.saved_model.load(os.path.join(directory, export_format.QUERY_MODEL_DIR))
        vocabularies = Vocabularies.read(directory)
        if embeddings.shape[0] != vocabularies.track_oov_id + features.NUM_OOV_BUCKETS:
            raise ValueError(f"{directory}: {embeddings.shape[0]} candidate embeddings for "
                             f"{len(vocabularies.tracks)} tracks + OOV; the export is inconsistent")
        model = cls(directory, loaded.signatures["serving_default"], embeddings, vocabularies, config, feedback)
        model._loaded = loaded  # keeps the SavedModel's resources alive as long as the signature is used
        return model

    @property
    def max_history(self) -> int:
        return int(self.config["tower"]["max_history"])

    @property
    def memory_weights(self) -> Optional[np.ndarray]:
        """[NUM_LABELS] history memory offsets (models/memory.py); None for a model without the term."""
        return memory.weights_of(self.config.get(export_format.HISTORY_MEMORY_KEY))

    @property
    def dislike_penalty(self) -> Optional[DislikePenalty]:
        """The dislike-neighbour rule (models/neighbours.py); None when off or for a model that predates it."""
        return DislikePenalty.of_training(self.config.get("training", {}))

    @property
    def embedding_dim(self) -> int:
        """The candidate embeddings' unit-vector columns (an item bias is one more)."""
        return int(self.config["tower"]["embedding_dim"])

    def query_embeddings(self, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        outputs = self.query_signature(
            **{key: batch[key] for key in (features.HISTORY_TRACK_IDS_XF, features.HISTORY_LABELS_XF,
                                           features.HISTORY_MASK, features.STATION_ID_XF)})
        return outputs[export_format.QUERY_EMBEDDING]

    def scorer(self, id_map: Optional[IdMap] = None) -> evaluation.Scorer:
        """Scores over the reference run's catalog (this model's own when `id_map` is None)."""
        embeddings = self.candidate_embeddings if id_map is None else self.candidate_embeddings[id_map.tracks]
        candidates = tf.constant(embeddings)
        penalty = self.dislike_penalty
        units = None if penalty is None else neighbours.unit_part(embeddings, self.embedding_dim)

        def score(batch: dict[str, tf.Tensor]) -> np.ndarray:
            translated = batch
            if id_map is not None:
                translated = dict(batch)
                translated[features.HISTORY_TRACK_IDS_XF] = tf.gather(id_map.tracks,
                                                                      batch[features.HISTORY_TRACK_IDS_XF])
                translated[features.STATION_ID_XF] = tf.gather(id_map.stations, batch[features.STATION_ID_XF])
            scores = tf.matmul(self.query_embeddings(translated), candidates, transpose_b=True).numpy()
            # the reference run's ids, as the columns
            return evaluation.with_memory(scores, batch, self.memory_weights, penalty, units)

        return score
