"""The FeedbackLabeler's counts, written directly in vectorised pandas/numpy: the labelling section's reference.

Why: a user weighing the Beam component wants to know what the same job costs as a plain dataframe script.
This module re-implements, without calling the component's code, everything that decides the
`feedback_stats.json` the labeler writes:

- row validation and quarantine reasons (contract §3, first failing check wins, same order as
  `schema.contract.validate_row`) for typed columns (no text parsing: the input is Parquet);
- labels: thumbs first, then SKIP if `listen_ms < skip_ms` or `< skip_fraction * track_ms`, else LISTEN;
- the per-listener cap (`max_events_per_user` most recent plays), the global time split (fractions of the
  valid plays' time range), label counts per split;
- examples: one per positive-policy play, per split;
- per example the history length (min(max_history, admissible plays strictly earlier)) and the number of
  hard negatives (distinct negative-policy tracks of the listener within the window, same split, never the
  target's track, at most max_hard_negatives) as a histogram per split;
- coverage by input policy (users with a test target whose history would be non-empty).

What it does not do: choose *which* tracks fill a history (same station first) or which hard negatives
win, serialise tf.train.Examples or write TFRecords. So it is a lower bound on the cost of the same job.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Iterable

import numpy as np
import pandas as pd

from components.feedback_labeler.sequences import LabelingParams, resolve_cutoffs
from schema import contract

COVERS = (
    "validation and quarantine reasons", "labels", "per-listener cap", "time split", "label counts per split",
    "examples per split", "history length per example", "hard negatives per example (distinct, windowed, "
    "same split)", "coverage by input policy", "distinct tracks and users",
)
DOES_NOT_COVER = ("which tracks fill a history (same station first)", "which hard negatives are chosen",
                  "serialising tf.train.Examples", "writing TFRecords")
SPLIT_CODES = {contract.TRAIN: 0, contract.EVAL: 1, contract.TEST: 2}


def read_log(paths: Iterable[pathlib.Path]) -> pd.DataFrame:
    """The log's Parquet span files as one frame (the columns the labelling needs)."""
    frames = [pd.read_parquet(path, columns=list(contract.COLUMNS)) for path in sorted(paths)]
    if not frames:
        raise FileNotFoundError("no Parquet files to read")
    return pd.concat(frames, ignore_index=True)


def _text(series: pd.Series) -> pd.Series:
    """Strings stripped, missing as ''."""
    return series.fillna("").astype(str).str.strip()


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A numeric column as float64 with NaN for missing (the frame may lack optional columns)."""
    if column not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="raise").astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)


def quarantine_reasons(frame: pd.DataFrame) -> np.ndarray:
    """Per row the first broken rule of the contract ('' for a valid row), in validate_row's order."""
    user, track = _text(frame[contract.USER_ID]), _text(frame[contract.TRACK_ID])
    feedback = _text(frame[contract.FEEDBACK]) if contract.FEEDBACK in frame else pd.Series("", index=frame.index)
    timestamp = _numbers(frame, contract.TIMESTAMP_MS)
    listen, track_ms = _numbers(frame, contract.LISTEN_MS), _numbers(frame, contract.TRACK_MS)
    with np.errstate(invalid="ignore"):
        checks = [
            (user.to_numpy() == "", contract.missing(contract.USER_ID)),
            (track.to_numpy() == "", contract.missing(contract.TRACK_ID)),
            (np.isnan(timestamp), contract.missing(contract.TIMESTAMP_MS)),
            ((timestamp < contract.MIN_TIMESTAMP_MS) | (timestamp >= contract.MAX_TIMESTAMP_MS),
             contract.TIMESTAMP_OUT_OF_RANGE),
            (listen < 0, contract.negative(contract.LISTEN_MS)),
            (listen > contract.MAX_DURATION_MS, contract.absurd(contract.LISTEN_MS)),
            (track_ms < 0, contract.negative(contract.TRACK_MS)),
            (track_ms > contract.MAX_DURATION_MS, contract.absurd(contract.TRACK_MS)),
            (track_ms == 0, contract.absurd(contract.TRACK_MS)),
            (~feedback.isin(contract.FEEDBACK_VALUES).to_numpy(), contract.UNKNOWN_FEEDBACK),
        ]
    return np.select([mask for mask, _ in checks], [reason for _, reason in checks], default="")


