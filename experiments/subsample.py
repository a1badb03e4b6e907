"""Copies of a listening log that keep only a fraction of each listener's skips and dislikes.

The paper's feedback-proportion experiment asks how much the negative feedback itself is worth. Dropping a
random fraction of each listener's skip and dislike rows (every other row kept, same span layout and file
format) gives logs that differ only in how much negative feedback they hold; each then goes through the
whole pipeline like any other log.

Per listener and label (skip, dislike) with n rows, exactly floor(f * n) rows are kept, plus one more with
probability frac(f * n): the kept share is f in expectation even for listeners with one or two skips,
where plain rounding would keep all or nothing.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from schema import contract, span_folders

NEGATIVE_IDS = np.asarray([contract.LABEL_IDS[label] for label in contract.NEGATIVE_LABELS])


@dataclasses.dataclass
class SpanFile:
    """One file of one span folder, as read (CSV cells stay text, so a copy changes nothing else)."""

    relative_path: pathlib.Path
    table: pd.DataFrame | pa.Table

    @property
    def is_parquet(self) -> bool:
        return isinstance(self.table, pa.Table)

    def column(self, name: str) -> pd.Series:
        """A column as a pandas Series ('' or NaN when the file lacks it)."""
        rows = self.table.num_rows if self.is_parquet else len(self.table)
        names = self.table.column_names if self.is_parquet else self.table.columns
        if name not in names:
            return pd.Series([np.nan] * rows if name in contract.INT_COLUMNS else [""] * rows)
        values = self.table.column(name).to_pandas() if self.is_parquet else self.table[name]
        return values.reset_index(drop=True)

    def filtered(self, keep: np.ndarray) -> "SpanFile":
        table = self.table.filter(pa.array(keep)) if self.is_parquet else self.table[keep]
        return SpanFile(self.relative_path, table)

    def write(self, out_dir: pathlib.Path) -> None:
        path = out_dir / self.relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.is_parquet:
            pq.write_table(self.table, path)
        else:
            self.table.to_csv(path, index=False)


@dataclasses.dataclass(frozen=True)
class SubsampleResult:
    """What a subsampled copy holds: rows, labels after subsampling, and the negative share."""

    rows_in: int
    rows_out: int
    labels: dict[str, int]
    negative_share: float


def read_spans(data_dir: pathlib.Path, spans: Sequence[int]) -> list[SpanFile]:
    """Every .csv/.parquet file of the given span folders."""
    files = []
    for span in spans:
        folder = span_folders.folder(data_dir, span)
        for path in sorted(folder.glob("*")):
            relative = path.relative_to(data_dir)
            if path.suffix == ".csv":
                files.append(SpanFile(relative, pd.read_csv(path, dtype=str, keep_default_na=False)))
            elif path.suffix == ".parquet":
                files.append(SpanFile(relative, pq.read_table(path)))
    if not files:
        raise FileNotFoundError(f"no .csv or .parquet files in spans {list(spans)} of {data_dir}")
    return files


def _numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values.replace("", np.nan), errors="coerce").to_numpy(dtype=np.float64)


def labels_of(files: Sequence[SpanFile], thresholds: contract.LabelThresholds) -> np.ndarray:
    """The contract's label id of every row, files in order (rows the pipeline would quarantine included)."""
    parts = [contract.label_ids(file.column(contract.FEEDBACK).fillna("").astype(str).to_numpy(),
                                _numbers(file.column(contract.LISTEN_MS)),
                                _numbers(file.column(contract.TRACK_MS)), thresholds) for file in files]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def keep_mask(users: np.ndarray, labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """True for every row to keep: all non-negative rows, and per (listener, negative label) a random
    floor(f * n) rows plus one more with probability frac(f * n)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"keep fraction must be within [0, 1], got {fraction}")
    users, labels = np.asarray(users), np.asarray(labels)
    keep = np.ones(len(labels), dtype=bool)
    negative_rows = np.flatnonzero(np.isin(labels, NEGATIVE_IDS))
    if negative_rows.size == 0:
        return keep
    frame = pd.DataFrame({"user": users[negative_rows], "label": labels[negative_rows],
                          "key": rng.random(negative_rows.size)})
    groups = frame.groupby(["user", "label"], sort=True)
    group = groups.ngroup().to_numpy()
    sizes = groups.size().to_numpy()
    wanted = fraction * sizes
    kept_per_group = np.floor(wanted).astype(np.int64)
    kept_per_group += rng.random(len(sizes)) < (wanted - kept_per_group)
    rank = groups["key"].rank(method="first").to_numpy().astype(np.int64) - 1
    keep[negative_rows] = rank < kept_per_group[group]
    return keep


def label_counts(labels: np.ndarray) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(contract.LABELS))
    return {label: int(counts[i]) for i, label in enumerate(contract.LABELS)}


def negative_share(labels: np.ndarray) -> float:
    """Share of skips and dislikes among labelled plays (NaN for an empty log)."""
    return float(np.isin(labels, NEGATIVE_IDS).mean()) if len(labels) else float("nan")


def describe(data_dir: pathlib.Path, spans: Sequence[int], thresholds: contract.LabelThresholds) -> SubsampleResult:
    """The same facts for a log left as it is (the keep fraction 1.0)."""
    labels = labels_of(read_spans(data_dir, spans), thresholds)
    return SubsampleResult(len(labels), len(labels), label_counts(labels), negative_share(labels))


def subsample_log(data_dir: pathlib.Path, out_dir: pathlib.Path, spans: Sequence[int], fraction: float,
                  seed: int, thresholds: contract.LabelThresholds) -> SubsampleResult:
    """Writes the spans of `data_dir` to `out_dir` keeping `fraction` of each listener's skips and dislikes."""
    files = read_spans(data_dir, spans)
    labels = labels_of(files, thresholds)
    users = np.concatenate([file.column(contract.USER_ID).astype(str).to_numpy() for file in files])
    keep = keep_mask(users, labels, fraction, np.random.default_rng(seed))
    start = 0
    for file in files:
        rows = file.table.num_rows if file.is_parquet else len(file.table)
        file.filtered(keep[start:start + rows]).write(out_dir)
        start += rows
    kept = labels[keep]
    return SubsampleResult(len(labels), int(keep.sum()), label_counts(kept), negative_share(kept))
