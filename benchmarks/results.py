"""The results document: what every section must hold, the completeness check, and writing it as JSON.

The same rules are checked by `benchmarks.run` before it reports success and by the smoke test, so a section
that silently stops producing a number fails both.
"""
from __future__ import annotations

import json
import math
import pathlib
from typing import Any, Iterator

from benchmarks.settings import SECTIONS
from reports.json_safe import json_safe


class SectionFailed(Exception):
    """A section finished measuring but its result breaks a rule (e.g. failed requests in a swap); carries the
    partial section so it is written before the run fails."""

    def __init__(self, message: str, partial: dict[str, Any]) -> None:
        super().__init__(message)
        self.partial = partial


TOP_LEVEL_KEYS = ("benchmark", "created_utc", "profile", "quick", "command", "machine", "versions", "threads",
                  "sizes", "seeds", "sections", "durations_s", "expected_s", "wall_s", "complete", "errors")

# (path, rule): '*' walks every item of a list or value of a dict. Rules: positive (finite > 0), finite,
# unit (finite in [0, 1]), ratio_or_null (None or finite > 0), zero, true, present, nonempty.
REQUIRED: dict[str, tuple[tuple[str, str], ...]] = {
    "labelling": (
        ("sizes.events", "positive"),
        ("beam.*.wall_s", "positive"), ("beam.*.events_per_s", "positive"), ("beam.*.peak_rss_mb", "positive"),
        ("beam.*.workers", "positive"),
        ("pandas.wall_s", "positive"), ("pandas.events_per_s", "positive"), ("pandas.peak_rss_mb", "positive"),
        ("agreement.agrees", "true"), ("pandas_covers", "nonempty"),
        ("ratios.beam_in_process_over_pandas_events_per_s", "positive"),
        ("ratios.pandas_speedup_over_beam_in_process", "positive"),
        ("ratios.*", "ratio_or_null"),
    ),
    "training": (
        ("train_examples", "positive"), ("seeds", "nonempty"),
        ("per_seed.*.target_eval_accuracy", "unit"), ("per_seed.*.time_to_target_random_only_s", "positive"),
        ("per_seed.*.examples_per_s_random_only", "positive"), ("per_seed.*.with_hard", "nonempty"),
        ("per_seed.*.with_hard.*.examples_per_s", "positive"), ("per_seed.*.with_hard.*.time_ratio", "ratio_or_null"),
        ("per_seed.*.with_hard.*.best_eval_accuracy", "unit"),
        ("examples_per_s_random_only", "positive"), ("time_to_target_random_only_s", "positive"),
        ("with_hard", "nonempty"), ("with_hard.*.examples_per_s", "positive"),
        ("with_hard.*.examples_per_s_ratio", "positive"), ("with_hard.*.time_ratio", "ratio_or_null"),
        ("with_hard.*.reached_target_seeds", "present"), ("paper_time_ratio", "positive"),
    ),
    "retrieval": (
        ("catalogs", "nonempty"), ("catalogs.*.catalog", "positive"),
        ("catalogs.*.rows", "nonempty"), ("catalogs.*.rows.*.qps", "positive"), ("catalogs.*.rows.*.recall", "unit"),
        ("catalogs.*.rows.*.p50_ms", "positive"), ("catalogs.*.rows.*.share_of_roofline", "positive"),
        ("catalogs.*.roofline.*.copy_gb_per_s", "positive"), ("catalogs.*.roofline.*.matmul_gflop_per_s", "positive"),
        ("catalogs.*.roofline.*.single_query_roofline_qps", "positive"),
        ("catalogs.*.roofline.*.batch_roofline_qps", "positive"),
        ("catalogs.*.builds.*.*.build_s", "finite"), ("catalogs.*.builds.*.*.index_mb", "positive"),
        ("catalogs.*.qps_at_recall.numpy_exact", "nonempty"), ("catalogs.*.qps_at_recall.scann_native", "nonempty"),
        ("catalogs.*.qps_at_recall.scann_tf_op", "nonempty"), ("catalogs.*.qps_at_recall.tf_exact", "nonempty"),
        ("catalogs.*.ratios", "nonempty"), ("catalogs.*.ratios.*", "ratio_or_null"),
    ),
    "serving": (
        ("closed_loop", "nonempty"), ("closed_loop.*.qps", "positive"), ("closed_loop.*.p50_ms", "positive"),
        ("closed_loop.*.p99_ms", "positive"), ("closed_loop.*.failed", "zero"),
        ("max_qps", "positive"), ("in_process.qps", "positive"), ("in_process.p50_ms", "positive"),
        ("grpc_overhead.p50_ratio_grpc_over_in_process", "positive"),
        ("grpc_overhead.qps_ratio_grpc_max_over_in_process", "positive"),
        ("first_request.without_warmup_ms", "positive"), ("first_request.with_warmup_ms", "positive"),
        ("first_request.ratio_without_over_with", "positive"),
        ("version_swap.requests", "positive"), ("version_swap.failed", "zero"),
        ("version_swap.answers_by_version.2", "positive"),
    ),
    "pipeline": (
        ("plays", "positive"), ("wall_s", "ratio_or_null"), ("mlmd_span_s", "positive"), ("events_per_s", "positive"),
        ("components", "nonempty"), ("components.*.seconds", "finite"), ("components.*.share_of_run", "unit"),
        ("slowest_component", "present"), ("slowest_share", "unit"),
        ("curve.sizes", "nonempty"), ("curve.sizes.*.plays", "positive"), ("curve.sizes.*.mlmd_span_s", "positive"),
    ),
}


def _walk(value: Any, parts: list[str], trail: str) -> Iterator[tuple[str, Any, bool]]:
    """(path, value, found) for every match of the path; found is False where a key is missing."""
    if not parts:
        yield trail, value, True
        return
    head, rest = parts[0], parts[1:]
    if head == "*":
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
        for key, item in items:
            yield from _walk(item, rest, f"{trail}.{key}")
        return
    if isinstance(value, dict) and head in value:
        yield from _walk(value[head], rest, f"{trail}.{head}")
    else:
        yield f"{trail}.{head}", None, False


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _broken(rule: str, value: Any) -> bool:
    if rule == "positive":
        return not (_number(value) and value > 0)
    if rule == "finite":
        return not _number(value)
    if rule == "unit":
        return not (_number(value) and 0 <= value <= 1)
    if rule == "ratio_or_null":
        return value is not None and not (_number(value) and value > 0)
    if rule == "zero":
        return value != 0
    if rule == "true":
        return value is not True
    if rule == "nonempty":
        return not value
    if rule == "present":
        return False
    raise ValueError(f"unknown rule {rule!r}")


def problems(results: dict[str, Any], sections: tuple[str, ...] = SECTIONS) -> list[str]:
    """Every missing key or broken rule of the document (empty when complete)."""
    found = [f"missing top-level key {key!r}" for key in TOP_LEVEL_KEYS if key not in results]
    found += ["cpu flags missing" for _ in [0] if not results.get("machine", {}).get("cpu", {}).get("flags")]
    for section in sections:
        body = results.get("sections", {}).get(section)
        if body is None:
            found.append(f"section {section!r} missing")
            continue
        for path, rule in REQUIRED[section]:
            for where, value, present in _walk(body, path.split("."), section):
                if not present:
                    found.append(f"{where}: missing")
                elif _broken(rule, value):
                    found.append(f"{where}: {value!r} is not {rule}")
    return found


def write_json(results: dict[str, Any], path: pathlib.Path) -> None:
    path.write_text(json.dumps(json_safe(results), indent=1, allow_nan=False) + "\n", encoding="utf-8")
