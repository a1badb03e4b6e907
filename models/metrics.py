"""Exact offline metrics (docs/design.md §6), in numpy so the Trainer, the evaluator and the baselines share them.

- Pairwise accuracy (the paper's test accuracy): over pairs (positive target, a real negative of the same
  listener near it), the share where the positive scores higher; ties count half.
- Ranking metrics against the whole catalog: the target's rank among all tracks except the listener's
  history tracks (the target itself is never excluded, so a repeat listen can still be found); ties count
  half, so a model that scores everything alike gets the rank a random order would give.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

DEFAULT_KS: tuple[int, ...] = (10, 50, 100)
BLOCK_ELEMENTS = 1_000_000
"""Scores [rows, catalog] are ranked a block of rows at a time, about this many scores per block (8 MB as
float64). Each ranking step makes temporaries of the block's size; above glibc's 32 MB mmap threshold every
one is a fresh mapping, paid in page faults: on 256 queries x 82,178 tracks, blocks of 16 rows took 2.3-3.3
CPU s against 13-20 for the whole batch at once, for the same numbers."""


def row_blocks(rows: int, width: int, elements: int = BLOCK_ELEMENTS) -> list[slice]:
    """Consecutive row slices of [rows, width] holding about `elements` values each (at least one row)."""
    step = max(1, elements // max(1, width))
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


def pairwise_accuracy(positive_scores: np.ndarray, negative_scores: np.ndarray, negative_mask: np.ndarray) -> tuple[float, int]:
    """(accuracy, number of pairs); NaN accuracy when there is no pair."""
    positive = np.asarray(positive_scores, dtype=np.float64)[:, None]
    negative = np.asarray(negative_scores, dtype=np.float64)
    mask = np.asarray(negative_mask, dtype=bool)
    pairs = int(mask.sum())
    if pairs == 0:
        return float("nan"), 0
    wins = ((positive > negative) & mask).sum() + 0.5 * ((positive == negative) & mask).sum()
    return float(wins / pairs), pairs


def pair_wins(scores: np.ndarray, targets: np.ndarray, negative_ids: np.ndarray, negative_mask: np.ndarray) -> np.ndarray:
    """Per row of [n, V] scores, how many of its real negatives its target beats (a tie counts half); [n]."""
    scores = np.asarray(scores)
    rows = np.arange(len(targets))
    positive = scores[rows, targets][:, None]
    negative = scores[rows[:, None], negative_ids]
    return (((positive > negative) + 0.5 * (positive == negative)) * negative_mask).sum(axis=1)


def exclude(scores: np.ndarray, targets: np.ndarray, exclude_ids: np.ndarray, exclude_mask: np.ndarray) -> np.ndarray:
    """A float64 copy of [n, V] scores with each row's excluded ids at -inf (its target never excluded)."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    excluded_rows, excluded_cols = np.nonzero(np.asarray(exclude_mask, dtype=bool))
    excluded_ids = np.asarray(exclude_ids)[excluded_rows, excluded_cols]
    keep = excluded_ids != np.asarray(targets)[excluded_rows]
    scores[excluded_rows[keep], excluded_ids[keep]] = -np.inf
    return scores


def target_ranks(
    scores: np.ndarray, targets: np.ndarray, exclude_ids: np.ndarray, exclude_mask: np.ndarray
) -> np.ndarray:
    """0-based rank of each row's target among the catalog ([n, V] scores), excluded ids left out."""
    return ranks_of_targets(exclude(scores, targets, exclude_ids, exclude_mask), targets)


