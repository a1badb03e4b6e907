"""Reading delimited logs line by line, and what every adapter shares.

The reader works on bytes and decodes each physical line on its own, so one line of bad UTF-8 costs that
line only (it is quarantined as `contract.INVALID_UTF8`) instead of the whole file. The price: one record
is one physical line; quoted fields spanning lines are not supported (none of the supported logs use them).
Blank lines carry no data and are counted, not quarantined.

Problems the user must fix before any row can be read (empty input, a header that is not valid UTF-8, a
wrong delimiter, missing columns) raise `InputError`; problems of a single row produce a `Rejected` line.
"""
from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import datetime
import json
import pathlib
from typing import Any, Callable, Iterator, Mapping, Optional, Protocol, Sequence, Union

from schema import contract

COMMON_DELIMITERS: dict[str, str] = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}
"""Delimiters worth suggesting when a header does not split, with names a message can show."""

BOM = "\ufeff"

Candidate = dict[str, Any]
"""A row named by contract columns, not yet checked by `contract.validate_row`."""

Converter = Callable[[Sequence[str]], Candidate]
"""Turns one record's fields (in header order) into a candidate row, or raises `RowRejected`."""


class InputError(Exception):
    """The input, the flags or the mapping need fixing before anything can be converted (exit status 2)."""


class RowRejected(Exception):
    """One row cannot become a play; `reason` is the quarantine reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Adapter(Protocol):
    """A source format: how its file is delimited and how its columns become contract columns."""

    name: str
    delimiter: str

    def bind(self, header: Sequence[str]) -> Converter:
        """Checks the header (raising `InputError` for missing columns) and returns the row converter."""
        ...


@dataclasses.dataclass(frozen=True)
class Record:
    """A data line split into fields; `line_number` is 1-based in the input file (the header is line 1)."""

    line_number: int
    raw: str
    fields: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Rejected:
    """A data line that could not even be split into the header's fields."""

    line_number: int
    reason: str
    raw: str


# --- Header checks --------------------------------------------------------------------------------------
def yaml_quoted(delimiter: str) -> str:
    """A delimiter spelled as it must appear in a YAML mapping (double-quoted, escapes intact)."""
    return json.dumps(delimiter)


def describe_delimiter(delimiter: str) -> str:
    """A delimiter as a person would name it in a message: 'tab ("\\t")'."""
    name = COMMON_DELIMITERS.get(delimiter)
    return f"{name} ({yaml_quoted(delimiter)})" if name else yaml_quoted(delimiter)


def other_delimiter_in(header: Sequence[str], delimiter: str) -> Optional[str]:
    """The common delimiter a one-column header seems to use instead of `delimiter`, if any."""
    if len(header) != 1:
        return None
    counts = {other: header[0].count(other) for other in COMMON_DELIMITERS if other != delimiter}
    best = max(counts, key=lambda other: counts[other])
    return best if counts[best] > 0 else None


def check_delimiter(header: Sequence[str], delimiter: str, fix: str) -> None:
    """Refuses a header that splits into one column holding another common delimiter.

    `fix` tells the user what to do; `{delimiter}` in it becomes the delimiter the file seems to use.
    """
    other = other_delimiter_in(header, delimiter)
    if other is not None:
        raise InputError(
            f"wrong delimiter: with the {describe_delimiter(delimiter)} delimiter the header is a single "
            f"column, but it contains {describe_delimiter(other)}, so the file looks "
            f"{COMMON_DELIMITERS[other]}-delimited. " + fix.replace("{delimiter}", yaml_quoted(other))
        )


def check_unique(header: Sequence[str]) -> None:
    """Refuses duplicate column names: a column must mean one thing."""
    duplicates = sorted(name for name, count in collections.Counter(header).items() if count > 1)
    if duplicates:
        raise InputError(f"the header repeats column(s) {', '.join(duplicates)}; each column must be named once")


