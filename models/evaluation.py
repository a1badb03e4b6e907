"""Exact evaluation over a dataset of padded batches, for any scorer of the whole catalog (docs/design.md §6).

One pass (`collect`) keeps what every metric needs per example; `summarize` turns any selection of those
examples into metrics, so the overall numbers and each slice come from the same arithmetic, and the trained
towers, the last blessed model and the most-popular baseline are judged by the same loop.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from models import features, memory, metrics, neighbours
from models.params import DislikePenalty
from models.slice_rules import SliceRules
from schema import contract

Scorer = Callable[[dict[str, tf.Tensor]], np.ndarray]
"""Maps a padded batch to scores [b, num_track_ids] for every track id."""

SKIP_ID = contract.LABELS.index(contract.SKIP)
DISLIKE_ID = contract.LABELS.index(contract.DISLIKE)


@dataclasses.dataclass
class Collected:
    """Per test example: who, what was ranked where, the pairs won, the top ids, what the history held."""

    user_ids: np.ndarray
    target_ids: np.ndarray
    ranks: np.ndarray
    pair_wins: np.ndarray
    pair_counts: np.ndarray
    top_ids: np.ndarray
    history_lengths: np.ndarray
    history_skips: np.ndarray
    negative_ranks: np.ndarray
    """Per example, the best rank among its held-out real negatives (inf when it has none)."""
    negative_ids: np.ndarray
    """Per example, its real negatives' ids [n, H] (padding where negative_mask is False)."""
    negative_mask: np.ndarray
    disliked: dict[bytes, frozenset]
    """Per listener, every track a history token of theirs labels as disliked."""

    def __len__(self) -> int:
        return len(self.target_ids)


def collect(dataset: tf.data.Dataset, scorer: Scorer, max_k: int = max(metrics.DEFAULT_KS)) -> Collected:
    """Scores every example once against the catalog, history tracks excluded (the target never)."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in (
        "user_ids", "target_ids", "ranks", "pair_wins", "pair_counts", "top_ids", "history_lengths", "history_skips",
        "negative_ranks", "negative_ids", "negative_mask")}
    disliked: dict[bytes, set] = {}
    for batch in dataset:
        scores = scorer(batch)
        targets = batch[features.TARGET_TRACK_ID_XF].numpy()
        history_ids = batch[features.HISTORY_TRACK_IDS_XF].numpy()
        history_mask = batch[features.HISTORY_MASK].numpy()
        history_labels = batch[features.HISTORY_LABELS_XF].numpy()
        negative_ids = batch[features.HARD_NEGATIVE_TRACK_IDS_XF].numpy()
        negative_mask = batch[features.HARD_NEGATIVE_MASK].numpy()
        users = batch[features.USER_ID_XF].numpy()
        parts["user_ids"].append(users)
        parts["target_ids"].append(targets)
        parts["pair_wins"].append(metrics.pair_wins(scores, targets, negative_ids, negative_mask))
        parts["pair_counts"].append(negative_mask.sum(axis=1))
        for rows in metrics.row_blocks(len(targets), np.shape(scores)[1]):  # same numbers, smaller temporaries
            masked = metrics.exclude(scores[rows], targets[rows], history_ids[rows], history_mask[rows])
            parts["ranks"].append(metrics.ranks_of_targets(masked, targets[rows]))
            parts["top_ids"].append(metrics.top_k_ids(masked, max_k))
            parts["negative_ranks"].append(metrics.best_held_out_negative_ranks(
                masked, negative_ids[rows], negative_mask[rows], targets[rows], history_ids[rows], history_mask[rows]))
        parts["history_lengths"].append(history_mask.sum(axis=1))
        parts["history_skips"].append(((history_labels == SKIP_ID) & history_mask).sum(axis=1))
        parts["negative_ids"].append(negative_ids)
        parts["negative_mask"].append(negative_mask.astype(bool))
        for user, track in zip(*(array[(history_labels == DISLIKE_ID) & history_mask]
                                 for array in (np.broadcast_to(users[:, None], history_ids.shape), history_ids))):
            disliked.setdefault(user, set()).add(int(track))
    joined = {name: np.concatenate(values) if values else np.zeros(0) for name, values in parts.items()}
    if not parts["top_ids"]:
        joined["top_ids"] = np.zeros((0, max_k), dtype=np.int64)
    return Collected(**joined, disliked={user: frozenset(tracks) for user, tracks in disliked.items()})


def summarize(collected: Collected, ks: Sequence[int] = metrics.DEFAULT_KS,
              selection: Optional[np.ndarray] = None) -> dict[str, object]:
    """Every docs/design.md §6 metric over the selected examples (all when `selection` is None)."""
    keep = np.ones(len(collected), dtype=bool) if selection is None else np.asarray(selection, dtype=bool)
    pairs = int(collected.pair_counts[keep].sum())
    ranking = metrics.RankingAccumulator(ks)
    ranking.add(collected.ranks[keep])
    users = collected.user_ids[keep]
    covered_share, num_users = metrics.coverage(users, collected.history_lengths[keep] > 0)
    empty: frozenset = frozenset()
    return {
        "pairwise_accuracy": float(collected.pair_wins[keep].sum() / pairs) if pairs else float("nan"),
        "pairs": pairs,
        **ranking.result(),
        "disliked_in_top_k": metrics.disliked_in_top_k(
            collected.top_ids[keep], [collected.disliked.get(user, empty) for user in users], ks),
        **metrics.held_out_negative_hits(collected.negative_ranks[keep], ks),
        "coverage": covered_share,
        "examples": int(keep.sum()),
        "users": num_users,
    }


def sampling_standard_errors(collected: Collected, total: int, k: int = 100) -> dict[str, float]:
    """Standard errors of pairwise accuracy and recall@k when `collected` is a uniform sample without
    replacement of `total` examples (0 when it is all of them): what another sample could move them by.

    Recall@k is a mean over examples; pairwise accuracy a ratio (wins / pairs) whose per-example terms are
    linearised around the estimate. Both carry the finite-population correction 1 - n / total.
    """
    n = len(collected)
    if n < 2 or total <= n:
        return {"pairwise_accuracy": 0.0, f"recall_at_{k}": 0.0}
    correction = 1.0 - n / total
    hits = (collected.ranks < k).astype(np.float64)
    recall_error = float(np.sqrt(hits.var(ddof=1) / n * correction))
    pairs = collected.pair_counts.astype(np.float64)
    accuracy = collected.pair_wins.sum() / pairs.sum() if pairs.sum() else float("nan")
    residuals = (collected.pair_wins - accuracy * pairs) / max(pairs.mean(), 1e-12)
    accuracy_error = float(np.sqrt(residuals.var(ddof=1) / n * correction)) if pairs.sum() else float("nan")
    return {"pairwise_accuracy": accuracy_error, f"recall_at_{k}": recall_error}


def evaluate(dataset: tf.data.Dataset, scorer: Scorer, ks: Sequence[int] = metrics.DEFAULT_KS) -> dict[str, object]:
    """All examples' metrics in one call."""
    return summarize(collect(dataset, scorer, max(ks)), ks)


