"""Turns one listener's labelled plays into training examples: history, target and real hard negatives.

Pure Python and independent of Beam, so the rules are tested on hand-written logs (docs/design.md §4):
- a target is a play whose label is in the positive policy;
- its history is the listener's plays strictly before it whose labels the input policy admits, up to
  `max_history`, the most recent ones of the target's station first, then the most recent of other
  stations, written oldest to newest;
- its hard negatives are the listener's plays whose labels the negative policy names, within
  `hard_negative_window_ms` of it and in the same time split, never the target's track, one per track,
  same station first, then nearest in time (up to `max_hard_negatives`);
- its split is decided by global time cut-offs on the target's timestamp.
"""
from __future__ import annotations

import bisect
import collections
import dataclasses
from typing import Iterable, NamedTuple, Sequence

from schema import contract


class Play(NamedTuple):
    """One valid, labelled play of a known listener (the listener is the grouping key)."""

    timestamp_ms: int
    track_id: str
    station_id: str
    label: str


@dataclasses.dataclass(frozen=True)
class LabelingParams:
    """Every setting of FeedbackLabeler; defaults live in pipeline/configs.py."""

    skip_ms: int
    skip_fraction: float
    positive_policy: str
    input_policy: str
    negative_policy: str
    max_history: int
    max_hard_negatives: int
    hard_negative_window_ms: int
    eval_cutoff: str
    test_cutoff: str
    max_events_per_user: int

    def __post_init__(self) -> None:
        _one_of("positive_policy", self.positive_policy, contract.POSITIVE_POLICIES)
        _one_of("input_policy", self.input_policy, contract.INPUT_POLICIES)
        _one_of("negative_policy", self.negative_policy, contract.NEGATIVE_POLICIES)
        self.thresholds()  # validates skip_ms and skip_fraction
        for name in ("max_history", "max_events_per_user"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_hard_negatives", "hard_negative_window_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        eval_cut, test_cut = parse_cutoff(self.eval_cutoff), parse_cutoff(self.test_cutoff)
        if type(eval_cut) is not type(test_cut) or eval_cut > test_cut:
            raise ValueError(
                f"eval_cutoff ({self.eval_cutoff}) and test_cutoff ({self.test_cutoff}) must both be fractions "
                "or both timestamps, with eval_cutoff <= test_cutoff"
            )

    def thresholds(self) -> contract.LabelThresholds:
        return contract.LabelThresholds(skip_ms=self.skip_ms, skip_fraction=self.skip_fraction)

    @property
    def positive_labels(self) -> tuple[str, ...]:
        return contract.POSITIVE_POLICIES[self.positive_policy]

    @property
    def negative_labels(self) -> tuple[str, ...]:
        return contract.NEGATIVE_POLICIES[self.negative_policy]

    def history_labels(self, input_policy: str | None = None) -> tuple[str, ...]:
        return contract.history_labels(self.positive_policy, input_policy or self.input_policy)


def _one_of(name: str, value: str, allowed: dict) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, got {value!r}")


def parse_cutoff(spec: str) -> float | int:
    """A fraction of the time range ('0.8', in [0, 1]) or an epoch-ms timestamp ('1767225600000')."""
    text = str(spec).strip()
    try:
        if "." in text or text in ("0", "1"):
            fraction = float(text)
            if 0.0 <= fraction <= 1.0:
                return fraction
        else:
            timestamp = int(text)
            if contract.MIN_TIMESTAMP_MS <= timestamp < contract.MAX_TIMESTAMP_MS:
                return timestamp
    except ValueError:
        pass
    raise ValueError(f"a cut-off must be a fraction in [0, 1] such as 0.8 or an epoch-ms timestamp, got {spec!r}")


class Cutoffs(NamedTuple):
    """Absolute split boundaries: train < eval_ms <= eval < test_ms <= test."""

    eval_ms: int
    test_ms: int

    def split_of(self, timestamp_ms: int) -> str:
        if timestamp_ms < self.eval_ms:
            return contract.TRAIN
        if timestamp_ms < self.test_ms:
            return contract.EVAL
        return contract.TEST


def resolve_cutoffs(params: LabelingParams, first_ms: int, last_ms: int) -> Cutoffs:
    """Fractions become timestamps within [first_ms, last_ms] of the valid plays; timestamps stay."""
    def resolve(spec: str) -> int:
        value = parse_cutoff(spec)
        if isinstance(value, float):
            return first_ms + int(round(value * (last_ms - first_ms)))
        return value

    return Cutoffs(resolve(params.eval_cutoff), resolve(params.test_cutoff))


@dataclasses.dataclass
class TrainingExample:
    user_id: str
    station_id: str
    target_track_id: str
    target_label: str
    target_timestamp_ms: int
    history_track_ids: list[str]
    history_labels: list[str]
    hard_negative_track_ids: list[str]
    split: str


@dataclasses.dataclass
class UserResult:
    """A listener's examples, and which input policies would give them a non-empty test history."""

    examples: list[TrainingExample]
    has_test_target: bool
    covered_by_policy: dict[str, bool]
    label_counts: collections.Counter  # (split, label) -> plays


def _choose_history(
    recent: Sequence[tuple[int, Play]], recent_on_station: Sequence[tuple[int, Play]], station: str, limit: int
) -> list[tuple[int, Play]]:
    """Same-station plays first, then other stations, most recent first; returned oldest to newest."""
    chosen = list(recent_on_station)[-limit:] if station else []
    if len(chosen) < limit:
        others = [item for item in reversed(recent) if not station or item[1].station_id != station]
        chosen.extend(others[: limit - len(chosen)])
    return sorted(chosen)


def _choose_negatives(
    negatives: Sequence[Play], negative_times: Sequence[int], target: Play, params: LabelingParams, cutoffs: Cutoffs
) -> list[str]:
    start = bisect.bisect_left(negative_times, target.timestamp_ms - params.hard_negative_window_ms)
    stop = bisect.bisect_right(negative_times, target.timestamp_ms + params.hard_negative_window_ms)
    split = cutoffs.split_of(target.timestamp_ms)
    candidates = [
        play
        for play in negatives[start:stop]
        if play.track_id != target.track_id and cutoffs.split_of(play.timestamp_ms) == split
    ]
    candidates.sort(
        key=lambda play: (
            not (target.station_id and play.station_id == target.station_id),
            abs(play.timestamp_ms - target.timestamp_ms),
            play.timestamp_ms,
            play.track_id,
        )
    )
    chosen: list[str] = []
    for play in candidates:
        if play.track_id not in chosen:
            chosen.append(play.track_id)
            if len(chosen) == params.max_hard_negatives:
                break
    return chosen


def build_user_examples(user_id: str, plays: Iterable[Play], params: LabelingParams, cutoffs: Cutoffs) -> UserResult:
    """All examples of one listener. Runs in O(plays × (max_history + window size)) time."""
    ordered = sorted(plays)
    negative_labels = set(params.negative_labels)
    negatives = [play for play in ordered if play.label in negative_labels] if params.max_hard_negatives else []
    negative_times = [play.timestamp_ms for play in negatives]
    positive_labels = set(params.positive_labels)
    history_labels = set(params.history_labels())
    policy_labels = {policy: set(params.history_labels(policy)) for policy in contract.INPUT_POLICIES}

    recent: collections.deque = collections.deque(maxlen=params.max_history)
    recent_by_station: dict[str, collections.deque] = {}
    seen_labels: set[str] = set()
    result = UserResult([], False, {policy: False for policy in contract.INPUT_POLICIES}, collections.Counter())

    index = 0
    while index < len(ordered):
        # All plays at one timestamp see the same history: strictly earlier plays only.
        same_time_end = index
        while same_time_end < len(ordered) and ordered[same_time_end].timestamp_ms == ordered[index].timestamp_ms:
            same_time_end += 1
        group = ordered[index:same_time_end]
        for play in group:
            split = cutoffs.split_of(play.timestamp_ms)
            result.label_counts[(split, play.label)] += 1
            if play.label not in positive_labels:
                continue
            on_station = recent_by_station.get(play.station_id, ())
            history = _choose_history(recent, on_station, play.station_id, params.max_history)
            result.examples.append(
                TrainingExample(
                    user_id=user_id,
                    station_id=play.station_id,
                    target_track_id=play.track_id,
                    target_label=play.label,
                    target_timestamp_ms=play.timestamp_ms,
                    history_track_ids=[item[1].track_id for item in history],
                    history_labels=[item[1].label for item in history],
                    hard_negative_track_ids=_choose_negatives(negatives, negative_times, play, params, cutoffs),
                    split=split,
                )
            )
            if split == contract.TEST:
                result.has_test_target = True
                for policy, labels in policy_labels.items():
                    result.covered_by_policy[policy] |= bool(labels & seen_labels)
        for position, play in enumerate(group, start=index):
            seen_labels.add(play.label)
            if play.label in history_labels:
                item = (position, play)
                recent.append(item)
                if play.station_id:
                    recent_by_station.setdefault(
                        play.station_id, collections.deque(maxlen=params.max_history)
                    ).append(item)
        index = same_time_end
    return result
