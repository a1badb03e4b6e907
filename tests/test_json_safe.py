"""One strict-JSON conversion for evaluation.json, the experiments' report.json and the benchmarks' results.json."""
from __future__ import annotations

import collections
import json
import math
import pathlib

import numpy as np

from reports.json_safe import json_safe


def test_records_become_strict_json():
    record = collections.OrderedDict(
        accuracy=np.float32(0.5), pairs=np.int64(7), blessed=np.bool_(True), missing=math.nan, inf=-math.inf,
        recall_at_k={100: np.float64(0.25)}, curve=np.array([[1, 2], [3, 4]]), shape=(np.int32(2), 3),
        path=pathlib.Path("/tmp/run"), name="base", nothing=None)
    safe = json_safe(record)
    assert json.loads(json.dumps(safe, allow_nan=False)) == {
        "accuracy": 0.5, "pairs": 7, "blessed": True, "missing": None, "inf": None, "recall_at_k": {"100": 0.25},
        "curve": [[1, 2], [3, 4]], "shape": [2, 3], "path": "/tmp/run", "name": "base", "nothing": None}
    assert type(safe["pairs"]) is int and type(safe["blessed"]) is bool