def ranking_and_pairs(dataset: tf.data.Dataset, scorer: Scorer,
                      ks: Sequence[int] = metrics.DEFAULT_KS) -> dict[str, object]:
    """Pairwise accuracy, pairs, recall@k, NDCG@k, MRR and queries: the numbers `evaluate` gives under these
    names, exactly, at a fraction of its cost (what the Trainer computes after every epoch).

    `collect` also keeps each row's top-k ids, its held-out negatives' best rank (one more pass over the
    catalog per negative) and the listeners' dislikes, which only the evaluator's report needs; and it ranks
    on a float64 copy of the scores with the history set to -inf. Here each row is ranked on its scores as
    they come (`metrics.ranks_excluding`), which gives the same ranks without the copy.
    """
    wins, pairs = 0.0, 0
    ranking = metrics.RankingAccumulator(ks)
    for batch in dataset:
        scores = np.asarray(scorer(batch))
        targets = batch[features.TARGET_TRACK_ID_XF].numpy()
        negative_mask = batch[features.HARD_NEGATIVE_MASK].numpy()
        wins += float(metrics.pair_wins(scores, targets, batch[features.HARD_NEGATIVE_TRACK_IDS_XF].numpy(),
                                        negative_mask).sum())
        pairs += int(negative_mask.sum())
        history_ids, history_mask = batch[features.HISTORY_TRACK_IDS_XF].numpy(), batch[features.HISTORY_MASK].numpy()
        for rows in metrics.row_blocks(len(targets), scores.shape[1]):
            ranking.add(metrics.ranks_excluding(scores[rows], targets[rows], history_ids[rows], history_mask[rows]))
    return {"pairwise_accuracy": wins / pairs if pairs else float("nan"), "pairs": pairs, **ranking.result()}


def head_track_ids(track_counts: np.ndarray, head_play_share: float) -> np.ndarray:
    """Ids of the most played tracks that together reach `head_play_share` of all plays."""
    counts = np.asarray(track_counts, dtype=np.float64)
    order = np.argsort(-counts, kind="stable")
    cumulative = np.cumsum(counts[order])
    if cumulative.size == 0 or cumulative[-1] == 0:
        return np.zeros(0, dtype=np.int64)
    return order[: int(np.searchsorted(cumulative, head_play_share * cumulative[-1]) + 1)]


