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

import collections
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
    names = _LABEL_NAMES[np.asarray(label_ids, dtype=np.int64)]
    ordered = sorted(zip(timestamps, tracks, stations, names.tolist()))  # sequences' order: Play tuples
    ts = np.fromiter((row[0] for row in ordered), dtype=np.int64, count=len(ordered))
    track = [row[1] for row in ordered]
    station = [row[2] for row in ordered]
    label = [row[3] for row in ordered]
    label_array = np.array(label, dtype=object)
    split = np.searchsorted(np.array([cutoffs.eval_ms, cutoffs.test_ms]), ts, side="right")

    stats["users"] += 1
    split_label = collections.Counter(zip(split.tolist(), label))
    for (code, name), count in split_label.items():
        stats[f"labels/{_SPLIT_NAMES[code]}/{name}"] += count

    targets = np.flatnonzero(np.isin(label_array, params.positive_labels))
    if not len(targets):
        return
    first_at_time = np.searchsorted(ts, ts, side="left")  # plays before this index are strictly earlier
    limit = params.max_history
    admissible = np.flatnonzero(np.isin(label_array, params.history_labels()))
    admissible_before = np.searchsorted(admissible, first_at_time[targets])
    on_station_positions: dict[str, np.ndarray] = {}
    station_of_admissible = [station[p] for p in admissible]
    for position, name in zip(admissible.tolist(), station_of_admissible):
        if name:
            on_station_positions.setdefault(name, []).append(position)
    on_station_positions = {name: np.array(p, dtype=np.int64) for name, p in on_station_positions.items()}

    negatives = (np.flatnonzero(np.isin(label_array, params.negative_labels))
                 if params.max_hard_negatives else np.zeros(0, dtype=np.int64))
    negative_ts = ts[negatives]
    window = params.hard_negative_window_ms
    starts = np.searchsorted(negative_ts, ts[targets] - window, side="left")
    stops = np.searchsorted(negative_ts, ts[targets] + window, side="right")

    for index, target in enumerate(targets.tolist()):
        here = station[target]
        count = int(admissible_before[index])
        recent = admissible[max(0, count - limit):count].tolist()
        if here:
            same = on_station_positions.get(here)
            if same is not None:
                taken = int(np.searchsorted(same, first_at_time[target]))
                chosen = same[max(0, taken - limit):taken].tolist()
            else:
                chosen = []
            if len(chosen) < limit:
                others = [p for p in reversed(recent) if station[p] != here][: limit - len(chosen)]
                chosen = sorted(chosen + others)
        else:
            chosen = recent
        target_split = int(split[target])
        hard = _hard_negatives(negatives[starts[index]:stops[index]].tolist(), target, ts, track, station,
                               split, target_split, params.max_hard_negatives)
        out.append(user, here, track[target], label[target], int(ts[target]),
                   [track[p] for p in chosen], [label[p] for p in chosen], hard, target_split)
        split_name = _SPLIT_NAMES[target_split]
        stats[f"examples/{split_name}"] += 1
        stats[f"hard_negatives_per_example/{split_name}/{len(hard)}"] += 1

    test_targets = targets[split[targets] == _SPLIT_NAMES.index(contract.TEST)]
    if len(test_targets):
        stats["coverage/users_with_test_targets"] += 1
        last_instant = int(first_at_time[test_targets[-1]])  # the latest test target sees the most labels
        seen = set(label[:last_instant])
        for policy in contract.INPUT_POLICIES:
            stats[f"coverage/covered/{policy}"] += int(bool(seen & set(params.history_labels(policy))))


def _hard_negatives(candidates: list[int], target: int, ts: np.ndarray, track: list[str], station: list[str],
                    split: np.ndarray, target_split: int, limit: int) -> list[str]:
    """`sequences._choose_negatives` over positions in the listener's sorted arrays."""
    if not candidates:
        return []
    here, target_track, when = station[target], track[target], int(ts[target])
    kept = [p for p in candidates if track[p] != target_track and split[p] == target_split]
    kept.sort(key=lambda p: (not (here and station[p] == here), abs(int(ts[p]) - when), int(ts[p]), track[p]))
    chosen: list[str] = []
    for p in kept:
        if track[p] not in chosen:
            chosen.append(track[p])
            if len(chosen) == limit:
                break
    return chosen
