"""Whether a model may be pushed: absolute floors, and no regression beyond a tolerance against the last
blessed model. Pure functions, so each rule is tested on its own; the result says which rule decided."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional

from models.slice_rules import SliceRules

ABSOLUTE = "absolute_threshold"
ANN_RECALL = "ann_recall_floor"
NO_REGRESSION = "no_regression_vs_baseline"
BEATS_MOST_POPULAR = "beats_most_popular"
ALL_PASSED = "all_rules_passed"
GUARDED_METRICS: tuple[str, ...] = ("pairwise_accuracy", "recall_at_100")
"""The metrics both rules look at: the paper's accuracy, and what the listener sees (recall@100)."""


@dataclasses.dataclass(frozen=True)
class EvaluationParams:
    """RetrievalEvaluator's settings; defaults live in pipeline/configs.py."""

    min_pairwise_accuracy: float
    min_recall_at_100: float
    max_regression: float
    """A guarded metric may fall at most this much (absolute) below the last blessed model's."""
    cold_max_train_examples: int
    heavy_min_train_examples: int
    skip_heavy_min_share: float
    head_play_share: float
    min_ann_recall: float
    """ScaNN's recall@ann_recall_k against the exact top-k must reach this, or nothing is pushed."""
    ann_recall_k: int
    most_popular_tolerance: float
    """A guarded metric must reach the most-popular baseline's value on the same test split minus this."""
    max_test_queries: int
    """The test metrics score at most this many test examples, a seeded uniform sample (all below the cap)."""
    seed: int
    """Seed of that sample (the pipeline's one seed)."""

    def __post_init__(self) -> None:
        if self.max_test_queries < 1:
            raise ValueError(f"max_test_queries must be >= 1, got {self.max_test_queries}")
        if self.ann_recall_k < 1:
            raise ValueError(f"ann_recall_k must be >= 1, got {self.ann_recall_k}")
        for name in ("min_pairwise_accuracy", "min_recall_at_100", "min_ann_recall"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {getattr(self, name)}")
        for name in ("max_regression", "most_popular_tolerance"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        self.slice_rules()

    def slice_rules(self) -> SliceRules:
        return SliceRules(**{f.name: getattr(self, f.name) for f in dataclasses.fields(SliceRules)})

    def floor(self, metric: str) -> float:
        return getattr(self, f"min_{metric}")


def metric_value(result: Mapping[str, Any], metric: str) -> float:
    """A guarded metric from an evaluation result ('recall_at_100' reads recall_at_k[100])."""
    if metric.startswith("recall_at_"):
        k = int(metric.removeprefix("recall_at_"))
        by_k = result["recall_at_k"]
        return float(by_k[k] if k in by_k else by_k[str(k)])
    return float(result[metric])


def _reason(rule: str, metric: str, value: float, threshold: float, passed: bool, text: str) -> dict[str, Any]:
    return {"rule": rule, "metric": metric, "value": value, "threshold": threshold, "passed": passed, "text": text}


def _against_reference(rule: str, candidate: Mapping[str, Any], reference: Mapping[str, Any], tolerance: float,
                        name: str) -> list[dict[str, Any]]:
    """Each guarded metric must reach the reference's value minus the tolerance; a metric the reference could
    not measure is not compared."""
    reasons = []
    for metric in GUARDED_METRICS:
        before, value = metric_value(reference, metric), metric_value(candidate, metric)
        needed = before - tolerance
        if math.isnan(before):
            reasons.append(_reason(rule, metric, value, needed, True,
                                   f"the {name}'s {metric} is not measurable here: not compared"))
            continue
        passed = not math.isnan(value) and value >= needed
        reasons.append(_reason(rule, metric, value, needed, passed,
                               f"{metric} {value:.4f} {'>=' if passed else '<'} {name} {before:.4f} "
                               f"(tolerance {tolerance:.4f})"))
    return reasons


def _most_popular_reasons(candidate: Mapping[str, Any], params: EvaluationParams) -> list[dict[str, Any]]:
    """A model that ranks no better than play counts is not worth serving, whatever came before it."""
    popular = candidate.get("most_popular")
    if popular is None:
        return [_reason(BEATS_MOST_POPULAR, "", math.nan, math.nan, False,
                        "the most-popular baseline was not measured: cannot show the model beats it")]
    return _against_reference(BEATS_MOST_POPULAR, candidate, popular, params.most_popular_tolerance, "most-popular")


def decide(candidate: Mapping[str, Any], baseline: Optional[Mapping[str, Any]],
           params: EvaluationParams) -> dict[str, Any]:
    """{blessed, blessing_rule, blessing_reasons}: every rule's verdict; the first failing rule decides."""
    reasons = []
    for metric in GUARDED_METRICS:
        value, floor = metric_value(candidate, metric), params.floor(metric)
        if math.isnan(value):
            reasons.append(_reason(ABSOLUTE, metric, value, floor, False,
                                   f"{metric} could not be measured on the test split (no pairs or no examples)"))
        else:
            passed = value >= floor
            reasons.append(_reason(ABSOLUTE, metric, value, floor, passed,
                                   f"{metric} {value:.4f} {'>=' if passed else '<'} floor {floor:.4f}"))
    ann = candidate.get("ann_recall_at_k")
    if ann is not None:
        k = params.ann_recall_k
        value = float(ann[k] if k in ann else ann[str(k)])
        passed = value >= params.min_ann_recall
        reasons.append(_reason(ANN_RECALL, f"ann_recall_at_{k}", value, params.min_ann_recall, passed,
                               f"ScaNN recall@{k} vs exact top-{k} {value:.4f} {'>=' if passed else '<'} "
                               f"floor {params.min_ann_recall:.4f}"))
    reasons.extend(_most_popular_reasons(candidate, params))
    if baseline is None:
        reasons.append(_reason(NO_REGRESSION, "", math.nan, math.nan, True,
                               "no blessed model yet: nothing to regress against"))
    else:
        reasons.extend(_against_reference(NO_REGRESSION, candidate, baseline, params.max_regression, "baseline"))
    failed = [reason for reason in reasons if not reason["passed"]]
    return {
        "blessed": not failed,
        "blessing_rule": failed[0]["rule"] if failed else ALL_PASSED,
        "blessing_reasons": reasons,
    }