def slice_selections(collected: Collected, rules: SliceRules, train_examples_by_user: Mapping[bytes, int],
                     track_counts: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean example selections per slice: user activity, skip-heavy listeners, head/tail targets."""
    train_examples = np.array([train_examples_by_user.get(user, 0) for user in collected.user_ids], dtype=np.int64)
    skips, tokens = {}, {}
    for user, skip_count, length in zip(collected.user_ids, collected.history_skips, collected.history_lengths):
        skips[user] = skips.get(user, 0) + int(skip_count)
        tokens[user] = tokens.get(user, 0) + int(length)
    skip_heavy_users = {user for user in tokens if tokens[user] and skips[user] / tokens[user] >= rules.skip_heavy_min_share}
    head = np.isin(collected.target_ids, head_track_ids(track_counts, rules.head_play_share))
    return {
        "cold_users": train_examples <= rules.cold_max_train_examples,
        "warm_users": (train_examples > rules.cold_max_train_examples) & (train_examples < rules.heavy_min_train_examples),
        "heavy_users": train_examples >= rules.heavy_min_train_examples,
        "skip_heavy_users": np.array([user in skip_heavy_users for user in collected.user_ids], dtype=bool),
        "head_tracks": head,
        "tail_tracks": ~head,
    }


def popularity_percentiles(track_counts: np.ndarray) -> np.ndarray:
    """Each track id's play-count percentile among all ids: 100 x (ids played less + half of those played as
    often) / ids, the same mid-rank `listening_logs.profile` reports for raw logs."""
    counts = np.asarray(track_counts, dtype=np.float64)
    ordered = np.sort(counts)
    below = np.searchsorted(ordered, counts, side="left")
    equal = np.searchsorted(ordered, counts, side="right") - below
    return 100.0 * (below + 0.5 * equal) / max(1, counts.size)


def rejection_popularity(collected: Collected, track_counts: np.ndarray) -> dict[str, object]:
    """How popular the test targets and their real negatives are: whether this log is one where popularity
    alone separates what listeners like from what they reject (docs/data-profiles.md)."""
    percentile = popularity_percentiles(track_counts)
    targets = percentile[collected.target_ids.astype(np.int64)] if len(collected) else np.zeros(0)
    negatives = (percentile[collected.negative_ids.astype(np.int64)][collected.negative_mask]
                 if len(collected) else np.zeros(0))

    def describe(values: np.ndarray) -> dict[str, object]:
        if values.size == 0:
            return {"mean": float("nan"), "median": float("nan"), "count": 0}
        return {"mean": float(values.mean()), "median": float(np.median(values)), "count": int(values.size)}

    return {"target_popularity_percentile": describe(targets),
            "real_negative_popularity_percentile": describe(negatives)}


def embedding_scorer(query_tower: tf.keras.Model, candidate_embeddings: np.ndarray,
                     memory_weights: Optional[np.ndarray] = None,
                     dislike_penalty: Optional[DislikePenalty] = None, embedding_dim: int = 0) -> Scorer:
    """Cosine scores of the query tower's embedding against every candidate embedding, plus the history memory
    offsets (models/memory.py) and minus the dislike-neighbour penalty (models/neighbours.py) when the model has
    them (embedding_dim: the candidate embeddings' unit-vector columns, needed with the penalty)."""
    candidates = tf.constant(candidate_embeddings)
    units = None if dislike_penalty is None else neighbours.unit_part(candidate_embeddings, embedding_dim)

    def score(batch: dict[str, tf.Tensor]) -> np.ndarray:
        return with_memory(tf.matmul(query_tower(batch, training=False), candidates, transpose_b=True).numpy(),
                           batch, memory_weights, dislike_penalty, units)

    return score


def with_memory(scores: np.ndarray, batch: dict[str, tf.Tensor], memory_weights: Optional[np.ndarray],
                dislike_penalty: Optional[DislikePenalty] = None,
                catalog_units: Optional[np.ndarray] = None) -> np.ndarray:
    """[B, V] scores plus each row's history memory offsets, minus its dislike-neighbour penalties over
    catalog_units [V, D] (each part skipped when its rule is None)."""
    if memory_weights is None and dislike_penalty is None:
        return scores
    history = (batch[features.HISTORY_TRACK_IDS_XF].numpy(), batch[features.HISTORY_LABELS_XF].numpy(),
               batch[features.HISTORY_MASK].numpy())
    if memory_weights is not None:
        scores = scores + memory.dense_offsets(memory_weights, *history, np.shape(scores)[1])
    if dislike_penalty is not None:
        if catalog_units is None or len(catalog_units) != np.shape(scores)[1]:
            raise ValueError("the dislike-neighbour penalty needs the unit vectors of every scored track")
        scores = neighbours.subtract_penalties(np.array(scores, dtype=np.float32), dislike_penalty, catalog_units,
                                               *history)
    return scores


def popularity_scorer(track_counts: np.ndarray) -> Scorer:
    """The most-popular baseline: every listener gets the catalog ordered by play count."""
    popularity = np.asarray(track_counts, dtype=np.float64)

    def score(batch: dict[str, tf.Tensor]) -> np.ndarray:
        return np.broadcast_to(popularity, (int(tf.shape(batch[features.TARGET_TRACK_ID_XF])[0]), popularity.size))

    return score