def column_indexes(
    header: Sequence[str], wanted: Sequence[str], needed_by: str, ignore_case: bool = False
) -> dict[str, int]:
    """Positions of the wanted source columns; names every missing one at once so one fix suffices."""
    fold: Callable[[str], str] = str.casefold if ignore_case else (lambda name: name)
    positions = {fold(name): i for i, name in enumerate(header)}
    missing = [name for name in wanted if fold(name) not in positions]
    if missing:
        raise InputError(
            f"missing column(s) {', '.join(missing)} ({needed_by}); the input's header has: {', '.join(header)}"
        )
    return {name: positions[fold(name)] for name in wanted}


# --- Reading --------------------------------------------------------------------------------------------
def split_line(text: str, delimiter: str) -> tuple[str, ...]:
    """Fields of one line, honouring CSV quoting."""
    return tuple(next(csv.reader([text], delimiter=delimiter)))


def strip_newline(data: bytes) -> bytes:
    return data.rstrip(b"\r\n")


def numbered_lines(path: pathlib.Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, bytes without the line ending) for every physical line."""
    with path.open("rb") as handle:
        for number, data in enumerate(handle, start=1):
            yield number, strip_newline(data)


def read_header(lines: Iterator[tuple[int, bytes]], delimiter: str) -> tuple[str, ...]:
    """The column names from the first non-blank line; an input without one is an error."""
    for number, data in lines:
        if not data.strip():
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"the header (line {number}) is not valid UTF-8; save the file as UTF-8") from None
        return tuple(name.strip() for name in split_line(text.removeprefix(BOM), delimiter))
    raise InputError("the input is empty: expected a header line naming the columns, then one play per line")


class Table:
    """An open delimited file: its header, and a one-pass stream of its data lines when iterated.

    Iterating yields a `Record` for each good line and a `Rejected` for each undecodable or mis-sized one;
    blank lines are skipped and counted in `blank_lines`.
    """

    def __init__(self, header: tuple[str, ...], lines: Iterator[tuple[int, bytes]], delimiter: str) -> None:
        self.header = header
        self.blank_lines = 0
        self._lines = lines
        self._delimiter = delimiter

    def __iter__(self) -> Iterator[Union[Record, Rejected]]:
        for number, data in self._lines:
            if not data.strip():
                self.blank_lines += 1
                continue
            yield self._parse(number, data)

    def _parse(self, number: int, data: bytes) -> Union[Record, Rejected]:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return Rejected(number, contract.INVALID_UTF8, data.decode("utf-8", errors="backslashreplace"))
        fields = split_line(text, self._delimiter)
        if len(fields) != len(self.header):
            return Rejected(number, contract.WRONG_FIELD_COUNT, text)
        return Record(number, text, fields)


@contextlib.contextmanager
def open_table(path: pathlib.Path, delimiter: str) -> Iterator[Table]:
    """Opens a delimited file, reads its header and streams the rest; the file closes on exit."""
    if not path.is_file():
        raise InputError(f"cannot read the input {path}: it is not an existing file")
    lines = numbered_lines(path)
    try:
        try:
            header = read_header(lines, delimiter)
        except OSError as error:
            raise InputError(f"cannot read the input {path}: {error}") from error
        check_unique(header)
        yield Table(header, lines, delimiter)
    finally:
        lines.close()


# --- Shared value parsing -------------------------------------------------------------------------------
def epoch_ms(moment: datetime.datetime) -> int:
    """Milliseconds since the epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    delta = moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return delta // datetime.timedelta(milliseconds=1)


def strptime_ms(text: str, fmt: str, reason: str) -> int:
    """Epoch ms of `text` read with a strptime format as UTC, or `RowRejected(reason)`."""
    try:
        moment = datetime.datetime.strptime(text.strip(), fmt)
    except ValueError:
        raise RowRejected(reason) from None
    return epoch_ms(moment)


def pick(fields: Sequence[str], indexes: Mapping[str, int], column: str) -> str:
    """The stripped text of a source column in one record."""
    return fields[indexes[column]].strip()


def prefixed(prefix: str, value: str) -> str:
    """`prefix + value`, except that an empty value stays empty so the contract still sees it missing."""
    return prefix + value if value else ""
