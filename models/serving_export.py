"""The serving SavedModels of docs/design.md §7, built from a Trainer export: raw strings in, track ids and scores out.

Two twins share everything but the top-k index:
- `scann`: ScaNN's approximate top-k inside the graph (needs ScaNN's custom ops to load);
- `brute_force`: exact top-k with stock TensorFlow ops only, so a stock `tensorflow_model_server` loads it.

Request semantics (the same for both):
- `history_track_ids` / `history_feedback` [B, L], oldest first; a position whose track id or label is '' is
  padding, and an unknown label name acts as padding (as in training). Only the newest `max_history` real
  tokens are the listener's history. Unknown tracks get the OOV id, never an error.
- Tracks disliked within that history and every `exclude_track_ids` entry [B, E] ('' pads) never come back;
  the index retrieves K + E + max_history candidates so that K remain after the exclusions. Exclusions are
  matched as track ids, not strings: TFRS's `query_with_exclusions` compares the (K + E + L) x (E + L) string
  pairs with a broadcast string `Equal`, which took ~1 ms of a ~2 ms call (docs/serving.md, "Where the time
  goes"); the index returns catalog positions, which are the track ids, and an unknown or '' exclusion maps to
  the OOV id, which no candidate has, so the same tracks are removed.
- `station_id` [B], '' for none; an unknown station gets the OOV station id.
- A model with the history memory term (models/memory.py) rescores the retrieved candidates exactly and adds
  their offsets; the history's own catalog tracks join the candidates the same way (once each, unless already
  retrieved), so a history track that the index did not return can still be served. A model with the
  dislike-neighbour rule (models/neighbours.py) is rescored the same way, minus each candidate's penalty; an
  exact index then rescores the whole catalog, since the rule can lower any number of retrieved tracks.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from models import export_format, features, memory, metrics, neighbours
from models.exported import ExportedModel
# The settings live in a module without TensorFlow; callers may keep naming them here.
from models.serving_params import BRUTE_FORCE, INDEX_KINDS, SCANN, ScannParams, ServingParams  # noqa: F401
from schema import contract

QUERY_EMBEDDING_SIGNATURE = "query_embedding"
# Signature input and output names (the serving contract).
HISTORY_TRACK_IDS, HISTORY_FEEDBACK = "history_track_ids", "history_feedback"
STATION_ID, EXCLUDE_TRACK_IDS = "station_id", "exclude_track_ids"
TRACK_IDS, SCORES = "track_ids", "scores"
PAD = ""
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def build_index(kind: str, embeddings: np.ndarray, identifiers: Optional[Sequence[str]], k: int,
                scann: ScannParams) -> tfrs.layers.factorized_top_k.TopK:
    """A TFRS top-k layer over the catalog (the OOV row is never a candidate); without identifiers it returns
    row positions."""
    if kind == BRUTE_FORCE or (kind == SCANN and not scann.uses_scann(len(embeddings))):
        layer = tfrs.layers.factorized_top_k.BruteForce(k=k)
    elif kind == SCANN:
        leaves, to_search = scann.leaves(len(embeddings))
        layer = tfrs.layers.factorized_top_k.ScaNN(
            k=k, num_leaves=leaves, num_leaves_to_search=to_search,
            training_iterations=scann.scann_training_iterations,
            dimensions_per_block=scann.scann_dimensions_per_block,
            num_reordering_candidates=scann.scann_num_reordering_candidates or None)
    else:
        raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {kind!r}")
    if identifiers is None:
        return layer.index(tf.constant(embeddings, tf.float32))
    return layer.index(tf.constant(embeddings, tf.float32), tf.constant(list(identifiers), tf.string))


EXCLUDED_SCORE_PENALTY = 1.0e5
"""What an excluded candidate's score drops by before the final top-k (TFRS's `query_with_exclusions` value)."""


def exclude(scores: tf.Tensor, candidates: tf.Tensor, excluded: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor]:
    """(scores, candidate ids) [B, k] of the best candidates whose id is not in their row of `excluded`.

    The same arithmetic as TFRS's `factorized_top_k._exclude` (penalize, then top-k, so ties break alike), on
    int64 ids instead of strings."""
    isin = tf.reduce_any(tf.equal(tf.expand_dims(candidates, -1), tf.expand_dims(excluded, 1)), -1)
    _, best = tf.math.top_k(scores - tf.cast(isin, tf.float32) * EXCLUDED_SCORE_PENALTY, k=k)
    return tf.gather(scores, best, batch_dims=1), tf.gather(candidates, best, batch_dims=1)


def _lookup_table(keys: Sequence[str], values: Sequence[int], default: int) -> tf.lookup.StaticHashTable:
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(list(keys), tf.string), tf.constant(list(values), tf.int64)),
        default_value=default)


class RecommenderModule(tf.Module):
    """Raw-string requests -> the query tower -> top-k over the catalog, exclusions applied."""

    def __init__(self, model: ExportedModel, kind: str, serving: ServingParams, scann: ScannParams) -> None:
        super().__init__()
        vocab = model.vocabularies
        num_tracks = len(vocab.tracks)
        self._max_history = model.max_history
        self._max_exclusions = serving.max_exclusions
        self._retrieved = serving.top_k + serving.max_exclusions + self._max_history
        if self._retrieved > num_tracks:
            raise ValueError(f"top_k + max_exclusions + max_history = {self._retrieved} exceeds the catalog of "
                             f"{num_tracks} tracks; lower serving_top_k or serving_max_exclusions")
        self._k = serving.top_k
        if model.dislike_penalty is not None and (kind == BRUTE_FORCE or not scann.uses_scann(num_tracks)):
            # The rule can lower any number of retrieved tracks below ones the index left out; an exact index
            # stays exact only by rescoring the whole catalog (ScaNN's answers are approximate either way).
            self._retrieved = num_tracks
        self.query_model = tf.saved_model.load(os.path.join(model.directory, export_format.QUERY_MODEL_DIR))
        self.track_table = _lookup_table(vocab.tracks, range(num_tracks), vocab.track_oov_id)
        self.station_table = _lookup_table(
            vocab.stations, range(features.FIRST_STATION_ID, vocab.station_oov_id), vocab.station_oov_id)
        self.label_table = _lookup_table(contract.LABELS, range(len(contract.LABELS)), features.UNKNOWN_LABEL_ID)
        self.index = build_index(kind, model.candidate_embeddings[:num_tracks], None, self._retrieved, scann)
        self._scann_leaves = scann.leaves(num_tracks)[0]
        self._track_names = tf.constant(list(vocab.tracks), tf.string)
        self._track_oov_id = vocab.track_oov_id
        weights = model.memory_weights
        self._memory_weights = None if weights is None else tf.constant(weights, tf.float32)
        self._dislike_penalty = model.dislike_penalty
        self._rescores = weights is not None or self._dislike_penalty is not None
        self._candidates = tf.constant(model.candidate_embeddings[:num_tracks]) if self._rescores else None
        self._units = None if self._dislike_penalty is None else tf.constant(
            neighbours.unit_part(model.candidate_embeddings[:num_tracks], model.embedding_dim))
        # E is static in the signature: TF Serving has no optional inputs, and the index needs a fixed width.
        self.recommend = tf.function(self.recommend, input_signature=[
            tf.TensorSpec([None, None], tf.string, HISTORY_TRACK_IDS),
            tf.TensorSpec([None, None], tf.string, HISTORY_FEEDBACK),
            tf.TensorSpec([None], tf.string, STATION_ID),
            tf.TensorSpec([None, serving.max_exclusions], tf.string, EXCLUDE_TRACK_IDS),
        ])

    def _history(self, track_ids: tf.Tensor, feedback: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(ids, label ids, mask) of the newest max_history real tokens, left-aligned and padded."""
        labels = self.label_table.lookup(feedback)
        real = tf.logical_and(tf.not_equal(track_ids, PAD), labels >= 0)
        width = [None, self._max_history]

        def newest(values: tf.Tensor, pad) -> tf.Tensor:
            return tf.ragged.boolean_mask(values, real)[:, -self._max_history:].to_tensor(pad, shape=width)

        raw = newest(track_ids, PAD)
        mask = tf.ragged.boolean_mask(tf.ones_like(real), real)[:, -self._max_history:].to_tensor(False, shape=width)
        ids = tf.where(mask, self.track_table.lookup(raw), tf.constant(features.PAD_ID, tf.int64))
        return ids, newest(labels, tf.constant(0, tf.int64)), mask

    def _query(self, history_track_ids: tf.Tensor, history_feedback: tf.Tensor,
               station_id: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
        """(query embedding, disliked history ids (OOV elsewhere), the history as (ids, label ids, mask))."""
        ids, labels, mask = self._history(history_track_ids, history_feedback)
        stations = tf.where(tf.equal(station_id, PAD), tf.constant(features.NO_STATION_ID, tf.int64),
                            self.station_table.lookup(station_id))
        embedding = self.query_model.signatures["serving_default"](**{
            features.HISTORY_TRACK_IDS_XF: ids, features.HISTORY_LABELS_XF: labels,
            features.HISTORY_MASK: mask, features.STATION_ID_XF: stations,
        })[export_format.QUERY_EMBEDDING]
        disliked = tf.logical_and(mask, tf.equal(labels, contract.LABELS.index(contract.DISLIKE)))
        return embedding, tf.where(disliked, ids, tf.constant(self._track_oov_id, tf.int64)), (ids, labels, mask)

    def _with_memory(self, embedding: tf.Tensor, candidates: tf.Tensor,
                     history: tuple[tf.Tensor, tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """The retrieved candidates plus the history's catalog tracks not among them (each once), every score
        the exact dot product plus its memory offset, minus its dislike-neighbour penalty: [B, R + L]; a history
        position that adds nothing scores below any exclusion. Exact, because ScaNN's scores are approximate (off
        by up to ~0.2 on the test model) and a history track's must be comparable with them. The penalty only
        lowers scores, so the top-k is drawn from the R retrieved: with ScaNN, a track it would have lifted past
        one of them was not retrieved and cannot be (an exact index retrieves the whole catalog for the rule)."""
        ids, labels, mask = history
        scores = tf.einsum("bd,brd->br", embedding, tf.gather(self._candidates, candidates))
        positions = tf.range(self._max_history)
        earlier = positions[None, :] < positions[:, None]  # [L, L]: column j comes before row i
        repeated = tf.reduce_any(tf.equal(ids[:, :, None], ids[:, None, :]) & earlier[None] & mask[:, None, :], -1)
        retrieved = tf.reduce_any(tf.equal(ids[:, :, None], candidates[:, None, :]), -1)
        usable = mask & (ids < self._track_oov_id) & ~repeated & ~retrieved
        own = tf.einsum("bd,bld->bl", embedding, tf.gather(self._candidates, tf.minimum(ids, self._track_oov_id - 1)))
        all_ids = tf.concat([candidates, ids], axis=1)
        all_scores = tf.concat([scores, tf.where(usable, own, -2.0 * EXCLUDED_SCORE_PENALTY)], axis=1)
        if self._memory_weights is not None:
            all_scores += memory.offsets(self._memory_weights, all_ids, ids, labels, mask)
        if self._dislike_penalty is not None:
            def units(track_ids: tf.Tensor) -> tf.Tensor:
                return tf.gather(self._units, tf.minimum(track_ids, self._track_oov_id - 1))

            disliked = mask & (ids < self._track_oov_id) & tf.equal(labels, neighbours.DISLIKE_ID)
            all_scores -= tf.cond(  # a request without a dislike skips the work
                tf.reduce_any(disliked),
                lambda: neighbours.penalties(self._dislike_penalty, units(all_ids), units(ids), disliked),
                lambda: tf.zeros_like(all_scores))
        return all_scores, all_ids

    def _retrieve(self, embedding: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The index's best `retrieved` candidates per row.

        ScaNN returns only what its searched leaves hold: a query that lands among small leaves can get fewer
        than top_k + max_exclusions + max_history candidates (seen: 92 where 100 were needed, on a 3,000-track
        catalog searching a few leaves), and the final top-k would then fail the request. Such a batch is
        searched again over every leaf, which always holds enough (the constructor checks the catalog)."""
        scores, candidates = self.index(embedding, k=self._retrieved)
        if not isinstance(self.index, tfrs.layers.factorized_top_k.ScaNN):
            return scores, candidates

        def every_leaf() -> tuple[tf.Tensor, tf.Tensor]:
            from scann.scann_ops.py import scann_ops

            # TFRS's ScaNN layer keeps its searcher here and exposes no leaves_to_search per call; a TFRS upgrade
            # that moves it fails the export's own check (`export` calls recommend) and tests/test_serving_export.py.
            searcher = scann_ops.searcher_from_module(self.index._serialized_searcher)
            result = searcher.search_batched(embedding, final_num_neighbors=self._retrieved,
                                             leaves_to_search=self._scann_leaves)
            return result.distances, tf.cast(result.indices, candidates.dtype)

        return tf.cond(tf.shape(candidates)[1] < self._retrieved, every_leaf, lambda: (scores, candidates))

    def recommend(self, history_track_ids, history_feedback, station_id, exclude_track_ids):
        embedding, disliked, history = self._query(history_track_ids, history_feedback, station_id)
        excluded = tf.concat([self.track_table.lookup(exclude_track_ids), disliked], axis=1)
        scores, candidates = self._retrieve(embedding)
        candidates = tf.cast(candidates, tf.int64)
        if self._rescores:
            scores, candidates = self._with_memory(embedding, candidates, history)
        scores, best = exclude(scores, candidates, excluded, self._k)
        track_ids = tf.gather(self._track_names, best)
        # Declared [B, K]: clients read K from the metadata, and servers batch only fully shaped signatures.
        return {TRACK_IDS: tf.ensure_shape(track_ids, [None, self._k]), SCORES: tf.ensure_shape(scores, [None, self._k])}

    @tf.function(input_signature=[
        tf.TensorSpec([None, None], tf.string, HISTORY_TRACK_IDS),
        tf.TensorSpec([None, None], tf.string, HISTORY_FEEDBACK),
        tf.TensorSpec([None], tf.string, STATION_ID),
    ])
    def query_embedding(self, history_track_ids, history_feedback, station_id):
        embedding, _, _ = self._query(history_track_ids, history_feedback, station_id)
        return {export_format.QUERY_EMBEDDING: embedding}


def example_request_inputs(model: ExportedModel, serving: ServingParams) -> dict[str, np.ndarray]:
    """One realistic request (the most played tracks as a history) for warm-up and smoke checks."""
    tracks = list(model.vocabularies.tracks[: min(3, len(model.vocabularies.tracks))])
    feedback = [contract.LIKE, contract.LISTEN, contract.SKIP][: len(tracks)]
    return {
        HISTORY_TRACK_IDS: np.array([tracks], dtype=object),
        HISTORY_FEEDBACK: np.array([feedback], dtype=object),
        STATION_ID: np.array([PAD], dtype=object),
        EXCLUDE_TRACK_IDS: np.array([[PAD] * serving.max_exclusions], dtype=object),
    }


def write_warmup(export_dir: str, model_name: str, inputs: dict[str, np.ndarray]) -> str:
    """assets.extra/tf_serving_warmup_requests: PredictionLogs TF Serving replays before serving a version."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = "serving_default"
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value.astype(bytes), dtype=tf.string))
    path = os.path.join(export_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString())
    return path


def export(model: ExportedModel, kind: str, export_dir: str, model_name: str, serving: ServingParams,
           scann: ScannParams) -> str:
    """Writes one serving SavedModel (with warm-up requests) and checks it answers the example request."""
    module = RecommenderModule(model, kind, serving, scann)
    inputs = example_request_inputs(model, serving)
    module.recommend(**{key: tf.constant(value.astype(bytes)) for key, value in inputs.items()})  # ScaNN needs one call
    tf.saved_model.save(module, export_dir, signatures={
        "serving_default": module.recommend, QUERY_EMBEDDING_SIGNATURE: module.query_embedding})
    write_warmup(export_dir, model_name, inputs)
    return export_dir


def exact_top_k(queries: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """Row-wise ids of the k highest dot products, best first (the reference ANN recall is measured against).

    Its first k' columns are the exact top-k' for every k' < k, so one call serves every k measured."""
    k = min(k, candidates.shape[0])
    tops = []
    for rows in metrics.row_blocks(len(queries), candidates.shape[0]):
        scores = queries[rows] @ candidates.T
        part = np.argpartition(scores, scores.shape[1] - k, axis=1)[:, -k:]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        tops.append(np.take_along_axis(part, order, axis=1))
    return np.concatenate(tops) if tops else np.zeros((0, k), dtype=np.int64)


def ann_recall(queries: np.ndarray, candidates: np.ndarray, identifiers: Sequence[str], ks: Sequence[int],
               scann: ScannParams, exact_top: Optional[np.ndarray] = None) -> dict[int, float]:
    """ScaNN's recall@k against exact top-k on the same queries: |approx ∩ exact| / k, averaged.

    exact_top is `exact_top_k(queries, candidates, max(ks))` when the caller already has it (a sweep over
    ScaNN settings measures the same queries against the same exact answer)."""
    top = max(ks)
    index = build_index(SCANN, candidates, identifiers, top, scann)
    _, approx = index(tf.constant(queries, tf.float32), k=top)
    approx_rows = [[value.decode("utf-8") for value in row] for row in approx.numpy()]
    names = np.asarray(identifiers, dtype=object)
    exact_ids = names[exact_top_k(queries, candidates, top) if exact_top is None else exact_top]
    result = {}
    for k in ks:
        exact = exact_ids[:, :k]
        result[k] = float(np.mean([len(set(a[:k]) & set(e)) / len(e) for a, e in zip(approx_rows, exact)]))
    return result
