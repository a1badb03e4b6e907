"""Any delimited log in the contract, through a YAML mapping that names its columns.

The mapping has exactly this shape (only `columns` is required; it must map user_id, track_id and
timestamp_ms and may map station_id, listen_ms, track_ms and artist_id):

    delimiter: "\\t"            # one character; default ","
    timestamp_format: "%d/%m/%Y %H:%M"   # optional strptime format, read as UTC unless it has %z
    columns:                   # contract column: source column
      user_id: user_id
      track_id: video_id
      timestamp_ms: time_ms
      listen_ms: play_time_ms
      track_ms: duration_ms
    feedback:                  # optional
      column: label
      thumb_up: ["1"]
      thumb_down: ["0"]

Timestamps without `timestamp_format` are detected cell by cell: a number below 1e11 is epoch seconds
(fractions allowed: 1e11 s is the year 5138, while 1e11 ms is 1973, before any streaming log), any other
number is epoch milliseconds (both rounded to the millisecond), and anything else must be ISO-8601 text
(`datetime.fromisoformat`: '2018-07-15T16:00:00Z', '2018-07-15 16:00:00+02:00'; no offset means UTC).
Durations are handed to the contract as written, so bad ones are quarantined as `unparsable_<column>`
or `negative_<column>`. A feedback value the mapping does not list is quarantined as `unknown_feedback`;
an empty feedback cell means no explicit feedback.
"""
from __future__ import annotations

import dataclasses
import datetime
import decimal
import pathlib
import re
from typing import Any, Optional, Sequence

import yaml

from listening_logs.adapters import reading
from schema import contract

NAME = "mapped"
DEFAULT_DELIMITER = ","

DELIMITER_KEY = "delimiter"
COLUMNS_KEY = "columns"
FEEDBACK_KEY = "feedback"
TIMESTAMP_FORMAT_KEY = "timestamp_format"
TOP_LEVEL_KEYS: tuple[str, ...] = (DELIMITER_KEY, COLUMNS_KEY, FEEDBACK_KEY, TIMESTAMP_FORMAT_KEY)

FEEDBACK_COLUMN_KEY = "column"
FEEDBACK_KEYS: tuple[str, ...] = (FEEDBACK_COLUMN_KEY, contract.THUMB_UP, contract.THUMB_DOWN)

MAPPABLE_COLUMNS: tuple[str, ...] = tuple(column for column in contract.COLUMNS if column != contract.FEEDBACK)
"""Contract columns `columns:` may map; feedback has its own section because its values need translating."""

NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
SECONDS_BELOW = decimal.Decimal("1e11")
MS_PER_SECOND = 1000
ABSURD_MS = decimal.Decimal(contract.MAX_TIMESTAMP_MS) * 1000
UNPARSABLE_TIMESTAMP = contract.unparsable(contract.TIMESTAMP_MS)


# --- The mapping ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FeedbackMapping:
    """Which source column holds explicit feedback and which of its values mean which thumb."""

    column: str
    values: dict[str, str]  # source value -> contract feedback value


@dataclasses.dataclass(frozen=True)
class Mapping:
    """A validated mapping file."""

    delimiter: str
    columns: dict[str, str]  # contract column -> source column
    feedback: Optional[FeedbackMapping]
    timestamp_format: Optional[str]
    source: str  # where it came from, for messages

    def source_columns(self) -> tuple[str, ...]:
        """Every source column the mapping reads, each once, in mapping order."""
        names = list(self.columns.values())
        if self.feedback is not None:
            names.append(self.feedback.column)
        return tuple(dict.fromkeys(names))


def mapping_error(source: str, problem: str) -> reading.InputError:
    return reading.InputError(f"mapping {source}: {problem}")


def check_keys(found: dict[str, Any], allowed: Sequence[str], where: str, source: str) -> None:
    """Refuses keys the mapping format does not have, so a typo is not silently ignored."""
    unknown = [str(key) for key in found if key not in allowed]
    if unknown:
        raise mapping_error(source, f"unknown key(s) {', '.join(unknown)} in {where}; allowed: {', '.join(allowed)}")


