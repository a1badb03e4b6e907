"""Pure functions of the retrieval section: recall against exact results, and queries per second at a recall.

Kept apart from the timing code so they are unit-tested on hand-made numbers.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np


def exact_top_k(queries: np.ndarray, candidates: np.ndarray, k: int, block: int = 256) -> np.ndarray:
    """Row-wise indices of the k highest dot products, best first (in query blocks, to bound memory)."""
    k = min(k, candidates.shape[0])
    rows = []
    for start in range(0, len(queries), block):
        scores = queries[start:start + block] @ candidates.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        rows.append(np.take_along_axis(part, order, axis=1))
    return np.concatenate(rows) if rows else np.zeros((0, k), dtype=np.int64)


def recall_at_k(approx: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean over queries of |approx[:k] ∩ exact[:k]| / k (ids; padding such as -1 never matches)."""
    approx, exact = np.asarray(approx), np.asarray(exact)
    if approx.shape[0] != exact.shape[0]:
        raise ValueError(f"{approx.shape[0]} approximate rows vs {exact.shape[0]} exact rows")
    if exact.shape[1] < k:
        raise ValueError(f"exact results have {exact.shape[1]} columns, fewer than k={k}")
    if not len(exact):
        raise ValueError("no queries")
    hits = [len(set(a[:k].tolist()) & set(e[:k].tolist())) for a, e in zip(approx, exact)]
    return float(np.mean(hits)) / k


def pareto_frontier(points: Sequence[dict[str, Any]], recall: str = "recall", qps: str = "qps") -> list[dict[str, Any]]:
    """The points no other point beats on both recall and QPS, by ascending recall (QPS then descends)."""
    ordered = sorted(points, key=lambda p: (-p[recall], -p[qps]))
    frontier, best_qps = [], -math.inf
    for point in ordered:  # from the highest recall down: keep a point only if it is faster than all above it
        if point[qps] > best_qps:
            frontier.append(point)
            best_qps = point[qps]
    return frontier[::-1]


def best_reaching(points: Sequence[dict[str, Any]], target: float, recall: str = "recall",
                  qps: str = "qps") -> Optional[dict[str, Any]]:
    """The fastest measured point whose recall is >= target (None if none reaches it)."""
    reaching = [p for p in points if p[recall] >= target]
    return max(reaching, key=lambda p: p[qps]) if reaching else None


def interpolated_qps(points: Sequence[dict[str, Any]], target: float, recall: str = "recall",
                     qps: str = "qps") -> Optional[float]:
    """QPS at exactly `target` recall, linear between the two frontier points around it.

    A target below every frontier point's recall gets the fastest frontier point's QPS (a faster, less exact
    configuration was not measured); one above every point's recall is unreachable (None).
    """
    frontier = pareto_frontier(points, recall, qps)
    if not frontier or frontier[-1][recall] < target:
        return None
    if frontier[0][recall] >= target:
        return float(frontier[0][qps])
    for low, high in zip(frontier, frontier[1:]):
        if low[recall] <= target <= high[recall]:
            if high[recall] == low[recall]:
                return float(max(low[qps], high[qps]))
            share = (target - low[recall]) / (high[recall] - low[recall])
            return float(low[qps] + share * (high[qps] - low[qps]))
    return None  # unreachable: the frontier's last point reaches the target, so the loop returned


CONFIG_KEYS = ("leaves_to_search", "reorder")


def qps_at_recalls(points: Sequence[dict[str, Any]], targets: Sequence[float], recall: str = "recall",
                   qps: str = "qps", config_keys: Sequence[str] = CONFIG_KEYS) -> dict[str, dict[str, Any]]:
    """Per target (as '0.95'): the interpolated QPS and the best measured configuration reaching it."""
    table = {}
    for target in targets:
        best = best_reaching(points, target, recall, qps)
        table[f"{target:.2f}"] = {
            "interpolated_qps": interpolated_qps(points, target, recall, qps),
            "best_qps": None if best is None else float(best[qps]),
            "best_config": None if best is None else {key: best[key] for key in config_keys if key in best},
            "best_recall": None if best is None else float(best[recall]),
        }
    return table
