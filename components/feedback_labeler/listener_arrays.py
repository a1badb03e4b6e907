"""One listener's examples built over the listener's arrays, written as Arrow columns (issue 14).

The same rules as `sequences.build_user_examples`, which stays the readable reference: tests compare the two
example by example on random listeners (tests/test_listener_arrays.py). What differs is the cost: splits,
label counts, "plays strictly before this instant" and the hard-negative time windows are numpy searches
over the sorted arrays, computed for every play at once; only the choice among a handful of candidates per
target (same station first, one per track) stays a short Python loop. Examples are appended to an
`ExampleColumns` buffer that tfx_bsl's C++ encoder turns into serialized tf.train.Examples, instead of one
Python protobuf per example.
"""
from __future__ import annotations

import bisect
import collections
import functools
from typing import Sequence

import numpy as np
import pyarrow as pa

from components.feedback_labeler import sequences
from schema import contract

_LABEL_NAMES = np.array(contract.LABELS, dtype=object)
_SPLIT_NAMES = contract.SPLITS


class ExampleColumns:
    """Examples of many listeners as flat columns; `record_batches` gives one Arrow RecordBatch per split."""

    def __init__(self) -> None:
        self.rows = 0
        self._scalars: dict[str, list] = {name: [] for name in contract.EXAMPLE_SCALAR_FEATURES}
        self._lists: dict[str, list] = {name: [] for name in contract.EXAMPLE_LIST_FEATURES}
        self._lengths: dict[str, list[int]] = {name: [] for name in contract.EXAMPLE_LIST_FEATURES}
        self._splits: list[int] = []

    def append(self, user: str, station: str, track: str, label: str, timestamp: int,
               history_tracks: Sequence[str], history_labels: Sequence[str], negatives: Sequence[str],
               split: int) -> None:
        scalars = self._scalars
        scalars[contract.EX_USER_ID].append(user)
        scalars[contract.EX_STATION_ID].append(station)
        scalars[contract.EX_TARGET_TRACK_ID].append(track)
        scalars[contract.EX_TARGET_LABEL].append(label)
        scalars[contract.EX_TARGET_TIMESTAMP_MS].append(timestamp)
        for name, values in ((contract.EX_HISTORY_TRACK_IDS, history_tracks),
                             (contract.EX_HISTORY_LABELS, history_labels),
                             (contract.EX_HARD_NEGATIVE_TRACK_IDS, negatives)):
            self._lists[name].extend(values)
            self._lengths[name].append(len(values))
        self._splits.append(split)
        self.rows += 1

    def record_batches(self) -> dict[str, pa.RecordBatch]:
        """Split name -> its examples as a RecordBatch of one-level list columns (what the encoder takes)."""
        one = np.arange(self.rows + 1, dtype=np.int64)
        arrays, names = [], []
        for name, values in self._scalars.items():
            kind = pa.int64() if name == contract.EX_TARGET_TIMESTAMP_MS else pa.large_binary()
            arrays.append(pa.LargeListArray.from_arrays(one, pa.array(values, kind)))
            names.append(name)
        for name, values in self._lists.items():
            offsets = np.zeros(self.rows + 1, dtype=np.int64)
            np.cumsum(self._lengths[name], out=offsets[1:])
            arrays.append(pa.LargeListArray.from_arrays(offsets, pa.array(values, pa.large_binary())))
            names.append(name)
        batch = pa.RecordBatch.from_arrays(arrays, names)
        splits = np.asarray(self._splits, dtype=np.int8)
        return {split: batch.filter(pa.array(splits == code))
                for code, split in enumerate(_SPLIT_NAMES) if np.any(splits == code)}


# Label ids ranked by label name: sorting (timestamp, track, station, rank) is sorting sequences' Play tuples.
_RANK_OF_ID = np.argsort(np.argsort(np.array(contract.LABELS, dtype=object))).tolist()
_ID_OF_RANK = np.argsort(np.array(contract.LABELS, dtype=object)).tolist()
_LABEL_KEYS = [[f"labels/{split}/{label}" for label in contract.LABELS] for split in _SPLIT_NAMES]


RANK_OF_ID = np.array(_RANK_OF_ID, dtype=np.int8)
"""Label id -> its rank by label name: what plays are sorted by after (timestamp, track, station)."""


@functools.cache
def _label_table(labels: tuple[str, ...]) -> np.ndarray:
    """A boolean lookup table over label ids: table[ids] marks the plays whose label is in `labels` (shared,
    never written: one per policy instead of one per listener)."""
    table = np.zeros(len(contract.LABELS), dtype=bool)
    table[[contract.LABEL_IDS[name] for name in labels]] = True
    table.flags.writeable = False
    return table