def label_names(feedback: pd.Series, listen_ms: np.ndarray, track_ms: np.ndarray, skip_ms: int,
                skip_fraction: float) -> np.ndarray:
    """docs/design.md §3's rule, vectorised: thumbs decide; else a short play (absolute or relative) is a skip."""
    with np.errstate(invalid="ignore"):
        short = (listen_ms < skip_ms) | (listen_ms < skip_fraction * track_ms)  # NaN compares False
    fb = feedback.to_numpy()
    return np.select([fb == contract.THUMB_DOWN, fb == contract.THUMB_UP, short],
                     [contract.DISLIKE, contract.LIKE, contract.SKIP], default=contract.LISTEN)


def _group_start(new_group: np.ndarray) -> np.ndarray:
    """For rows sorted into groups, the index of each row's group's first row."""
    return np.maximum.accumulate(np.where(new_group, np.arange(len(new_group)), 0))


def _strictly_earlier_counts(user: np.ndarray, timestamp: np.ndarray, admitted: np.ndarray) -> np.ndarray:
    """Rows sorted by (user, timestamp): per row, admitted rows of the same user at strictly earlier times."""
    n = len(user)
    if not n:
        return np.zeros(0, dtype=np.int64)
    new_user = np.ones(n, dtype=bool)
    new_user[1:] = user[1:] != user[:-1]
    new_time = new_user.copy()
    new_time[1:] |= timestamp[1:] != timestamp[:-1]
    before = np.cumsum(admitted, dtype=np.int64) - admitted  # admitted rows earlier in the sorted order
    per_user = before - before[_group_start(new_user)]
    return per_user[_group_start(new_time)]  # rows at the same time see only what came before that time


