"""`run_fn` for the TFX Trainer: train the two towers with sampled softmax and real hard negatives, export them.

Writes to the model run directory (`fn_args.model_run_dir`): TensorBoard logs and `training_history.json`
(one row per epoch: wall seconds, train loss, eval pairwise accuracy, eval recall@10 and @100, ...).
Writes to the model directory (`fn_args.serving_model_dir`): the query tower as a SavedModel, the candidate
embeddings of the whole vocabulary, `model_config.json`, the vocabularies and the towers' weights; the
evaluator and the ServingExporter start from these. models/export_format.py names every file.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time
from typing import Any, Optional

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tensorflow_transform as tft

from models import distribution, evaluation, exported, features, inputs, loss, memory, optimizer, warm_start
from models.export_format import (CANDIDATE_EMBEDDINGS_FILE, FEEDBACK_EMBEDDINGS_FILE, HISTORY_MEMORY_KEY, MODEL_CONFIG_FILE,
                                  QUERY_EMBEDDING, QUERY_MODEL_DIR, STATION_VOCABULARY_FILE,
                                  TRACK_VOCABULARY_FILE, TRAINING_HISTORY_FILE)
from models.params import (ACCURACY_WITH_RECALL_FLOOR, CANDIDATES_NEW, DIRECT_OFF, EARLY_STOPPING_RULES,
                           MOST_POPULAR_FLOOR_RULES, PAIRWISE_ACCURACY, PAIRWISE_PLUS_RECALL, DislikePenalty,
                           QUERY_ALL, QUERY_DISLIKES, QUERY_NONE, RECALL_AT_100, SUM_WITH_FLOORS, TrainingParams)
from models.towers import QueryTower, TowerConfig, build_towers, popularity_prior
from schema import contract

EARLY_STOPPING_METRIC = "eval_early_stopping_metric"
"""The eval number early stopping watches (`early_stopping_value`)."""
CANDIDATE_BATCH = 8192
EPOCH_EVAL_QUERIES = 10_000
"""The evaluation after each epoch (early stopping, the history) scores at most this many eval examples: a uniform
sample seeded by the training seed, the same examples every epoch, so its cost grows with the catalog and not
with catalog x eval split. Eval splits of the 200k-play presets (~1,800-6,100 examples) are scored whole. The
evaluation of record is RetrievalEvaluator's, with its own cap (pipeline/configs.py max_test_queries)."""

log = logging.getLogger(__name__)
DISLIKE_TYPE = (np.asarray(contract.LABELS) == contract.DISLIKE).astype(np.float32)
"""[NUM_LABELS] 1 for dislikes only: the direct weight negative_loss_on_query 'dislikes' lets the term move."""


