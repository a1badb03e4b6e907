"""Piki Music Dataset ratings in the contract.

Piki users hear 30-second clips and rate each one: dislike (`liked` 0), like (1) or superlike (2). One row
is one rated clip. Columns are found by header name, ignoring letter case, because copies of the dataset
order them differently and spell `spotify_popularity` / `Spotify_popularity` differently.

Mapping (source column -> contract column):

* `user_id` -> `user_id` as `"u" + user_id`, `song_id` -> `track_id` as `"s" + song_id`: the prefixes keep
  ids textual (TFX's CSV type inference would otherwise read them as integers) and match the ids in the
  Piki `.histories` files.
* `timestamp` ('YYYY-MM-DD HH:MM:SS', taken as UTC) -> `timestamp_ms`; any other spelling is quarantined
  as `unparsable_timestamp_ms`.
* `liked` -> `feedback`: 0 -> thumb_down, 1 and 2 -> thumb_up (a superlike is still a like); any other
  value is quarantined as `unknown_feedback`.
* `station_id`, `listen_ms`, `track_ms`, `artist_id`: empty (Piki has no stations and no play times).
"""
from __future__ import annotations

from typing import Optional, Sequence

from listening_logs.adapters import reading
from schema import contract

NAME = "piki"
DELIMITER = ","

USER_ID = "user_id"
SONG_ID = "song_id"
TIMESTAMP = "timestamp"
LIKED = "liked"
REQUIRED: tuple[str, ...] = (USER_ID, SONG_ID, TIMESTAMP, LIKED)

USER_PREFIX = "u"
TRACK_PREFIX = "s"
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
FEEDBACK_OF_LIKED: dict[str, str] = {"0": contract.THUMB_DOWN, "1": contract.THUMB_UP, "2": contract.THUMB_UP}
FIX_DELIMITER = (
    "Piki files are comma-separated: re-save the file with commas, or convert it with --format mapped "
    "and `delimiter: {delimiter}` in the mapping."
)


def timestamp_ms(text: str) -> Optional[int]:
    """Epoch ms of a Piki time (UTC); empty stays None so the contract reports the timestamp missing."""
    if not text:
        return None
    return reading.strptime_ms(text, TIMESTAMP_FORMAT, contract.unparsable(contract.TIMESTAMP_MS))


def feedback(liked: str) -> str:
    """The contract feedback of a Piki rating; an unknown rating is rejected, never guessed."""
    if liked not in FEEDBACK_OF_LIKED:
        raise reading.RowRejected(contract.UNKNOWN_FEEDBACK)
    return FEEDBACK_OF_LIKED[liked]


def to_candidate(indexes: dict[str, int], fields: Sequence[str]) -> reading.Candidate:
    """One Piki rating as a contract row."""
    return {
        contract.USER_ID: reading.prefixed(USER_PREFIX, reading.pick(fields, indexes, USER_ID)),
        contract.TRACK_ID: reading.prefixed(TRACK_PREFIX, reading.pick(fields, indexes, SONG_ID)),
        contract.STATION_ID: "",
        contract.TIMESTAMP_MS: timestamp_ms(reading.pick(fields, indexes, TIMESTAMP)),
        contract.LISTEN_MS: None,
        contract.TRACK_MS: None,
        contract.FEEDBACK: feedback(reading.pick(fields, indexes, LIKED)),
    }


class PikiAdapter:
    """Piki rating exports (comma-separated, columns by header name in any order or letter case)."""

    name = NAME
    delimiter = DELIMITER

    def bind(self, header: Sequence[str]) -> reading.Converter:
        reading.check_delimiter(header, self.delimiter, FIX_DELIMITER)
        indexes = reading.column_indexes(
            header, REQUIRED, needed_by=f"--format {NAME} needs them", ignore_case=True
        )
        return lambda fields: to_candidate(indexes, fields)