def ranks_of_targets(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each row's target in already-excluded scores; ties count half."""
    target_scores = scores[np.arange(len(targets)), targets]
    greater = (scores > target_scores[:, None]).sum(axis=1)
    ties = (scores == target_scores[:, None]).sum(axis=1) - 1  # the target ties with itself
    return greater + 0.5 * ties


def ranks_excluding(scores: np.ndarray, targets: np.ndarray, exclude_ids: np.ndarray,
                    exclude_mask: np.ndarray) -> np.ndarray:
    """`target_ranks` without copying the [n, V] scores: each row's target is compared with the whole row,
    then each distinct excluded id other than the target is taken back out of the counts.

    Equal to `target_ranks` for finite scores (there an excluded id becomes -inf, which neither beats nor
    ties a finite target score); comparing float32 scores directly gives what comparing their float64 copies
    gives.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets)
    rows = np.arange(len(targets))
    target_scores = scores[rows, targets][:, None]
    greater = np.count_nonzero(scores > target_scores, axis=1)
    ties = np.count_nonzero(scores == target_scores, axis=1) - 1  # the target ties with itself
    ids = np.where(np.asarray(exclude_mask, dtype=bool), np.asarray(exclude_ids), -1)
    ids = np.sort(ids, axis=1)
    first = np.ones(ids.shape, dtype=bool)
    first[:, 1:] = ids[:, 1:] != ids[:, :-1]  # each excluded id counts once, however often the history holds it
    excluded = first & (ids >= 0) & (ids != targets[:, None])
    excluded_scores = scores[rows[:, None], np.maximum(ids, 0)]
    greater = greater - np.count_nonzero(excluded & (excluded_scores > target_scores), axis=1)
    ties = ties - np.count_nonzero(excluded & (excluded_scores == target_scores), axis=1)
    return greater + 0.5 * ties


@dataclasses.dataclass
class RankingAccumulator:
    """Collects ranks batch by batch; `result()` gives recall@k, NDCG@k and MRR."""

    ks: Sequence[int] = DEFAULT_KS
    ranks: list[np.ndarray] = dataclasses.field(default_factory=list)

    def add(self, ranks: np.ndarray) -> None:
        self.ranks.append(np.asarray(ranks, dtype=np.float64))

    def result(self) -> dict[str, object]:
        ranks = np.concatenate(self.ranks) if self.ranks else np.zeros(0)
        if ranks.size == 0:
            nan = float("nan")
            return {"recall_at_k": {k: nan for k in self.ks}, "ndcg_at_k": {k: nan for k in self.ks}, "mrr": nan, "queries": 0}
        return {
            "recall_at_k": {k: float(np.mean(ranks < k)) for k in self.ks},
            "ndcg_at_k": {k: float(np.mean(np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0))) for k in self.ks},
            "mrr": float(np.mean(1.0 / (ranks + 1.0))),
            "queries": int(ranks.size),
        }


def best_held_out_negative_ranks(masked_scores: np.ndarray, negative_ids: np.ndarray, negative_mask: np.ndarray,
                                 targets: np.ndarray, history_ids: np.ndarray, history_mask: np.ndarray) -> np.ndarray:
    """Per row, the best 0-based rank (ties half) among its held-out real negatives; inf when it has none.

    A held-out negative is one of the row's own real negatives (a track the listener skipped or disliked near
    the target) that is neither the target nor in the row's history: the ranking excludes history tracks, so
    a negative the listener already rejected in the history could never show up, and would say nothing.
    masked_scores are the row's scores with history excluded (`exclude`).
    """
    negative_ids = np.asarray(negative_ids)
    in_history = ((negative_ids[:, :, None] == np.asarray(history_ids)[:, None, :])
                  & np.asarray(history_mask, dtype=bool)[:, None, :]).any(axis=2)
    held_out = np.asarray(negative_mask, dtype=bool) & ~in_history & (negative_ids != np.asarray(targets)[:, None])
    best = np.full(len(negative_ids), np.inf)
    for column in range(negative_ids.shape[1]):
        rows = np.nonzero(held_out[:, column])[0]
        if rows.size:
            ranks = ranks_of_targets(masked_scores[rows], negative_ids[rows, column])
            best[rows] = np.minimum(best[rows], ranks)
    return best


def held_out_negative_hits(best_negative_ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, object]:
    """held_out_negative_hit_rate_at_k: over queries with a held-out real negative, the share whose top-k
    holds one (lower is better); held_out_negative_queries: how many queries that is."""
    ranks = np.asarray(best_negative_ranks, dtype=np.float64)
    has = np.isfinite(ranks)
    queries = int(has.sum())
    return {
        "held_out_negative_hit_rate_at_k": {
            k: float(np.mean(ranks[has] < k)) if queries else float("nan") for k in ks},
        "held_out_negative_queries": queries,
    }


def top_k_ids(scores: np.ndarray, k: int) -> np.ndarray:
    """Ids of each row's k best scores, best first ([n, min(k, V)]); -inf scores (excluded) come last."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def disliked_in_top_k(top_ids: np.ndarray, disliked: Sequence[frozenset], ks: Sequence[int]) -> dict[int, float]:
    """Share of the top-k slots, over all rows, filled by a track that row's listener disliked."""
    if len(top_ids) == 0:
        return {k: float("nan") for k in ks}
    hits = np.array([[track in dislikes for track in row] for row, dislikes in zip(top_ids.tolist(), disliked)],
                    dtype=bool).reshape(top_ids.shape)
    return {k: float(hits[:, :k].sum() / (len(top_ids) * min(k, top_ids.shape[1]))) for k in ks}


def coverage(user_ids: np.ndarray, covered: np.ndarray) -> tuple[float, int]:
    """(share of users with at least one covered example, number of users); NaN share without users."""
    users = np.unique(np.asarray(user_ids))
    if users.size == 0:
        return float("nan"), 0
    return float(np.unique(np.asarray(user_ids)[np.asarray(covered, dtype=bool)]).size / users.size), int(users.size)
