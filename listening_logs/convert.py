"""Converts a public listening log into the contract's daily spans, quarantining what does not fit.

    python -m listening_logs.convert --format mssd|piki|mapped --input FILE --out DIR [--mapping FILE.yaml]

Every data line of the input ends up in exactly one place: as a play in `DIR/span-N/events.csv` (one span
per UTC day, written by `listening_logs.spans.write_spans`) or as a row of
`DIR/quarantine/rejected.csv` with its line number, the reason and the original line. `DIR/summary.json`
counts both, so rows_read == rows_written + the sum of quarantined always holds. Blank lines carry no
data; they are counted in the summary as `blank_lines`, not as rows.

Exit status: 0 when at least one play was written; 1 when none was (every row quarantined, or a header
with no data rows: the input is well-formed but useless, and the summary and quarantine still say why);
2 when something must be fixed before converting (flags, mapping, an empty file with no header, a wrong
delimiter, missing columns, a non-empty --out), in which case nothing is written.
"""
from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import json
import pathlib
import shutil
import sys
from typing import Any, Optional, Sequence, TextIO

import pandas as pd

from listening_logs import spans
from listening_logs.adapters import FORMATS, make_adapter, reading
from schema import contract, span_folders

PROG = "python -m listening_logs.convert"
QUARANTINE_DIR = "quarantine"
QUARANTINE_FILE = "rejected.csv"
QUARANTINE_COLUMNS: tuple[str, ...] = ("line", "reason", "raw")
SUMMARY_FILE = "summary.json"

EXIT_WRITTEN = 0
EXIT_NOTHING_WRITTEN = 1
EXIT_USAGE = 2