def _hard_negative_counts(users: np.ndarray, times: np.ndarray, tracks: np.ndarray, split_lo: np.ndarray,
                          split_hi: np.ndarray, neg_users: np.ndarray, neg_times: np.ndarray, neg_tracks: np.ndarray,
                          window_ms: int, limit: int) -> np.ndarray:
    """Per target: distinct negative tracks of its user within ±window and [split_lo, split_hi), never its own
    track, capped at `limit`. Negatives must be sorted by (user, time); all pairs are materialised at once."""
    if limit == 0 or not len(neg_users) or not len(users):
        return np.zeros(len(users), dtype=np.int64)
    base = min(times.min(), neg_times.min()) - window_ms - 1
    span = max(times.max(), neg_times.max()) + window_ms + 2 - base
    neg_key = neg_users * span + (neg_times - base)
    low = np.maximum(times - window_ms, split_lo)
    high = np.minimum(times + window_ms, split_hi - 1)
    start = np.searchsorted(neg_key, users * span + (low - base), side="left")
    stop = np.searchsorted(neg_key, users * span + (high - base), side="right")
    sizes = np.maximum(stop - start, 0)
    target = np.repeat(np.arange(len(users)), sizes)
    offsets = np.arange(len(target)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    negative = start[target] + offsets
    keep = neg_tracks[negative] != tracks[target]
    pairs = np.unique(target[keep].astype(np.int64) * (int(neg_tracks.max()) + 1) + neg_tracks[negative[keep]])
    distinct = np.bincount(pairs // (int(neg_tracks.max()) + 1), minlength=len(users))
    return np.minimum(distinct, limit)


@dataclasses.dataclass
class Reference:
    """The reference's statistics (keys as in feedback_stats.json) and per-example arrays."""

    stats: dict[str, Any]
    history_lengths: np.ndarray
    hard_negatives: np.ndarray
    example_splits: np.ndarray


def label_log(frame: pd.DataFrame, params: LabelingParams) -> Reference:
    """Everything listed in the module docstring, for one log."""
    reasons = quarantine_reasons(frame)
    valid = reasons == ""
    quarantined = pd.Series(reasons[~valid]).value_counts().sort_index()
    plays = pd.DataFrame({
        "user": _text(frame[contract.USER_ID])[valid].to_numpy(),
        "track": _text(frame[contract.TRACK_ID])[valid].to_numpy(),
        "station": (_text(frame[contract.STATION_ID]) if contract.STATION_ID in frame
                    else pd.Series("", index=frame.index))[valid].to_numpy(),
        "ts": _numbers(frame, contract.TIMESTAMP_MS)[valid].astype(np.int64),
    })
    feedback = _text(frame[contract.FEEDBACK])[valid] if contract.FEEDBACK in frame else pd.Series("", index=plays.index)
    plays["label"] = label_names(feedback, _numbers(frame, contract.LISTEN_MS)[valid],
                                 _numbers(frame, contract.TRACK_MS)[valid], params.skip_ms, params.skip_fraction)
    if plays.empty:
        raise ValueError("no valid play in the log")
    first_ms, last_ms = int(plays["ts"].min()), int(plays["ts"].max())
    cutoffs = resolve_cutoffs(params, first_ms, last_ms)
    distinct_tracks = plays["track"].nunique()

    # Cap: each listener's max_events_per_user most recent plays by (timestamp, track id).
    plays["user_code"] = pd.factorize(plays["user"], sort=True)[0]
    plays["track_code"] = pd.factorize(plays["track"], sort=True)[0]
    plays = plays.sort_values(["user_code", "ts", "track"], ascending=[True, False, False], kind="stable")
    rank = plays.groupby("user_code", sort=False).cumcount().to_numpy()
    per_user = plays.groupby("user_code", sort=False).size()
    over = (per_user - params.max_events_per_user).clip(lower=0)
    plays = plays[rank < params.max_events_per_user].sort_values(["user_code", "ts", "track"], kind="stable")

    user = plays["user_code"].to_numpy()
    ts = plays["ts"].to_numpy()
    label = plays["label"].to_numpy()
    split = np.where(ts < cutoffs.eval_ms, 0, np.where(ts < cutoffs.test_ms, 1, 2))
    split_names = np.array(contract.SPLITS)
    label_counts = pd.crosstab(split_names[split], label)

    positive = np.isin(label, params.positive_labels)
    history = _strictly_earlier_counts(user, ts, np.isin(label, params.history_labels()))
    history_lengths = np.minimum(history[positive], params.max_history)

    negative = np.isin(label, params.negative_labels)
    lo_by_split = np.array([np.iinfo(np.int64).min // 4, cutoffs.eval_ms, cutoffs.test_ms])
    hi_by_split = np.array([cutoffs.eval_ms, cutoffs.test_ms, np.iinfo(np.int64).max // 4])
    target_split = split[positive]
    hard = _hard_negative_counts(
        user[positive], ts[positive], plays["track_code"].to_numpy()[positive], lo_by_split[target_split],
        hi_by_split[target_split], user[negative], ts[negative], plays["track_code"].to_numpy()[negative],
        params.hard_negative_window_ms, params.max_hard_negatives if params.negative_labels else 0)

    test_target = positive & (split == SPLIT_CODES[contract.TEST])
    test_users = np.unique(user[test_target])
    coverage = {}
    for policy in contract.INPUT_POLICIES:
        earlier = _strictly_earlier_counts(user, ts, np.isin(label, params.history_labels(policy)))
        covered = np.unique(user[test_target & (earlier > 0)])
        coverage[policy] = {"covered_users": int(len(covered)), "users_with_test_targets": int(len(test_users)),
                            "share": len(covered) / len(test_users) if len(test_users) else 0.0}

    stats = {
        "valid_plays": int(valid.sum()),
        "quarantined": {str(k): int(v) for k, v in quarantined.items()},
        "users": int(len(per_user)),
        "tracks": int(distinct_tracks),
        "labels": {s: {str(k): int(v) for k, v in label_counts.loc[s].items() if v}
                   for s in contract.SPLITS if s in label_counts.index},
        "examples": {s: int((target_split == code).sum()) for s, code in SPLIT_CODES.items()},
        "hard_negatives_per_example": {
            s: {int(k): int(v) for k, v in sorted(zip(*np.unique(hard[target_split == code], return_counts=True)))}
            for s, code in SPLIT_CODES.items() if (target_split == code).any()},
        "coverage_by_input_policy": coverage,
        "capped_users": int((over > 0).sum()),
        "plays_over_user_cap": int(over.sum()),
        "time_range_ms": [first_ms, last_ms],
        "cutoffs_ms": {"eval_ms": cutoffs.eval_ms, "test_ms": cutoffs.test_ms},
        "history_tokens": int(history_lengths.sum()),
    }
    return Reference(stats, history_lengths, hard, split_names[target_split])


COMPARED_KEYS = ("valid_plays", "quarantined", "users", "tracks", "labels", "examples", "hard_negatives_per_example",
                 "coverage_by_input_policy", "capped_users", "plays_over_user_cap", "time_range_ms", "cutoffs_ms")


def _normalise(value: Any) -> Any:
    """JSON round-trip form (int keys become strings, tuples lists, floats rounded) for comparing."""
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, float):
        return round(value, 12)
    return value


def differences(reference: dict[str, Any], beam_stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{key: {'pandas': ..., 'beam': ...}} for every compared key on which the two disagree."""
    found = {}
    for key in COMPARED_KEYS:
        ours, theirs = _normalise(reference.get(key)), _normalise(beam_stats.get(key))
        if ours != theirs:
            found[key] = {"pandas": ours, "beam": theirs}
    return found
