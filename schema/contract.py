"""The data contract of one play: column names, label names, labelling thresholds and row validation.

Every other module imports these names from here, so a column, a label or a threshold has exactly one
spelling and one default. `listening_events.pbtxt` beside this file is the same contract for TFX; a test
keeps the two in step.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any, Mapping, Optional, Union

import numpy as np

# --- Columns (docs/design.md §3) ------------------------------------------------------------------------
USER_ID = "user_id"
TRACK_ID = "track_id"
STATION_ID = "station_id"
TIMESTAMP_MS = "timestamp_ms"
LISTEN_MS = "listen_ms"
TRACK_MS = "track_ms"
FEEDBACK = "feedback"
ARTIST_ID = "artist_id"

COLUMNS: tuple[str, ...] = (USER_ID, TRACK_ID, STATION_ID, TIMESTAMP_MS, LISTEN_MS, TRACK_MS, FEEDBACK, ARTIST_ID)
REQUIRED_COLUMNS: tuple[str, ...] = (USER_ID, TRACK_ID, TIMESTAMP_MS)
STRING_COLUMNS: tuple[str, ...] = (USER_ID, TRACK_ID, STATION_ID, FEEDBACK, ARTIST_ID)
INT_COLUMNS: tuple[str, ...] = (TIMESTAMP_MS, LISTEN_MS, TRACK_MS)

SCHEMA_PATH = pathlib.Path(__file__).resolve().with_name("listening_events.pbtxt")

# --- Explicit feedback values ---------------------------------------------------------------------------
NO_FEEDBACK = ""
THUMB_UP = "thumb_up"
THUMB_DOWN = "thumb_down"
FEEDBACK_VALUES: tuple[str, ...] = (NO_FEEDBACK, THUMB_UP, THUMB_DOWN)

# --- Labels: the position in LABELS is the label id used by Transform and the model ---------------------
LIKE = "like"
LISTEN = "listen"
SKIP = "skip"
DISLIKE = "dislike"
LABELS: tuple[str, ...] = (LIKE, LISTEN, SKIP, DISLIKE)
LABEL_IDS: dict[str, int] = {name: i for i, name in enumerate(LABELS)}
NEGATIVE_LABELS: tuple[str, ...] = (SKIP, DISLIKE)

# --- Labelling thresholds (defaults; the pipeline config may override them) -----------------------------
DEFAULT_SKIP_MS = 30_000
"""A play without explicit feedback shorter than this is a SKIP."""
DEFAULT_SKIP_FRACTION = 0.25
"""...or shorter than this fraction of the track's duration, when the duration is known."""

# --- Plausibility bounds: outside them a row is quarantined, not guessed at -----------------------------
MAX_DURATION_MS = 24 * 3600 * 1000
MIN_TIMESTAMP_MS = 946_684_800_000  # 2000-01-01T00:00:00Z: no streaming log is older
MAX_TIMESTAMP_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z: anything later is a unit mistake


# --- Quarantine reasons ---------------------------------------------------------------------------------
def missing(column: str) -> str:
    return f"missing_{column}"


def unparsable(column: str) -> str:
    return f"unparsable_{column}"


def negative(column: str) -> str:
    return f"negative_{column}"


def absurd(column: str) -> str:
    return f"absurd_{column}"


UNKNOWN_FEEDBACK = "unknown_feedback"
TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
INVALID_UTF8 = "invalid_utf8"
WRONG_FIELD_COUNT = "wrong_field_count"


@dataclasses.dataclass(frozen=True)
class LabelThresholds:
    """The two numbers that separate a SKIP from a LISTEN."""

    skip_ms: int = DEFAULT_SKIP_MS
    skip_fraction: float = DEFAULT_SKIP_FRACTION

    def __post_init__(self) -> None:
        if self.skip_ms < 0:
            raise ValueError(f"skip_ms must be >= 0, got {self.skip_ms}")
        if not 0.0 <= self.skip_fraction <= 1.0:
            raise ValueError(f"skip_fraction must be within [0, 1], got {self.skip_fraction}")


def label_ids(
    feedback: np.ndarray,
    listen_ms: np.ndarray,
    track_ms: np.ndarray,
    thresholds: LabelThresholds = LabelThresholds(),
) -> np.ndarray:
    """Label ids (indices into LABELS) for arrays of plays; NaN marks a missing duration.

    The one implementation of docs/design.md §3's labelling rule: thumbs decide first; without them a short play
    (below `skip_ms`, or below `skip_fraction` of a known track duration) is a SKIP, anything else a LISTEN.
    """
    feedback = np.asarray(feedback).astype(str)
    listen = np.asarray(listen_ms, dtype=np.float64)
    track = np.asarray(track_ms, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        short_absolute = listen < thresholds.skip_ms
        short_relative = listen < thresholds.skip_fraction * track
    skipped = short_absolute | short_relative  # NaN compares False: unknown durations never make a skip
    labels = np.where(skipped, LABEL_IDS[SKIP], LABEL_IDS[LISTEN])
    labels = np.where(feedback == THUMB_UP, LABEL_IDS[LIKE], labels)
    labels = np.where(feedback == THUMB_DOWN, LABEL_IDS[DISLIKE], labels)
    return labels.astype(np.int64)


def label_of(row: Mapping[str, Any], thresholds: LabelThresholds = LabelThresholds()) -> str:
    """The label name of one canonical row (as returned by `validate_row`)."""
    nan = float("nan")
    listen = row.get(LISTEN_MS)
    track = row.get(TRACK_MS)
    ids = label_ids(
        np.array([row.get(FEEDBACK) or NO_FEEDBACK]),
        np.array([nan if listen is None else listen]),
        np.array([nan if track is None else track]),
        thresholds,
    )
    return LABELS[int(ids[0])]


# --- Row validation -------------------------------------------------------------------------------------
CanonicalRow = dict[str, Union[str, int, None]]


@dataclasses.dataclass(frozen=True)
class Validation:
    """Either a canonical row or the reason it was quarantined (never both)."""

    row: Optional[CanonicalRow]
    reason: Optional[str]

    @property
    def ok(self) -> bool:
        return self.row is not None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8").strip()
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value).strip()


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _integer(value: Any, column: str) -> Optional[int]:
    """Parses an integer cell; '' and None mean missing. Integral floats ('12.0') are accepted."""
    if isinstance(value, bool):
        raise _Rejected(unparsable(column))
    if isinstance(value, (int, np.integer)):
        return int(value)
    text = _text(value)
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        raise _Rejected(unparsable(column)) from None
    if not math.isfinite(number) or number != int(number):
        raise _Rejected(unparsable(column))
    return int(number)