def build_listener(
    user: str,
    timestamps: Sequence[int],
    tracks: Sequence[str],
    stations: Sequence[str],
    label_ids: Sequence[int],
    params: sequences.LabelingParams,
    cutoffs: sequences.Cutoffs,
    out: ExampleColumns,
    stats: collections.Counter,
) -> None:
    """Appends the listener's examples to `out` and adds its counts to `stats` (the executor's stat keys)."""
    ordered = sorted(zip(timestamps, tracks, stations, [_RANK_OF_ID[i] for i in label_ids]))
    build_sorted(user, np.array([row[0] for row in ordered], dtype=np.int64), [row[1] for row in ordered],
                 [row[2] for row in ordered], np.array([_ID_OF_RANK[row[3]] for row in ordered], dtype=np.int64),
                 params, cutoffs, out, stats)


def build_sorted(
    user: str,
    ts: np.ndarray,
    track: list[str],
    station: list[str],
    ids: np.ndarray,
    params: sequences.LabelingParams,
    cutoffs: sequences.Cutoffs,
    out: ExampleColumns,
    stats: collections.Counter,
) -> None:
    """`build_listener` over plays already sorted by (timestamp, track, station, label name), as
    `sequences.build_user_examples` orders them (the executor sorts a whole group of listeners at once)."""
    ts_list = ts.tolist()
    label = _LABEL_NAMES[ids].tolist()
    split = np.searchsorted(np.array([cutoffs.eval_ms, cutoffs.test_ms]), ts, side="right")

    stats["users"] += 1
    counts = np.bincount(split * len(contract.LABELS) + ids, minlength=len(_SPLIT_NAMES) * len(contract.LABELS))
    for code in np.flatnonzero(counts).tolist():
        stats[_LABEL_KEYS[code // len(contract.LABELS)][code % len(contract.LABELS)]] += int(counts[code])

    targets = np.flatnonzero(_label_table(params.positive_labels)[ids])
    if not len(targets):
        return
    first_at_time = np.searchsorted(ts, ts, side="left")  # plays before this index are strictly earlier
    limit = params.max_history
    admissible = np.flatnonzero(_label_table(params.history_labels())[ids])
    admissible_before = np.searchsorted(admissible, first_at_time[targets]).tolist()
    admissible_list = admissible.tolist()
    on_station: dict[str, list[int]] = {}
    for position in admissible_list:
        if station[position]:
            on_station.setdefault(station[position], []).append(position)

    negatives = (np.flatnonzero(_label_table(params.negative_labels)[ids])
                 if params.max_hard_negatives else np.zeros(0, dtype=np.int64))
    window = params.hard_negative_window_ms
    starts = np.searchsorted(ts[negatives], ts[targets] - window, side="left").tolist()
    stops = np.searchsorted(ts[negatives], ts[targets] + window, side="right").tolist()
    negatives_list = negatives.tolist()
    split_list = split.tolist()
    first_list = first_at_time.tolist()

    for index, target in enumerate(targets.tolist()):
        here = station[target]
        count = admissible_before[index]
        recent = admissible_list[max(0, count - limit):count]
        if here:
            same = on_station.get(here, ())
            taken = bisect.bisect_left(same, first_list[target])
            chosen = list(same[max(0, taken - limit):taken])
            if len(chosen) < limit:
                others = [p for p in reversed(recent) if station[p] != here][: limit - len(chosen)]
                chosen = sorted(chosen + others)
        else:
            chosen = recent
        target_split = split_list[target]
        hard = _hard_negatives(negatives_list[starts[index]:stops[index]], target, ts_list, track, station,
                               split_list, params.max_hard_negatives)
        out.append(user, here, track[target], label[target], ts_list[target],
                   [track[p] for p in chosen], [label[p] for p in chosen], hard, target_split)
        split_name = _SPLIT_NAMES[target_split]
        stats[f"examples/{split_name}"] += 1
        stats[f"hard_negatives_per_example/{split_name}/{len(hard)}"] += 1

    test_targets = targets[split[targets] == _SPLIT_NAMES.index(contract.TEST)]
    if len(test_targets):
        stats["coverage/users_with_test_targets"] += 1
        last_instant = first_list[int(test_targets[-1])]  # the latest test target sees the most labels
        seen = set(label[:last_instant])
        for policy in contract.INPUT_POLICIES:
            stats[f"coverage/covered/{policy}"] += int(bool(seen & set(params.history_labels(policy))))


def _hard_negatives(candidates: list[int], target: int, ts: list[int], track: list[str], station: list[str],
                    split: list[int], limit: int) -> list[str]:
    """`sequences._choose_negatives` over positions in the listener's sorted lists."""
    if not candidates:
        return []
    here, target_track, when, target_split = station[target], track[target], ts[target], split[target]
    kept = [p for p in candidates if track[p] != target_track and split[p] == target_split]
    kept.sort(key=lambda p: (not (here and station[p] == here), abs(ts[p] - when), ts[p], track[p]))
    chosen: list[str] = []
    for p in kept:
        if track[p] not in chosen:
            chosen.append(track[p])
            if len(chosen) == limit:
                break
    return chosen