# --- Command line ---------------------------------------------------------------------------------------
def formats_help() -> str:
    return """formats:
  mssd    Spotify Music Streaming Sessions Dataset log (comma-separated). session_id becomes user_id
          and station_id, track_id_clean becomes track_id. timestamp_ms = UTC midnight of `date`
          (yyyy-mm-dd or dd-mm-yy) + hour_of_day hours + session_position seconds, which keeps plays in
          session order. skip_2 True ("played briefly") becomes listen_ms 0, so the play is a SKIP;
          otherwise listen_ms is empty and the play is a LISTEN. No feedback, no durations.
  piki    Piki Music Dataset ratings (comma-separated, columns by name in any order). user_id and
          song_id become "u<user_id>" and "s<song_id>", timestamp 'YYYY-MM-DD HH:MM:SS' is UTC, liked 0
          is thumb_down, 1 and 2 (superlike) are thumb_up; other values are quarantined.
  mapped  Any delimited file, through --mapping FILE.yaml:
            delimiter: "\\t"          # one character, default ","
            timestamp_format: "..."  # optional strptime format (UTC)
            columns:                 # contract column: source column
              user_id: user_id       # required
              track_id: video_id     # required
              timestamp_ms: time_ms  # required; epoch s (< 1e11) or ms, or ISO-8601 text
              listen_ms: play_time_ms
              track_ms: duration_ms  # also station_id, artist_id
            feedback:                # optional
              column: label
              thumb_up: ["1"]
              thumb_down: ["0"]
          A feedback value not listed is quarantined; an empty cell means no feedback.

output in --out DIR:
  span-N/events.csv          plays in the contract, one span per UTC day
  quarantine/rejected.csv    line, reason, raw: every row that was not written, and why
  summary.json               {"rows_read": n, "rows_written": n, "quarantined": {reason: n}, ...}

exit status: 0 some plays written; 1 none written (all rows quarantined, or no data rows);
  2 fix the command, mapping or input first (nothing is written).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Convert a listening log (MSSD, Piki, or any delimited file through a YAML mapping)\n"
        "into the contract's daily spans, quarantining rows that do not fit.",
        epilog=formats_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--format", required=True, choices=FORMATS, help="the input's format (see below)")
    parser.add_argument("--input", required=True, type=pathlib.Path, metavar="FILE", help="the log to convert")
    parser.add_argument("--out", required=True, type=pathlib.Path, metavar="DIR", help="where to write")
    parser.add_argument(
        "--mapping", type=pathlib.Path, metavar="FILE.yaml", help="column mapping; required by --format mapped only"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the output of an earlier conversion in DIR (refused if DIR holds anything else)",
    )
    return parser


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


# --- Output directory -----------------------------------------------------------------------------------
def is_own_output(path: pathlib.Path) -> bool:
    """Whether a path in --out is something this tool writes (and so may replace)."""
    if path.is_dir():
        return path.name == QUARANTINE_DIR or span_folders.is_span_folder_name(path.name)
    return path.name == SUMMARY_FILE


def remove(path: pathlib.Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def prepare_out_dir(out: pathlib.Path, overwrite: bool) -> None:
    """Creates --out; an earlier conversion there is replaced only with --overwrite, anything else never.

    Replacing (not merging) matters: a stale span from an earlier run would otherwise join this one.
    """
    if out.exists() and not out.is_dir():
        raise reading.InputError(f"--out {out} is a file; give a directory")
    entries = sorted(out.iterdir()) if out.exists() else []
    if entries and not overwrite:
        raise reading.InputError(f"--out {out} is not empty; choose a new directory or pass --overwrite")
    foreign = [entry.name for entry in entries if not is_own_output(entry)]
    if foreign:
        raise reading.InputError(
            f"--out {out} holds files this tool did not write ({', '.join(foreign)}); "
            "--overwrite only replaces an earlier conversion, so choose another directory"
        )
    for entry in entries:
        remove(entry)
    out.mkdir(parents=True, exist_ok=True)


# --- Conversion -----------------------------------------------------------------------------------------
class Quarantine:
    """Writes rejected lines as they come (so a bad file costs no memory) and counts them by reason."""

    def __init__(self, handle: TextIO) -> None:
        self.writer = csv.writer(handle)
        self.writer.writerow(QUARANTINE_COLUMNS)
        self.counts: collections.Counter[str] = collections.Counter()

    def add(self, line_number: int, reason: str, raw: str) -> None:
        self.writer.writerow((line_number, reason, raw))
        self.counts[reason] += 1


@dataclasses.dataclass(frozen=True)
class Conversion:
    """What one pass over the input produced: the plays kept and the counts of what was not."""

    rows: list[contract.CanonicalRow]
    quarantined: dict[str, int]
    blank_lines: int

    @property
    def rows_read(self) -> int:
        return len(self.rows) + sum(self.quarantined.values())


def validate(converter: reading.Converter, fields: Sequence[str]) -> contract.Validation:
    """An adapter's row checked by the contract; the adapter's own rejection comes first."""
    try:
        candidate = converter(fields)
    except reading.RowRejected as rejected:
        return contract.Validation(None, rejected.reason)
    return contract.validate_row(candidate)


def convert_table(table: reading.Table, converter: reading.Converter, quarantine: Quarantine) -> Conversion:
    """Sends every data line of the table either to the returned rows or to the quarantine."""
    rows: list[contract.CanonicalRow] = []
    for line in table:
        if isinstance(line, reading.Rejected):
            quarantine.add(line.line_number, line.reason, line.raw)
            continue
        validation = validate(converter, line.fields)
        if validation.row is None:
            quarantine.add(line.line_number, str(validation.reason), line.raw)
            continue
        rows.append(validation.row)
    return Conversion(rows=rows, quarantined=dict(sorted(quarantine.counts.items())), blank_lines=table.blank_lines)


def write_events(rows: list[contract.CanonicalRow], out: pathlib.Path) -> dict[int, int]:
    """Writes the plays as daily spans; returns {span: rows}."""
    if not rows:
        return {}
    return spans.write_spans(pd.DataFrame.from_records(rows, columns=list(contract.COLUMNS)), out)


def summary(conversion: Conversion, written: dict[int, int], args: argparse.Namespace) -> dict[str, Any]:
    """The summary.json document: the three counts first, then context."""
    return {
        "rows_read": conversion.rows_read,
        "rows_written": sum(written.values()),
        "quarantined": conversion.quarantined,
        "spans": {span_folders.folder_name(span): count for span, count in sorted(written.items())},
        "blank_lines": conversion.blank_lines,
        "format": args.format,
        "input": str(args.input),
    }


def report(document: dict[str, Any], out: pathlib.Path, stream: TextIO) -> None:
    """A short human account of the run on stderr."""
    quarantined: dict[str, int] = document["quarantined"]
    print(f"read {document['rows_read']} rows from {document['input']} ({document['format']})", file=stream)
    print(f"wrote {document['rows_written']} rows in {len(document['spans'])} span(s) under {out}", file=stream)
    print(f"quarantined {sum(quarantined.values())} rows in {out / QUARANTINE_DIR / QUARANTINE_FILE}", file=stream)
    for reason, count in quarantined.items():
        print(f"  {reason}: {count}", file=stream)


def nothing_written_message(document: dict[str, Any], out: pathlib.Path) -> str:
    if document["rows_read"] == 0:
        return f"error: {document['input']} has a header but no data rows; nothing was written"
    return (
        f"error: all {document['rows_read']} rows were quarantined, so no plays were written; "
        f"see {out / QUARANTINE_DIR / QUARANTINE_FILE} for each line and its reason"
    )


def run(args: argparse.Namespace) -> int:
    """The conversion proper; raises `reading.InputError` for anything the user must fix first."""
    adapter = make_adapter(args.format, args.mapping)
    with reading.open_table(args.input, adapter.delimiter) as table:
        converter = adapter.bind(table.header)
        prepare_out_dir(args.out, args.overwrite)
        quarantine_path = args.out / QUARANTINE_DIR / QUARANTINE_FILE
        quarantine_path.parent.mkdir()
        with quarantine_path.open("w", encoding="utf-8", newline="") as handle:
            conversion = convert_table(table, converter, Quarantine(handle))
    written = write_events(conversion.rows, args.out)
    document = summary(conversion, written, args)
    (args.out / SUMMARY_FILE).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    report(document, args.out, sys.stderr)
    if not written:
        print(nothing_written_message(document, args.out), file=sys.stderr)
        return EXIT_NOTHING_WRITTEN
    return EXIT_WRITTEN


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status instead of exiting, so tests can call it."""
    try:
        args = parse_args(argv)
    except SystemExit as exit_request:  # argparse exits on --help (0) and bad flags (2): pass the status on
        return int(exit_request.code or 0)
    try:
        return run(args)
    except reading.InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
