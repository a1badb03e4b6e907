"""Spotify Music Streaming Sessions Dataset (MSSD) logs in the contract.

Brost, Mehrotra, Jehan, "The Music Streaming Sessions Dataset" (WWW 2019). One row is one play within a
listening session; the log has no user id, no explicit feedback and no durations.

Mapping (source column -> contract column):

* `session_id` -> both `user_id` and `station_id`: a session is the only listener identity MSSD gives, and
  it is also one continuous stream of recommendations, which is what a station is in the contract.
* `track_id_clean` -> `track_id`.
* `timestamp_ms` = UTC midnight of `date` + `hour_of_day` hours + `session_position` seconds. MSSD has no
  time of day finer than the hour, so this is a synthetic clock: the position-as-seconds keeps plays in
  session order (positions run 1..20, far below an hour), and a session that crosses an hour or midnight
  still increases because `date` and `hour_of_day` move with it.
* `skip_2` -> `listen_ms`: MSSD records skips as flags, not durations. `skip_2` ("played briefly") True
  becomes `listen_ms` = 0, below any skip threshold, so the contract labels the play SKIP; False leaves
  `listen_ms` empty and the contract labels it LISTEN. `skip_2` is the flag closest to the contract's
  short-play rule (about 30 s, `contract.DEFAULT_SKIP_MS`) and is the skip the MSSD paper's skip-prediction
  task is built on. `skip_1` ("played very briefly") catches only the briefest plays and misses most
  skips; `skip_3` ("most of the track not played") also counts plays that ran well past a short listen.
* `feedback`, `track_ms`, `artist_id`: empty (not in the log).

`date` is documented as yyyy-mm-dd (2018-07-15) but the public sample has dd-mm-yy (15-07-18); both are
accepted. A row whose date, hour, position or `skip_2` flag does not parse is quarantined with the reason
`unparsable_<source column>`; flags are `True`/`False` in any letter case.
"""
from __future__ import annotations

import re
from typing import Optional, Sequence

from listening_logs.adapters import reading
from schema import contract

NAME = "mssd"
DELIMITER = ","

SESSION_ID = "session_id"
SESSION_POSITION = "session_position"
TRACK_ID_CLEAN = "track_id_clean"
SKIP_2 = "skip_2"
HOUR_OF_DAY = "hour_of_day"
DATE = "date"
REQUIRED: tuple[str, ...] = (SESSION_ID, SESSION_POSITION, TRACK_ID_CLEAN, SKIP_2, HOUR_OF_DAY, DATE)

# Adapter-specific quarantine reasons: these source columns have no contract column of their own.
UNPARSABLE_DATE = contract.unparsable(DATE)
UNPARSABLE_HOUR = contract.unparsable(HOUR_OF_DAY)
UNPARSABLE_POSITION = contract.unparsable(SESSION_POSITION)
UNPARSABLE_SKIP_2 = contract.unparsable(SKIP_2)

DATE_FORMATS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"), "%Y-%m-%d"),  # as MSSD documents it
    (re.compile(r"[0-9]{2}-[0-9]{2}-[0-9]{2}"), "%d-%m-%y"),  # as the public sample has it
)
FIX_DELIMITER = (
    "MSSD logs are comma-separated: re-save the file with commas, or convert it with --format mapped "
    "and `delimiter: {delimiter}` in the mapping."
)
HOUR_MS = 3_600_000
SECOND_MS = 1_000
SKIPPED_LISTEN_MS = 0
"""listen_ms for a `skip_2` play: zero is below every skip threshold, so the contract labels it SKIP."""


def date_ms(text: str) -> int:
    """Epoch ms of UTC midnight of an MSSD date in either accepted spelling."""
    for pattern, fmt in DATE_FORMATS:
        if pattern.fullmatch(text):
            return reading.strptime_ms(text, fmt, UNPARSABLE_DATE)
    raise reading.RowRejected(UNPARSABLE_DATE)


def bounded_int(text: str, low: int, high: int, reason: str) -> int:
    """An integer within [low, high], or `RowRejected(reason)`."""
    if not re.fullmatch(r"[0-9]+", text):
        raise reading.RowRejected(reason)
    number = int(text)
    if not low <= number <= high:
        raise reading.RowRejected(reason)
    return number


def flag(text: str, reason: str) -> bool:
    """An MSSD boolean (`True`/`False`), or `RowRejected(reason)`."""
    folded = text.casefold()
    if folded not in ("true", "false"):
        raise reading.RowRejected(reason)
    return folded == "true"


def play_timestamp_ms(date: str, hour: str, position: str) -> int:
    """The synthetic play time: midnight of `date` + `hour` hours + `position` seconds (see module doc)."""
    midnight = date_ms(date)
    hours = bounded_int(hour, 0, 23, UNPARSABLE_HOUR)
    seconds = bounded_int(position, 1, 3599, UNPARSABLE_POSITION)
    return midnight + hours * HOUR_MS + seconds * SECOND_MS


def listen_ms(skip_2: str) -> Optional[int]:
    """0 for a brief play (SKIP), unknown otherwise (LISTEN)."""
    return SKIPPED_LISTEN_MS if flag(skip_2, UNPARSABLE_SKIP_2) else None


def to_candidate(indexes: dict[str, int], fields: Sequence[str]) -> reading.Candidate:
    """One MSSD row as a contract row."""
    session = reading.pick(fields, indexes, SESSION_ID)
    return {
        contract.USER_ID: session,
        contract.STATION_ID: session,
        contract.TRACK_ID: reading.pick(fields, indexes, TRACK_ID_CLEAN),
        contract.TIMESTAMP_MS: play_timestamp_ms(
            reading.pick(fields, indexes, DATE),
            reading.pick(fields, indexes, HOUR_OF_DAY),
            reading.pick(fields, indexes, SESSION_POSITION),
        ),
        contract.LISTEN_MS: listen_ms(reading.pick(fields, indexes, SKIP_2)),
        contract.TRACK_MS: None,
        contract.FEEDBACK: contract.NO_FEEDBACK,
    }


class MssdAdapter:
    """The MSSD session log (comma-separated, columns by header name)."""

    name = NAME
    delimiter = DELIMITER

    def bind(self, header: Sequence[str]) -> reading.Converter:
        reading.check_delimiter(header, self.delimiter, FIX_DELIMITER)
        indexes = reading.column_indexes(header, REQUIRED, needed_by=f"--format {NAME} needs them")
        return lambda fields: to_candidate(indexes, fields)
