"""Each blessing rule on its own: floors, unmeasurable metrics, regression against the baseline, tolerance."""
from __future__ import annotations

import dataclasses
import math

import pytest

from components.retrieval_evaluator import blessing
from pipeline import configs

PARAMS = dataclasses.replace(configs.PipelineConfig().evaluation_params(), min_pairwise_accuracy=0.55,
                             min_recall_at_100=0.2, max_regression=0.01)


def metrics(accuracy: float, recall: float) -> dict:
    return {"pairwise_accuracy": accuracy, "recall_at_k": {"100": recall}}


def result(accuracy: float, recall: float, popular: tuple[float, float] = (0.5, 0.1)) -> dict:
    """A test evaluation with its most-popular baseline (by default one every model here beats)."""
    return {**metrics(accuracy, recall), "most_popular": metrics(*popular)}


def failed_rules(decision: dict) -> list[tuple[str, str]]:
    return [(reason["rule"], reason["metric"]) for reason in decision["blessing_reasons"] if not reason["passed"]]


def test_first_model_above_the_floors_is_blessed():
    decision = blessing.decide(result(0.6, 0.3), None, PARAMS)
    assert decision["blessed"] and decision["blessing_rule"] == blessing.ALL_PASSED
    assert any("no blessed model yet" in reason["text"] for reason in decision["blessing_reasons"])


def test_a_metric_below_its_floor_refuses():
    decision = blessing.decide(result(0.6, 0.1), None, PARAMS)
    assert not decision["blessed"] and decision["blessing_rule"] == blessing.ABSOLUTE
    assert failed_rules(decision) == [(blessing.ABSOLUTE, "recall_at_100")]


def test_an_unmeasurable_metric_refuses():
    decision = blessing.decide(result(math.nan, 0.3), None, PARAMS)
    assert not decision["blessed"] and decision["blessing_rule"] == blessing.ABSOLUTE
    assert failed_rules(decision) == [(blessing.ABSOLUTE, "pairwise_accuracy"),
                                      (blessing.BEATS_MOST_POPULAR, "pairwise_accuracy")]


def test_regression_beyond_the_tolerance_refuses_and_within_it_passes():
    baseline = result(0.70, 0.40)
    worse = blessing.decide(result(0.68, 0.40), baseline, PARAMS)
    assert not worse["blessed"] and worse["blessing_rule"] == blessing.NO_REGRESSION
    assert failed_rules(worse) == [(blessing.NO_REGRESSION, "pairwise_accuracy")]
    within = blessing.decide(result(0.695, 0.395), baseline, PARAMS)
    assert within["blessed"] and within["blessing_rule"] == blessing.ALL_PASSED


def test_the_first_failing_rule_decides():
    decision = blessing.decide(result(0.5, 0.1), result(0.9, 0.9), PARAMS)
    assert decision["blessing_rule"] == blessing.ABSOLUTE
    assert len(failed_rules(decision)) == 4


def test_integer_and_string_k_keys_are_both_read():
    assert blessing.metric_value({"recall_at_k": {100: 0.25}}, "recall_at_100") == 0.25
    assert blessing.metric_value({"recall_at_k": {"100": 0.25}}, "recall_at_100") == 0.25


def test_settings_are_validated():
    with pytest.raises(ValueError, match="max_regression"):
        configs.with_overrides(configs.PipelineConfig(), ["max_regression=-0.1"])
    with pytest.raises(ValueError, match="min_pairwise_accuracy"):
        configs.with_overrides(configs.PipelineConfig(), ["min_pairwise_accuracy=1.5"])


def test_a_model_that_loses_to_most_popular_is_refused_without_an_earlier_blessed_model():
    decision = blessing.decide(result(0.7, 0.30, popular=(0.78, 0.25)), None, PARAMS)
    assert not decision["blessed"] and decision["blessing_rule"] == blessing.BEATS_MOST_POPULAR
    assert failed_rules(decision) == [(blessing.BEATS_MOST_POPULAR, "pairwise_accuracy")]
    reason = next(r for r in decision["blessing_reasons"] if not r["passed"])
    assert "most-popular 0.7800" in reason["text"]


def test_most_popular_tolerance_lets_a_near_tie_through_and_no_further():
    params = dataclasses.replace(PARAMS, most_popular_tolerance=0.02)
    assert blessing.decide(result(0.77, 0.30, popular=(0.78, 0.31)), None, params)["blessed"]
    decision = blessing.decide(result(0.77, 0.28, popular=(0.78, 0.31)), None, params)
    assert failed_rules(decision) == [(blessing.BEATS_MOST_POPULAR, "recall_at_100")]


def test_an_unmeasured_most_popular_baseline_refuses():
    decision = blessing.decide(metrics(0.7, 0.3), None, PARAMS)
    assert not decision["blessed"] and decision["blessing_rule"] == blessing.BEATS_MOST_POPULAR
