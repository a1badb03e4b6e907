"""Strict JSON for the records reports are made from (evaluation.json, report.json, results.json).

One copy for the evaluator, the experiments and the benchmarks: `json.dumps(..., allow_nan=False)` refuses NaN,
and numpy scalars, arrays and paths are not JSON at all.
"""
from __future__ import annotations

import math
import pathlib
from typing import Any, Mapping

import numpy as np


def json_safe(value: Any) -> Any:
    """Plain JSON: mappings with string keys, lists, Python numbers; numpy scalars and arrays to Python, paths
    to strings, NaN and infinities to null (a missing number, not a crash when the record is written)."""
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pathlib.PurePath):
        return str(value)
    return value