def text_value(value: Any, where: str, source: str) -> str:
    """A non-empty string setting; anything else is refused with a hint to quote it."""
    if not isinstance(value, str) or not value.strip():
        raise mapping_error(source, f"{where} must be a non-empty text value (quote it), got {value!r}")
    return value.strip()


def parse_delimiter(value: Any, source: str) -> str:
    if not isinstance(value, str) or len(value) != 1:
        raise mapping_error(
            source, f'{DELIMITER_KEY} must be one character, got {value!r}; write a tab as "\\t" in double quotes'
        )
    return value


def parse_columns(value: Any, source: str) -> dict[str, str]:
    """The contract-to-source column map; the contract's required columns must all be there."""
    if not isinstance(value, dict):
        raise mapping_error(source, f"{COLUMNS_KEY} must map contract columns to source columns")
    if contract.FEEDBACK in value:
        raise mapping_error(
            source,
            f"map {contract.FEEDBACK} in the `{FEEDBACK_KEY}:` section (with the values meaning "
            f"{contract.THUMB_UP} and {contract.THUMB_DOWN}), not under {COLUMNS_KEY}",
        )
    check_keys(value, MAPPABLE_COLUMNS, COLUMNS_KEY, source)
    missing = [column for column in contract.REQUIRED_COLUMNS if column not in value]
    if missing:
        raise mapping_error(source, f"{COLUMNS_KEY} must map the required contract column(s) {', '.join(missing)}")
    return {column: text_value(name, f"{COLUMNS_KEY}.{column}", source) for column, name in value.items()}


def feedback_values(value: Any, where: str, source: str) -> list[str]:
    """A list of source values; numbers are accepted as their text, other types must be quoted."""
    if not isinstance(value, list):
        raise mapping_error(source, f"{where} must be a list of values, e.g. [\"1\"]")
    bad = [item for item in value if isinstance(item, bool) or not isinstance(item, (str, int))]
    if bad:
        raise mapping_error(source, f"{where} has value(s) {bad!r} that are not text; quote them")
    return [str(item).strip() for item in value]


def parse_feedback(value: Any, source: str) -> FeedbackMapping:
    """The feedback section: a column and the values that mean thumb_up or thumb_down."""
    if not isinstance(value, dict):
        raise mapping_error(source, f"{FEEDBACK_KEY} must have keys {', '.join(FEEDBACK_KEYS)}")
    check_keys(value, FEEDBACK_KEYS, FEEDBACK_KEY, source)
    if FEEDBACK_COLUMN_KEY not in value:
        raise mapping_error(source, f"{FEEDBACK_KEY} must name its source `{FEEDBACK_COLUMN_KEY}`")
    column = text_value(value[FEEDBACK_COLUMN_KEY], f"{FEEDBACK_KEY}.{FEEDBACK_COLUMN_KEY}", source)
    values: dict[str, str] = {}
    for thumb in (contract.THUMB_UP, contract.THUMB_DOWN):
        for item in feedback_values(value.get(thumb, []), f"{FEEDBACK_KEY}.{thumb}", source):
            if item in values and values[item] != thumb:
                raise mapping_error(source, f"feedback value {item!r} is listed as both thumb_up and thumb_down")
            values[item] = thumb
    if "" in values:
        raise mapping_error(source, "an empty feedback value always means no explicit feedback; do not list it")
    if not values:
        raise mapping_error(
            source, f"{FEEDBACK_KEY} must list values under {contract.THUMB_UP} or {contract.THUMB_DOWN}"
        )
    return FeedbackMapping(column=column, values=values)


def parse_timestamp_format(value: Any, source: str) -> str:
    fmt = text_value(value, TIMESTAMP_FORMAT_KEY, source)
    if "%" not in fmt:
        raise mapping_error(source, f"{TIMESTAMP_FORMAT_KEY} must be a strptime format such as \"%Y-%m-%d %H:%M:%S\"")
    return fmt