def _duration(value: Any, column: str) -> Optional[int]:
    number = _integer(value, column)
    if number is None:
        return None
    if number < 0:
        raise _Rejected(negative(column))
    if number > MAX_DURATION_MS:
        raise _Rejected(absurd(column))
    return number


def validate_row(raw: Mapping[str, Any]) -> Validation:
    """Checks one play against the contract.

    Accepts text (from CSV), bytes (from tf.train.Example) or typed values. Returns the canonical row
    (all COLUMNS present: strings stripped with '' for absent optional text, ints or None for durations)
    or the first quarantine reason found.
    """
    try:
        user = _text(raw.get(USER_ID))
        if not user:
            raise _Rejected(missing(USER_ID))
        track = _text(raw.get(TRACK_ID))
        if not track:
            raise _Rejected(missing(TRACK_ID))
        timestamp = _integer(raw.get(TIMESTAMP_MS), TIMESTAMP_MS)
        if timestamp is None:
            raise _Rejected(missing(TIMESTAMP_MS))
        if not MIN_TIMESTAMP_MS <= timestamp < MAX_TIMESTAMP_MS:
            raise _Rejected(TIMESTAMP_OUT_OF_RANGE)
        listen = _duration(raw.get(LISTEN_MS), LISTEN_MS)
        track_ms = _duration(raw.get(TRACK_MS), TRACK_MS)
        if track_ms == 0:
            raise _Rejected(absurd(TRACK_MS))
        feedback = _text(raw.get(FEEDBACK))
        if feedback not in FEEDBACK_VALUES:
            raise _Rejected(UNKNOWN_FEEDBACK)
        station = _text(raw.get(STATION_ID))
        artist = _text(raw.get(ARTIST_ID))
    except UnicodeDecodeError:
        return Validation(None, INVALID_UTF8)
    except _Rejected as rejected:
        return Validation(None, rejected.reason)
    row: CanonicalRow = {
        USER_ID: user,
        TRACK_ID: track,
        STATION_ID: station,
        TIMESTAMP_MS: timestamp,
        LISTEN_MS: listen,
        TRACK_MS: track_ms,
        FEEDBACK: feedback,
        ARTIST_ID: artist,
    }
    return Validation(row, None)


# --- Training examples written by FeedbackLabeler (docs/design.md §4) -----------------------------------
# One tf.train.Example per positive target; the lists are variable-length, oldest to newest for history.
EX_USER_ID = "user_id"
EX_STATION_ID = "station_id"
EX_TARGET_TRACK_ID = "target_track_id"
EX_TARGET_LABEL = "target_label"
EX_TARGET_TIMESTAMP_MS = "target_timestamp_ms"
EX_HISTORY_TRACK_IDS = "history_track_ids"
EX_HISTORY_LABELS = "history_labels"
EX_HARD_NEGATIVE_TRACK_IDS = "hard_negative_track_ids"
EXAMPLE_SCALAR_FEATURES: tuple[str, ...] = (
    EX_USER_ID, EX_STATION_ID, EX_TARGET_TRACK_ID, EX_TARGET_LABEL, EX_TARGET_TIMESTAMP_MS,
)
EXAMPLE_LIST_FEATURES: tuple[str, ...] = (EX_HISTORY_TRACK_IDS, EX_HISTORY_LABELS, EX_HARD_NEGATIVE_TRACK_IDS)
LABELED_SCHEMA_PATH = pathlib.Path(__file__).resolve().with_name("labeled_examples.pbtxt")

# Splits of the labelled examples: by global time cut-offs, never by hashing.
TRAIN, EVAL, TEST = "train", "eval", "test"
SPLITS: tuple[str, ...] = (TRAIN, EVAL, TEST)

# Policies (docs/design.md §4): which labels are targets, which enter the history, which are hard negatives.
POSITIVE_POLICIES: dict[str, tuple[str, ...]] = {"like": (LIKE,), "like+listen": (LIKE, LISTEN)}
INPUT_POLICIES: dict[str, tuple[str, ...]] = {
    "positives": (),  # the positive policy's labels only
    "positives+skips": (SKIP,),
    "all": (SKIP, DISLIKE),
}
"""Labels an input policy adds to the positive policy's labels in the history."""
NEGATIVE_POLICIES: dict[str, tuple[str, ...]] = {
    "dislikes": (DISLIKE,),
    "skips": (SKIP,),
    "dislikes+skips": (DISLIKE, SKIP),
    "none": (),
}


def history_labels(positive_policy: str, input_policy: str) -> tuple[str, ...]:
    """The labels that may enter a history under these policies."""
    return POSITIVE_POLICIES[positive_policy] + INPUT_POLICIES[input_policy]