class RetrievalModel(tfrs.models.Model):
    """The two towers and the loss of docs/design.md §5; `compute_loss` is one training step's objective."""

    def __init__(self, tower_config: TowerConfig, params: TrainingParams, track_counts: np.ndarray) -> None:
        super().__init__()
        prior = (params.item_bias_prior_scale * popularity_prior(track_counts, params.temperature)
                 if params.item_bias else None)
        self.query_tower, self.candidate_tower = build_towers(tower_config, prior)
        self._params = params
        self._loss = loss.RetrievalLoss(
            negative_loss=params.negative_loss, negative_loss_weight=params.negative_loss_weight,
            temperature=params.temperature, hard_negative_weight=params.hard_negative_weight,
            shared_columns=1 if params.item_bias and not params.negative_loss_on_bias else 0,
            term_moves_candidates=params.negative_loss_on_candidates,
        )
        self._sampler = loss.CandidateSampler(track_counts, params.sampler, params.sampler_alpha)
        self._positive_log_q = tf.constant(loss.in_batch_log_q(track_counts, params.batch_size), dtype=tf.float32)
        self._sample_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="sample_step",
                                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.memory = (memory.HistoryMemory(params.history_memory, name="history_memory")
                       if params.history_memory != DIRECT_OFF else None)

    def loss_queries(self, query: tf.Tensor, batch: dict[str, tf.Tensor]) -> tuple[tf.Tensor, Optional[tf.Tensor]]:
        """(the query the softmax scores with, the one the real-negative term scores with: None when the same).

        All are `query` in value; negative_loss_on_query decides where gradient stops. The term's query: `query`
        with 'all'; stopped everywhere with 'none'; everywhere but the direct feedback term with 'direct', or
        but the dislikes' direct weight with 'dislikes'. With 'dislikes' that weight is also the term's alone: the
        softmax would hold it at its ceiling of 0 (a disliked track is rarely a negative it sees), and on a small
        log a served thumbs-down then changed nothing (docs/model-and-loss.md section 11)."""
        moves = self._params.negative_loss_on_query
        if moves == QUERY_ALL:
            return query, None
        frozen = tf.stop_gradient(query)
        if moves == QUERY_NONE:
            return query, frozen
        direct = self.query_tower.direct_part(batch, DISLIKE_TYPE if moves == QUERY_DISLIKES else None)
        direct_alone = direct - tf.stop_gradient(direct)  # 0 in value; carries only the direct weights' gradient
        softmax_query = query - direct_alone if moves == QUERY_DISLIKES else query
        return softmax_query, frozen + direct_alone

    def memory_weights(self) -> Optional[np.ndarray]:
        """[NUM_LABELS] offsets of the history memory term (None without it)."""
        return None if self.memory is None else self.memory.label_weights().numpy()

    def scorer(self, embeddings: np.ndarray) -> evaluation.Scorer:
        """What every later scorer of this model computes: the towers, the memory, the dislike-neighbour rule."""
        penalty = DislikePenalty.of_training(dataclasses.asdict(self._params))
        return evaluation.embedding_scorer(self.query_tower, embeddings, self.memory_weights(), penalty,
                                           self._params.embedding_dim)

    def _offsets(self, batch: dict[str, tf.Tensor], **candidate_ids: Optional[tf.Tensor]) -> loss.ScoreOffsets:
        if self.memory is None:
            return loss.NO_OFFSETS
        history = (batch[features.HISTORY_TRACK_IDS_XF], batch[features.HISTORY_LABELS_XF],
                   batch[features.HISTORY_MASK])
        return loss.ScoreOffsets(**{block: None if ids is None else self.memory(ids, *history)
                                    for block, ids in candidate_ids.items()})

    def compute_loss(self, batch: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        query = self.query_tower(batch, training=training)
        query, term_query = self.loss_queries(query, batch)
        positive_ids = batch[features.TARGET_TRACK_ID_XF]
        random_ids = hard_ids = None
        arguments: dict[str, Any] = dict(
            query=query,
            positive=self.candidate_tower(positive_ids, training=training),
            positive_ids=positive_ids,
            user_ids=batch[features.USER_ID_XF],
            positive_log_q=tf.gather(self._positive_log_q, positive_ids),
        )
        if self._params.num_random_negatives:
            step = self._sample_step.assign_add(1)
            seed = tf.stack([tf.constant(self._params.seed, tf.int64), step])
            random_ids, random_log_q = self._sampler.sample(self._params.num_random_negatives, seed)
            arguments.update(
                random=self.candidate_tower(random_ids, training=training),
                random_ids=random_ids,
                random_log_q=random_log_q,
            )
        if self._params.hard_negatives_in_loss and self._params.max_hard_negatives:
            hard_ids = batch[features.HARD_NEGATIVE_TRACK_IDS_XF]
            arguments.update(
                hard=self.candidate_tower(hard_ids, training=training),
                hard_ids=hard_ids,
                hard_mask=batch[features.HARD_NEGATIVE_MASK],
            )
            if self._params.negative_loss_on_candidates == CANDIDATES_NEW:
                arguments["hard_in_history"] = in_history(hard_ids, batch[features.HISTORY_TRACK_IDS_XF],
                                                          batch[features.HISTORY_MASK])
        arguments["term_query"] = term_query
        arguments["offsets"] = self._offsets(batch, positive=positive_ids[:, None], in_batch=positive_ids,
                                             random=random_ids, hard=hard_ids)
        # Each replica's mean loss over its share of the batch; gradients are summed over replicas.
        return self._loss(**arguments) / tf.distribute.get_strategy().num_replicas_in_sync


def in_history(track_ids: tf.Tensor, history_ids: tf.Tensor, history_mask: tf.Tensor) -> tf.Tensor:
    """[B, K] bool: track_ids [B, K] that are a real token of the row's history [B, L]."""
    same = tf.equal(track_ids[:, :, None], tf.cast(history_ids, track_ids.dtype)[:, None, :])
    return tf.reduce_any(same & history_mask[:, None, :], axis=-1)


def candidate_embeddings(candidate_tower: tf.keras.Model, num_track_ids: int) -> np.ndarray:
    """Embeddings of every track id (vocabulary and OOV), [num_track_ids, D] float32."""
    ids = tf.data.Dataset.range(num_track_ids).batch(CANDIDATE_BATCH)
    return np.concatenate([candidate_tower(batch, training=False).numpy() for batch in ids]).astype(np.float32)


def early_stopping_value(rule: str, pairwise_accuracy: float, recall_at_100: float,
                         recall_floor: Optional[float] = None, accuracy_floor: Optional[float] = None) -> float:
    """What early stopping maximises: pairwise accuracy, recall@100, their sum, or one of two rules with
    most-popular's eval numbers as floors (the blessing's `beats_most_popular` rule applied while training):

    - (the default) their sum among the epochs whose pairwise accuracy reaches `accuracy_floor` and whose
      recall@100 reaches `recall_floor`. With the real-negative term accuracy peaks an epoch or two before
      recall has finished rising; the best accuracy alone then kept models that gave up 0.03-0.05 of recall@100
      for 0.005 of accuracy (docs/model-and-loss.md section 13);
    - pairwise accuracy among the epochs whose recall@100 reaches `recall_floor`.

    An epoch under a floor can never be kept over one that reaches both: its value is its worst margin (below
    0), the others' 2 + the sum (1 + accuracy for the second rule). Recall@100 alone when the eval split has no
    real negative to pair with; a missing (NaN) accuracy floor is no floor.
    """
    if rule == RECALL_AT_100 or not np.isfinite(pairwise_accuracy):
        return recall_at_100
    if rule == PAIRWISE_ACCURACY:
        return pairwise_accuracy
    if rule == PAIRWISE_PLUS_RECALL:
        return pairwise_accuracy + recall_at_100
    if rule in MOST_POPULAR_FLOOR_RULES and recall_floor is None:
        raise ValueError(f"early_stopping={rule!r} needs the most-popular recall floor")
    if rule == ACCURACY_WITH_RECALL_FLOOR:
        return 1.0 + pairwise_accuracy if recall_at_100 >= recall_floor else recall_at_100 - recall_floor
    if rule == SUM_WITH_FLOORS:
        if accuracy_floor is None:
            raise ValueError(f"early_stopping={rule!r} needs the most-popular accuracy floor")
        margins = [recall_at_100 - recall_floor]
        if np.isfinite(accuracy_floor):
            margins.append(pairwise_accuracy - accuracy_floor)
        worst = min(margins)
        return 2.0 + pairwise_accuracy + recall_at_100 if worst >= 0 else worst
    raise ValueError(f"early_stopping must be one of {EARLY_STOPPING_RULES}, got {rule!r}")


class EvalAndHistory(tf.keras.callbacks.Callback):
    """After each epoch: exact eval metrics into the logs (for early stopping), TensorBoard and the history file.

    Only the numbers early stopping and the history use are computed (`evaluation.ranking_and_pairs`, exact):
    the evaluator's full report (`evaluation.collect`) cost about 11x the CPU per epoch on a 1M-play log.
    """

    def __init__(self, model: RetrievalModel, eval_dataset: tf.data.Dataset, num_track_ids: int,
                 train_examples: int, history_path: str, log_dir: str,
                 early_stopping: str = SUM_WITH_FLOORS,
                 track_counts: Optional[np.ndarray] = None, eval_examples_in_split: Optional[int] = None) -> None:
        """track_counts (training plays per track id) set the most-popular floors, once, before epoch 1.
        eval_examples_in_split: how many examples the eval split holds when eval_dataset is a sample of it."""
        super().__init__()
        self._eval_examples_in_split = eval_examples_in_split
        self._early_stopping = early_stopping
        self._recall_floor: Optional[float] = None
        self._accuracy_floor: Optional[float] = None
        if early_stopping in MOST_POPULAR_FLOOR_RULES:
            if track_counts is None:
                raise ValueError(f"early_stopping={early_stopping!r} needs the track counts of the training split")
            baseline = evaluation.ranking_and_pairs(eval_dataset, evaluation.popularity_scorer(track_counts))
            self._recall_floor = float(baseline["recall_at_k"][100])
            self._accuracy_floor = float(baseline["pairwise_accuracy"])
        self._retrieval = model
        self._eval_dataset = eval_dataset
        self._num_track_ids = num_track_ids
        self._train_examples = train_examples
        self._history_path = history_path
        self._writer = tf.summary.create_file_writer(os.path.join(log_dir, "eval"))
        self.rows: list[dict[str, Any]] = []

    def on_train_begin(self, logs: Optional[dict] = None) -> None:
        self._started = time.perf_counter()
        self._train_seconds = 0.0

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        self._epoch_started = time.perf_counter()
        self._batch_losses: list[float] = []

    def on_train_batch_end(self, batch: int, logs: Optional[dict] = None) -> None:
        # tfrs.Model reports the last batch's loss, not the epoch's mean: keep every batch's value.
        self._batch_losses.append(float((logs or {})["loss"]))

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        logs = logs if logs is not None else {}
        epoch_seconds = time.perf_counter() - self._epoch_started
        self._train_seconds += epoch_seconds
        embeddings = candidate_embeddings(self._retrieval.candidate_tower, self._num_track_ids)
        result = evaluation.ranking_and_pairs(
            self._eval_dataset, self._retrieval.scorer(embeddings))
        accuracy = result["pairwise_accuracy"]
        logs[EARLY_STOPPING_METRIC] = early_stopping_value(self._early_stopping, accuracy, result["recall_at_k"][100],
                                                           self._recall_floor, self._accuracy_floor)
        row = {
            "epoch": epoch + 1,
            "train_seconds": round(epoch_seconds, 3),
            "train_seconds_cumulative": round(self._train_seconds, 3),
            "wall_seconds": round(time.perf_counter() - self._started, 3),
            "examples_per_second": round(self._train_examples / epoch_seconds, 1) if epoch_seconds else None,
            "train_loss": float(np.mean(self._batch_losses)),
            "eval_pairwise_accuracy": accuracy,
            "eval_pairs": result["pairs"],
            "eval_queries": result["queries"],
            "eval_examples_in_split": self._eval_examples_in_split,
            "eval_recall_at_10": result["recall_at_k"][10],
            "eval_recall_at_100": result["recall_at_k"][100],
            "eval_mrr": result["mrr"],
            "eval_early_stopping_value": logs[EARLY_STOPPING_METRIC],
            "eval_recall_floor": self._recall_floor,
            "eval_accuracy_floor": self._accuracy_floor,
        }
        self.rows.append(row)
        with self._writer.as_default(step=epoch + 1):
            for key in ("eval_pairwise_accuracy", "eval_recall_at_10", "eval_recall_at_100", "eval_mrr"):
                tf.summary.scalar(key, row[key])
        with tf.io.gfile.GFile(self._history_path, "w") as handle:
            json.dump({"epochs": self.rows}, handle, indent=2)
        log.info("epoch %d: loss %.4f, eval pairwise accuracy %.4f, recall@10 %.4f, recall@100 %.4f, %.1f s, %s ex/s",
                 row["epoch"], row["train_loss"], accuracy, row["eval_recall_at_10"], row["eval_recall_at_100"],
                 epoch_seconds, row["examples_per_second"])


def count_examples(dataset: tf.data.Dataset) -> int:
    return int(sum(int(tf.shape(batch[features.TARGET_TRACK_ID_XF])[0]) for batch in dataset))


def export_towers(model: RetrievalModel, tower_config: TowerConfig, params: TrainingParams, output_dir: str,
                  embeddings: np.ndarray, tf_transform_output: tft.TFTransformOutput,
                  warm_started: Optional[warm_start.WarmStart] = None) -> None:
    """The query tower over padded id inputs as a SavedModel, every candidate's embedding, the vocabularies,
    the towers' weights (a checkpoint a later run warm-starts from).

    The vocabularies travel with the model so that a later run (whose Transform may number tracks
    differently) can still score this model on its own examples (the evaluator's baseline comparison) and
    start from its embeddings (warm start).
    """
    length = tower_config.max_history
    signature = tf.function(
        lambda history_track_ids, history_labels, history_mask, station_id: {
            QUERY_EMBEDDING: model.query_tower(
                {
                    features.HISTORY_TRACK_IDS_XF: history_track_ids,
                    features.HISTORY_LABELS_XF: history_labels,
                    features.HISTORY_MASK: history_mask,
                    features.STATION_ID_XF: station_id,
                },
                training=False,
            )
        },
        input_signature=[
            tf.TensorSpec([None, length], tf.int64, features.HISTORY_TRACK_IDS_XF),
            tf.TensorSpec([None, length], tf.int64, features.HISTORY_LABELS_XF),
            tf.TensorSpec([None, length], tf.bool, features.HISTORY_MASK),
            tf.TensorSpec([None], tf.int64, features.STATION_ID_XF),
        ],
    )
    tf.saved_model.save(model.query_tower, os.path.join(output_dir, QUERY_MODEL_DIR), signatures={"serving_default": signature})
    with tf.io.gfile.GFile(os.path.join(output_dir, CANDIDATE_EMBEDDINGS_FILE), "wb") as handle:
        np.save(handle, embeddings)
    with tf.io.gfile.GFile(os.path.join(output_dir, MODEL_CONFIG_FILE), "w") as handle:
        json.dump({"tower": dataclasses.asdict(tower_config), "training": dataclasses.asdict(params),
                   "warm_start": warm_started.as_dict() if warm_started else None,
                   HISTORY_MEMORY_KEY: memory.weights_by_label(model.memory_weights())}, handle, indent=2)
    warm_start.write_weights(model.query_tower, model.candidate_tower, output_dir)
    vocabulary = exported.Vocabularies.of_transform(tf_transform_output)
    write_lines(os.path.join(output_dir, TRACK_VOCABULARY_FILE), list(vocabulary.tracks))
    write_lines(os.path.join(output_dir, STATION_VOCABULARY_FILE), list(vocabulary.stations))
    with tf.io.gfile.GFile(os.path.join(output_dir, FEEDBACK_EMBEDDINGS_FILE), "w") as handle:
        json.dump(feedback_type_embeddings(model.query_tower), handle, indent=2)


def write_lines(path: str, lines: list[str]) -> None:
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write("".join(line + "\n" for line in lines))


def feedback_type_embeddings(query_tower: QueryTower) -> dict[str, list[float]]:
    """The learned embedding of each feedback type (contract.LABELS order)."""
    table = query_tower.label_embeddings()
    return {label: [float(value) for value in table[index]] for index, label in enumerate(contract.LABELS)}


@dataclasses.dataclass
class Trained:
    model: RetrievalModel
    tower_config: TowerConfig
    history: EvalAndHistory
    warm_started: Optional[warm_start.WarmStart]


def tower_config_of(params: TrainingParams, num_track_ids: int, num_station_ids: int) -> TowerConfig:
    """The towers' shape from the training settings and the vocabulary sizes (one place, for the Trainer and the
    benchmarks that build its model)."""
    return TowerConfig(
        num_track_ids=num_track_ids,
        num_station_ids=num_station_ids,
        embedding_dim=params.embedding_dim,
        num_layers=params.num_layers,
        num_heads=params.num_heads,
        max_history=params.max_history,
        dropout=params.dropout,
        item_bias=params.item_bias,
        history_gains=params.history_gains,
        history_pooling=params.history_pooling,
        direct_feedback=params.direct_feedback,
        direct_feedback_scale=params.direct_feedback_scale,
    )


def train(fn_args, params: TrainingParams, strategy: Optional[tf.distribute.Strategy] = None) -> Trained:
    """Fits the model with early stopping on the eval split; returns it with the best epoch's weights.

    With `params.warm_start` and a base model (`fn_args.base_model`, the last blessed one), training starts
    from its weights (models/warm_start.py). Variables live in `strategy`'s scope (the default strategy if None).
    """
    strategy = strategy or tf.distribute.get_strategy()
    tf.keras.utils.set_random_seed(params.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    counts = features.track_counts_by_id(tf_transform_output)
    tower_config = tower_config_of(params, features.num_track_ids(tf_transform_output),
                                   features.num_station_ids(tf_transform_output))

    def dataset(files: list[str], shuffle: bool) -> tf.data.Dataset:
        return inputs.make_dataset(files, fn_args.data_accessor, tf_transform_output, params.batch_size,
                                   params.max_history, params.max_hard_negatives, shuffle=shuffle, seed=params.seed)

    train_dataset = distribution.shard_by_data(dataset(fn_args.train_files, True))
    eval_sample = inputs.sample_records(fn_args.eval_files, EPOCH_EVAL_QUERIES, params.seed)
    eval_dataset = inputs.parse_records(eval_sample.dataset(), tf_transform_output, params.batch_size,
                                        params.max_history, params.max_hard_negatives)
    train_examples = count_examples(train_dataset)
    if train_examples == 0:
        raise ValueError(f"no training examples in {fn_args.train_files}; check FeedbackLabeler's feedback_stats")
    warm_started = None
    with strategy.scope():
        model = RetrievalModel(tower_config, params, counts)
        if params.warm_start:
            warm_started = warm_start.maybe_apply(model.query_tower, model.candidate_tower, tower_config,
                                                  getattr(fn_args, "base_model", None),
                                                  exported.Vocabularies.of_transform(tf_transform_output))
            if warm_started is not None:
                warm_started = dataclasses.replace(warm_started, memory_offsets_copied=warm_start.apply_memory(
                    model.memory, warm_started.base_model))
        model.compile(optimizer=optimizer.make_optimizer(params.optimizer, params.learning_rate))
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    history = EvalAndHistory(model, eval_dataset, tower_config.num_track_ids, train_examples,
                             os.path.join(fn_args.model_run_dir, TRAINING_HISTORY_FILE), fn_args.model_run_dir,
                             params.early_stopping, counts, eval_sample.total)
    callbacks = [
        history,
        tf.keras.callbacks.EarlyStopping(monitor=EARLY_STOPPING_METRIC, mode="max", patience=params.patience,
                                         restore_best_weights=True),
        tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="epoch"),
    ]
    log.info("training on %d examples, %d track ids, %d station ids, %d replica(s)", train_examples,
             tower_config.num_track_ids, tower_config.num_station_ids, strategy.num_replicas_in_sync)
    model.fit(train_dataset, epochs=params.epochs, callbacks=callbacks, verbose=2)
    return Trained(model, tower_config, history, warm_started)


def run_fn(fn_args) -> None:
    """The TFX Trainer's entry point (`Trainer(run_fn="models.trainer.run_fn", ...)`).

    The strategy comes first (multi-worker collectives must be set up before any other TF op). Workers
    other than the chief train and save like it, but into scratch folders, not the pipeline's outputs.
    """
    params = TrainingParams.from_custom_config(fn_args.custom_config)
    strategy = distribution.make_strategy(params.distribution_strategy)
    if not distribution.is_chief():
        scratch = tempfile.mkdtemp(prefix="trainer-worker-")
        fn_args.model_run_dir = os.path.join(scratch, "model_run")
        fn_args.serving_model_dir = os.path.join(scratch, "model")
    trained = train(fn_args, params, strategy)
    embeddings = candidate_embeddings(trained.model.candidate_tower, trained.tower_config.num_track_ids)
    export_towers(trained.model, trained.tower_config, params, fn_args.serving_model_dir, embeddings,
                  tft.TFTransformOutput(fn_args.transform_output), trained.warm_started)
