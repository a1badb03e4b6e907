"""Writes canonical plays as daily spans, the layout ExampleGen reads (`DIR/span-N/events.<ext>`; the folder
name is schema.span_folders')."""
from __future__ import annotations

import pathlib
from typing import Optional

import numpy as np
import pandas as pd

from schema import contract, span_folders

FORMATS = ("csv", "parquet")
PIPELINE_FORMAT = "parquet"
"""The format the benchmarks' pipeline runs write their simulated logs in: ExampleGen reads Parquet a record
batch at a time, CSV line by line (docs/data-plane.md)."""
DAY_MS = 86_400_000
EVENTS_STEM = "events"


def spans_by_day(timestamp_ms: np.ndarray) -> np.ndarray:
    """Span numbers for timestamps: 1 for the first UTC day present, counting calendar days from there."""
    days = np.asarray(timestamp_ms, dtype=np.int64) // DAY_MS
    return (days - days.min() + 1).astype(np.int64)


def canonical_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns in contract order with contract dtypes (nullable ints, '' for absent text)."""
    out = pd.DataFrame(index=frame.index)
    for column in contract.COLUMNS:
        if column in contract.INT_COLUMNS:
            values = frame[column] if column in frame else pd.Series(pd.NA, index=frame.index)
            out[column] = pd.array(values, dtype="Int64")
        else:
            values = frame[column] if column in frame else pd.Series("", index=frame.index)
            out[column] = values.fillna("").astype(str)
    return out


def write_spans(
    frame: pd.DataFrame,
    out_dir: pathlib.Path,
    fmt: str = "csv",
    spans: Optional[np.ndarray] = None,
) -> dict[int, int]:
    """Writes one file per span, rows sorted by (user, time); returns {span: rows written}.

    `spans` gives each row's span number; by default one span per UTC day (see `spans_by_day`).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if frame.empty:
        return {}
    frame = canonical_frame(frame)
    span_numbers = spans_by_day(frame[contract.TIMESTAMP_MS].to_numpy()) if spans is None else np.asarray(spans)
    written: dict[int, int] = {}
    for span in np.unique(span_numbers):
        part = frame[span_numbers == span].sort_values([contract.USER_ID, contract.TIMESTAMP_MS], kind="stable")
        directory = span_folders.folder(out_dir, int(span))
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{EVENTS_STEM}.{fmt}"
        if fmt == "csv":
            part.to_csv(path, index=False)
        else:
            part.to_parquet(path, index=False)
        written[int(span)] = len(part)
    return written
