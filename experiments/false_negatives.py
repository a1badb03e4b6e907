"""How many of the Trainer's random negatives are tracks the listener truly likes (simulated logs only).

The paper's warning about many random negatives is that some of them are false negatives: tracks the
listener would have liked. A simulated log knows each listener's true affinity for every track, so the
share can be counted: draw random negatives for the test queries exactly as the Trainer does (its own
`CandidateSampler` over the base run's track counts, one shared sample per batch, a sample equal to the
row's positive masked out as in `RandomNegativeLogits`), and count the pairs whose affinity reaches the
simulator's `like_center` (where a thumbs up becomes likely).
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from components.retrieval_evaluator.evaluate import RunData
from listening_logs.ground_truth import GROUND_TRUTH_DIRNAME, GroundTruth, unit_rows
from listening_logs.simulate import SimulationConfig
from models import features, inputs, loss
from models.params import TrainingParams
from schema import contract

SUMMARY_FILE = "summary.json"
QUERY_BATCH = 512
MAX_QUERIES = 50_000
"""Test queries counted at most (the first ones in file order): enough for a share, bounded time."""


@dataclasses.dataclass(frozen=True)
class TestQueries:
    """The base run's test examples as (listener raw id, target track id) pairs."""

    user_ids: np.ndarray
    target_ids: np.ndarray


def has_ground_truth(data_dir: pathlib.Path) -> bool:
    return (data_dir / GROUND_TRUTH_DIRNAME).is_dir()


def like_center(data_dir: pathlib.Path) -> float:
    """The simulator's `like_center` for this log (its summary.json), else the simulator's default."""
    summary = data_dir / SUMMARY_FILE
    if summary.is_file():
        value = json.loads(summary.read_text()).get("config", {}).get("like_center")
        if value is not None:
            return float(value)
    return SimulationConfig().like_center


def liked_counts(affinity: np.ndarray, valid: np.ndarray, threshold: float) -> tuple[int, int]:
    """(valid pairs whose true affinity is >= threshold, valid pairs) of a [Q, N] block of pairs."""
    affinity, valid = np.asarray(affinity, dtype=np.float64), np.asarray(valid, dtype=bool)
    if affinity.shape != valid.shape:
        raise ValueError(f"affinity {affinity.shape} and valid {valid.shape} must have one shape")
    return int(((affinity >= threshold) & valid).sum()), int(valid.sum())


def liked_share(affinity: np.ndarray, valid: np.ndarray, threshold: float) -> float:
    """Share of valid (query, sampled track) pairs whose true affinity is >= threshold (NaN when none)."""
    liked, count = liked_counts(affinity, valid, threshold)
    return liked / count if count else float("nan")


def truth_rows(known: np.ndarray, wanted: np.ndarray, kind: str) -> np.ndarray:
    """Row positions of raw ids in the ground truth; an id it does not know is an error, never skipped."""
    positions = pd.Index(known).get_indexer(np.asarray(wanted, dtype=str))
    if np.any(positions < 0):
        missing = sorted(set(np.asarray(wanted, dtype=str)[positions < 0].tolist()))[:5]
        raise KeyError(f"{kind} ids unknown to the ground truth (is it another log's?): {missing}")
    return positions


def affinity_matrix(user_units: np.ndarray, track_units: np.ndarray) -> np.ndarray:
    """Cosine [Q, N] of unit user rows with unit track rows: the simulator's affinity, for every pair."""
    return user_units @ track_units.T


def test_queries(data: RunData, params: TrainingParams) -> TestQueries:
    """Listener and target of every test example of a run, in file order."""
    dataset = inputs.read_transformed(data.split_pattern(contract.TEST), data.transform_output, QUERY_BATCH,
                                      params.max_history, params.max_hard_negatives)
    users, targets = [], []
    for batch in dataset:
        users.extend(user.decode("utf-8") for user in batch[features.USER_ID_XF].numpy().reshape(-1))
        targets.append(batch[features.TARGET_TRACK_ID_XF].numpy().reshape(-1))
    return TestQueries(np.asarray(users, dtype=str), np.concatenate(targets) if targets else np.zeros(0, np.int64))


def sampled_false_negative_share(truth: GroundTruth, queries: TestQueries, track_vocabulary: Sequence[str],
                                 counts: np.ndarray, params: TrainingParams, num_samples: int,
                                 threshold: float) -> float:
    """Share of the Trainer-style random negatives of the test queries that the listener truly likes.

    One sample of `num_samples` ids per batch of `params.batch_size` queries, seeded like the Trainer's
    steps. Ids outside the vocabulary (the OOV bucket, drawable only by the uniform sampler) are no real
    track and are not counted.
    """
    if num_samples < 1 or len(queries.user_ids) == 0:
        return float("nan")
    sampler = loss.CandidateSampler(counts, params.sampler, params.sampler_alpha)
    known = len(track_vocabulary)
    user_units = unit_rows(truth.user_vectors[truth_rows(truth.user_ids, queries.user_ids, "user")])
    track_units = unit_rows(truth.track_vectors[truth_rows(truth.track_ids, np.asarray(track_vocabulary), "track")])
    liked, total = 0, 0
    for step, start in enumerate(range(0, min(len(queries.user_ids), MAX_QUERIES), params.batch_size), start=1):
        ids, _ = sampler.sample(num_samples, tf.constant([params.seed, step], dtype=tf.int64))
        sampled = ids.numpy()
        sampled = sampled[sampled < known]
        rows = slice(start, start + params.batch_size)
        affinity = affinity_matrix(user_units[rows], track_units[sampled])
        valid = queries.target_ids[rows][:, None] != sampled[None, :]
        batch_liked, batch_total = liked_counts(affinity, valid, threshold)
        liked, total = liked + batch_liked, total + batch_total
    return liked / total if total else float("nan")


def false_negative_shares(data_dir: pathlib.Path, reference: RunData, params: TrainingParams,
                          sample_sizes: Sequence[int]) -> Optional[dict[int, float]]:
    """{number of random negatives: false-negative share}, or None when the log has no ground truth."""
    if not has_ground_truth(data_dir):
        return None
    truth = GroundTruth.load(data_dir)
    threshold = like_center(data_dir)
    output = reference.transform_output
    vocabulary, _ = features.read_track_frequencies(output)
    counts = features.track_counts_by_id(output)
    queries = test_queries(reference, params)
    return {n: sampled_false_negative_share(truth, queries, vocabulary, counts, params, n, threshold)
            for n in sample_sizes}