def parse_mapping(document: Any, source: str) -> Mapping:
    """Checks a loaded YAML document against the mapping format."""
    if not isinstance(document, dict):
        raise mapping_error(source, f"must be a YAML mapping with the keys {', '.join(TOP_LEVEL_KEYS)}")
    check_keys(document, TOP_LEVEL_KEYS, "the mapping", source)
    if COLUMNS_KEY not in document:
        raise mapping_error(source, f"needs a `{COLUMNS_KEY}:` section mapping contract columns to source columns")
    feedback = document.get(FEEDBACK_KEY)
    timestamp_format = document.get(TIMESTAMP_FORMAT_KEY)
    return Mapping(
        delimiter=parse_delimiter(document.get(DELIMITER_KEY, DEFAULT_DELIMITER), source),
        columns=parse_columns(document[COLUMNS_KEY], source),
        feedback=None if feedback is None else parse_feedback(feedback, source),
        timestamp_format=None if timestamp_format is None else parse_timestamp_format(timestamp_format, source),
        source=source,
    )


def load_mapping(path: pathlib.Path) -> Mapping:
    """Reads and checks a mapping file; every problem is an `InputError` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise mapping_error(str(path), f"cannot be read ({error})") from error
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise mapping_error(str(path), f"is not valid YAML: {error}") from error
    return parse_mapping(document, str(path))


# --- Values ---------------------------------------------------------------------------------------------
def numeric_timestamp_ms(text: str) -> int:
    """Epoch ms of an epoch number: below 1e11 it is seconds, otherwise milliseconds."""
    value = decimal.Decimal(text)
    if abs(value) < SECONDS_BELOW:
        value *= MS_PER_SECOND
    if abs(value) >= ABSURD_MS:  # refuse before int() would build a huge number from '1e999999999'
        raise reading.RowRejected(contract.TIMESTAMP_OUT_OF_RANGE)
    return int(value.to_integral_value(rounding=decimal.ROUND_HALF_EVEN))


def iso_timestamp_ms(text: str) -> int:
    """Epoch ms of ISO-8601 text; without an offset it is UTC."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise reading.RowRejected(UNPARSABLE_TIMESTAMP) from None
    return reading.epoch_ms(moment)


def timestamp_ms(text: str, fmt: Optional[str]) -> Optional[int]:
    """Epoch ms of a timestamp cell (see the module doc); empty stays None for the contract to report."""
    if not text:
        return None
    if fmt is not None:
        return reading.strptime_ms(text, fmt, UNPARSABLE_TIMESTAMP)
    if NUMBER.fullmatch(text):
        return numeric_timestamp_ms(text)
    return iso_timestamp_ms(text)


def feedback(text: str, mapping: Optional[FeedbackMapping]) -> str:
    """The contract feedback of a cell; an unlisted non-empty value is rejected, never guessed."""
    if mapping is None or not text:
        return contract.NO_FEEDBACK
    if text not in mapping.values:
        raise reading.RowRejected(contract.UNKNOWN_FEEDBACK)
    return mapping.values[text]


def to_candidate(mapping: Mapping, indexes: dict[str, int], fields: Sequence[str]) -> reading.Candidate:
    """One source row as a contract row; columns the mapping leaves out stay empty."""
    candidate: reading.Candidate = {
        column: reading.pick(fields, indexes, source) for column, source in mapping.columns.items()
    }
    candidate[contract.TIMESTAMP_MS] = timestamp_ms(candidate[contract.TIMESTAMP_MS], mapping.timestamp_format)
    feedback_text = "" if mapping.feedback is None else reading.pick(fields, indexes, mapping.feedback.column)
    candidate[contract.FEEDBACK] = feedback(feedback_text, mapping.feedback)
    return candidate


class MappedAdapter:
    """A delimited file read through a `Mapping`."""

    name = NAME

    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping
        self.delimiter = mapping.delimiter

    def bind(self, header: Sequence[str]) -> reading.Converter:
        fix = f"Set `{DELIMITER_KEY}: {{delimiter}}` in the mapping {self.mapping.source}."
        reading.check_delimiter(header, self.delimiter, fix)
        indexes = reading.column_indexes(
            header, self.mapping.source_columns(), needed_by=f"named in the mapping {self.mapping.source}"
        )
        return lambda fields: to_candidate(self.mapping, indexes, fields)
