"""Tests of `listening_logs.convert` and its adapters on real Piki rows, a hand-written MSSD log and small fixtures.

Every input lives under tests/fixtures/ (see the README or PROVENANCE.md in each folder).
"""
from __future__ import annotations

import csv
import json
import pathlib
import subprocess
import sys
from typing import Any

import pandas as pd
import pytest

from listening_logs import convert
from schema import contract, span_folders

REPO = pathlib.Path(__file__).resolve().parents[1]
ALL_FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
MSSD_SAMPLE = ALL_FIXTURES / "mssd" / "sessions.csv"
"""Invented MSSD-format log (the real sample's licence is unclear): 48 rows, 5 sessions, 2 days, see its README."""
PIKI_SAMPLE = ALL_FIXTURES / "piki" / "piki_head500.csv"
TOYPIKI_SAMPLE = ALL_FIXTURES / "piki" / "toypiki_dataset.csv"
FIXTURES = ALL_FIXTURES / "convert"
MAPPED_PLAYS = FIXTURES / "mapped_plays.tsv"
MAPPED_BAD_ROWS = FIXTURES / "mapped_bad_rows.tsv"
MAPPING = FIXTURES / "mapped_plays.yaml"

MS_2018_07_15_16H = 1_531_670_400_000  # 2018-07-15T16:00:00Z


# --- Helpers --------------------------------------------------------------------------------------------
def run(tmp_path: pathlib.Path, fmt: str, input_path: pathlib.Path, *extra: str) -> tuple[int, pathlib.Path]:
    """Runs the converter in-process into tmp_path/out; returns (exit status, out dir)."""
    out = tmp_path / "out"
    status = convert.main(["--format", fmt, "--input", str(input_path), "--out", str(out), *extra])
    return status, out


def events(out: pathlib.Path) -> pd.DataFrame:
    """All written plays, every cell as text (as ExampleGen would see the CSV)."""
    paths = sorted(out.glob(f"{span_folders.GLOB}/events.csv"))
    assert paths, f"no spans under {out}"
    frames = [pd.read_csv(path, dtype=str, keep_default_na=False) for path in paths]
    for frame in frames:
        assert tuple(frame.columns) == contract.COLUMNS
    return pd.concat(frames, ignore_index=True)


def summary(out: pathlib.Path) -> dict[str, Any]:
    document = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert document["rows_read"] == document["rows_written"] + sum(document["quarantined"].values())
    return document


def quarantined(out: pathlib.Path) -> list[dict[str, str]]:
    with (out / "quarantine" / "rejected.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def reasons_by_line(out: pathlib.Path) -> dict[int, str]:
    return {int(row["line"]): row["reason"] for row in quarantined(out)}


def sample_rows(path: pathlib.Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def write_lines(path: pathlib.Path, lines: list[bytes]) -> pathlib.Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def first_lines(path: pathlib.Path, count: int) -> list[bytes]:
    return path.read_bytes().splitlines()[:count]


# --- MSSD -----------------------------------------------------------------------------------------------
def test_mssd_sample_converts_with_skip_2_as_the_skip(tmp_path: pathlib.Path) -> None:
    status, out = run(tmp_path, "mssd", MSSD_SAMPLE)
    assert status == 0
    document = summary(out)
    assert (document["rows_read"], document["rows_written"], document["quarantined"]) == (48, 48, {})
    plays = events(out)
    # skip_2 True: session a 4 + b 3 + c 3 + d 4 + e 0 = 14 (tests/fixtures/mssd/README.md).
    skip_2_true = sum(row["skip_2"] == "True" for row in sample_rows(MSSD_SAMPLE))
    assert skip_2_true == 14
    assert (plays[contract.LISTEN_MS] == "0").sum() == skip_2_true
    assert set(plays[contract.LISTEN_MS]) == {"0", ""}
    labels = [contract.label_of(contract.validate_row(row).row) for row in plays.to_dict("records")]
    assert labels.count(contract.SKIP) == 14 and labels.count(contract.LISTEN) == 48 - 14
    assert plays[contract.USER_ID].nunique() == 5
    assert (plays[contract.USER_ID] == plays[contract.STATION_ID]).all()
    assert (plays[contract.FEEDBACK] == contract.NO_FEEDBACK).all()


def test_mssd_only_skip_2_decides_the_skip(tmp_path: pathlib.Path) -> None:
    """skip_3-only rows (session e, positions 3 and 8) are LISTEN; skip_1 rows are SKIP through skip_2."""
    status, out = run(tmp_path, "mssd", MSSD_SAMPLE)
    assert status == 0
    plays = events(out)
    listened = dict(zip(plays[contract.TRACK_ID], plays[contract.LISTEN_MS]))  # these four tracks occur once
    assert listened["t_fixture-e03"] == listened["t_fixture-e08"] == ""  # skip_3 only
    assert listened["t_fixture-a03"] == listened["t_fixture-c02"] == "0"  # skip_1 (and so skip_2)


def test_mssd_timestamps_keep_session_order(tmp_path: pathlib.Path) -> None:
    status, out = run(tmp_path, "mssd", MSSD_SAMPLE)
    assert status == 0
    plays = events(out).assign(ts=lambda frame: frame[contract.TIMESTAMP_MS].astype(int))
    source = pd.DataFrame(sample_rows(MSSD_SAMPLE)).assign(pos=lambda frame: frame["session_position"].astype(int))
    for session, group in source.groupby("session_id"):
        expected = list(group.sort_values("pos")["track_id_clean"])
        played = plays[plays[contract.USER_ID] == session].sort_values("ts")
        assert list(played[contract.TRACK_ID]) == expected, session
        assert played["ts"].is_unique


def test_mssd_timestamp_is_midnight_plus_hour_plus_position(tmp_path: pathlib.Path) -> None:
    """First fixture row: 15-07-18, hour 16, position 1 -> 2018-07-15T16:00:01Z; the other spelling and midnight."""
    status, out = run(tmp_path, "mssd", MSSD_SAMPLE)
    assert status == 0
    plays = events(out)
    stamps = dict(zip(plays[contract.TRACK_ID], plays[contract.TIMESTAMP_MS].astype(int)))
    hour_ms = 3_600_000
    assert stamps["t_fixture-a01"] == MS_2018_07_15_16H + 1000
    assert stamps["t_fixture-b01"] == MS_2018_07_15_16H - 7 * hour_ms + 1000  # 2018-07-15, hour 9, position 1
    assert stamps["t_fixture-c04"] == MS_2018_07_15_16H - 17 * hour_ms + 4000  # 14-07-18, hour 23, position 4
    assert stamps["t_fixture-c05"] == MS_2018_07_15_16H - 16 * hour_ms + 5000  # 15-07-18, hour 0, position 5


def test_mssd_sessions_across_two_days_make_two_spans(tmp_path: pathlib.Path) -> None:
    status, out = run(tmp_path, "mssd", MSSD_SAMPLE)
    assert status == 0
    # 2018-07-14: session c positions 1-4, d 10, e 8 = 22; 2018-07-15: a 12, b 10, c positions 5-8 = 26.
    assert summary(out)["spans"] == {span_folders.folder_name(1): 22, span_folders.folder_name(2): 26}


def test_mssd_bad_rows_are_quarantined_and_good_rows_kept(tmp_path: pathlib.Path) -> None:
    status, out = run(tmp_path, "mssd", FIXTURES / "mssd_bad_rows.csv")
    assert status == 0
    assert reasons_by_line(out) == {
        4: "unparsable_date",
        5: "unparsable_skip_2",
        6: "unparsable_hour_of_day",
        7: "unparsable_session_position",
    }
    plays = events(out).sort_values(contract.TIMESTAMP_MS)
    assert list(plays[contract.TIMESTAMP_MS].astype(int)) == [
        MS_2018_07_15_16H + 1000,  # 15-07-18
        MS_2018_07_15_16H + 2000,  # 2018-07-15: the documented spelling means the same day
        MS_2018_07_15_16H + 7000,
    ]
    assert list(plays[contract.LISTEN_MS]) == ["", "", "0"]


# --- Piki -----------------------------------------------------------------------------------------------
def test_piki_sample_converts_with_likes_and_dislikes(tmp_path: pathlib.Path) -> None:
    status, out = run(tmp_path, "piki", PIKI_SAMPLE)
    assert status == 0
    document = summary(out)
    assert (document["rows_read"], document["rows_written"], document["quarantined"]) == (500, 500, {})
    assert len(document["spans"]) == 6  # 2019-06-21 .. 2019-06-26
    plays = events(out)
    assert plays[contract.FEEDBACK].value_counts().to_dict() == {contract.THUMB_DOWN: 282, contract.THUMB_UP: 218}
    assert plays[contract.USER_ID].nunique() == 47
    assert plays[contract.USER_ID].str.fullmatch(r"u[0-9]+").all()
    assert plays[contract.TRACK_ID].str.fullmatch(r"s[0-9]+").all()
    assert (plays[contract.STATION_ID] == "").all() and (plays[contract.LISTEN_MS] == "").all()


def test_piki_timestamp_is_utc(tmp_path: pathlib.Path) -> None:
    status, out = run(tmp_path, "piki", PIKI_SAMPLE)
    assert status == 0
    plays = events(out)
    first = plays[(plays[contract.USER_ID] == "u3720277") & (plays[contract.TRACK_ID] == "s32192")]
    assert list(first[contract.TIMESTAMP_MS]) == ["1561079063000"]  # 2019-06-21T01:04:23Z


def test_toypiki_superlike_is_a_thumb_up(tmp_path: pathlib.Path) -> None:
    """The toy file orders columns differently and spells Spotify_popularity; the superlike (2) is a like."""
    status, out = run(tmp_path, "piki", TOYPIKI_SAMPLE)
    assert status == 0
    assert summary(out)["rows_written"] == 26
    plays = events(out)
    superlike = plays[(plays[contract.USER_ID] == "u3736036") & (plays[contract.TRACK_ID] == "s5254762")]
    assert list(superlike[contract.FEEDBACK]) == [contract.THUMB_UP]
    assert plays[contract.FEEDBACK].value_counts().to_dict() == {contract.THUMB_DOWN: 15, contract.THUMB_UP: 11}


def test_piki_bad_rows_are_quarantined_and_good_rows_kept(tmp_path: pathlib.Path) -> None:
    status, out = run(tmp_path, "piki", FIXTURES / "piki_bad_rows.csv")
    assert status == 0
    assert reasons_by_line(out) == {
        3: contract.UNKNOWN_FEEDBACK,
        4: contract.UNKNOWN_FEEDBACK,
        5: contract.unparsable(contract.TIMESTAMP_MS),
        6: contract.missing(contract.USER_ID),
        8: contract.WRONG_FIELD_COUNT,
    }
    plays = events(out).sort_values(contract.TIMESTAMP_MS)
    assert list(plays[contract.FEEDBACK]) == [contract.THUMB_DOWN, contract.THUMB_UP]


# --- Mapped ---------------------------------------------------------------------------------------------
def test_mapped_detects_iso_seconds_and_ms_timestamps(tmp_path: pathlib.Path) -> None:
    status, out = run(tmp_path, "mapped", MAPPED_PLAYS, "--mapping", str(MAPPING))
    assert status == 0
    plays = events(out)
    stamps = dict(zip(plays[contract.TRACK_ID], plays[contract.TIMESTAMP_MS].astype(int)))
    assert stamps == {
        "v1": MS_2018_07_15_16H,  # 2018-07-15T16:00:00Z
        "v2": MS_2018_07_15_16H + 1000,  # 1531670401 (seconds)
        "v3": MS_2018_07_15_16H + 2250,  # 1531670402.25 (fractional seconds)
        "v4": MS_2018_07_15_16H + 3000,  # 1531670403000 (ms)
        "v5": MS_2018_07_15_16H + 4000,  # 2018-07-15T18:00:04+02:00
        "v6": MS_2018_07_15_16H + 5000,  # 2018-07-15 16:00:05 (no offset: UTC)
    }


def test_mapped_columns_and_feedback(tmp_path: pathlib.Path) -> None:
    status, out = run(tmp_path, "mapped", MAPPED_PLAYS, "--mapping", str(MAPPING))
    assert status == 0
    assert summary(out)["rows_written"] == 6
    plays = events(out).set_index(contract.TRACK_ID)
    assert plays.loc["v1", contract.FEEDBACK] == contract.THUMB_UP
    assert plays.loc["v3", contract.FEEDBACK] == contract.THUMB_DOWN
    assert plays.loc["v2", contract.FEEDBACK] == contract.NO_FEEDBACK
    assert tuple(plays.loc["v1", [contract.LISTEN_MS, contract.TRACK_MS]]) == ("200000", "210000")
    assert tuple(plays.loc["v5", [contract.USER_ID, contract.STATION_ID, contract.ARTIST_ID]]) == ("bob", "c2", "a5")


def test_mapped_bad_rows_are_quarantined_and_good_rows_kept(tmp_path: pathlib.Path) -> None:
    status, out = run(tmp_path, "mapped", MAPPED_BAD_ROWS, "--mapping", str(MAPPING))
    assert status == 0
    assert reasons_by_line(out) == {
        3: contract.unparsable(contract.LISTEN_MS),
        4: contract.negative(contract.LISTEN_MS),
        5: contract.negative(contract.TRACK_MS),
        6: contract.UNKNOWN_FEEDBACK,
        7: contract.unparsable(contract.TIMESTAMP_MS),
        8: contract.WRONG_FIELD_COUNT,
    }
    assert sorted(events(out)[contract.TRACK_ID]) == ["w1", "w8"]
    document = summary(out)
    assert (document["rows_read"], document["rows_written"]) == (8, 2)


def test_mapped_honours_timestamp_format(tmp_path: pathlib.Path) -> None:
    log = write_lines(tmp_path / "log.csv", [b"who,what,when", b"ann,t1,15/07/2018 16:00", b"ann,t2,2018-07-15"])
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        'timestamp_format: "%d/%m/%Y %H:%M"\ncolumns:\n  user_id: who\n  track_id: what\n  timestamp_ms: when\n'
    )
    status, out = run(tmp_path, "mapped", log, "--mapping", str(mapping))
    assert status == 0
    assert list(events(out)[contract.TIMESTAMP_MS]) == [str(MS_2018_07_15_16H)]
    assert reasons_by_line(out) == {3: contract.unparsable(contract.TIMESTAMP_MS)}


COLUMNS_YAML = "columns:\n  user_id: user_id\n  track_id: video_id\n  timestamp_ms: time_ms\n"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (COLUMNS_YAML + "separator: ','\n", "unknown key(s) separator"),
        ("columns:\n  user_id: user_id\n  track_id: video_id\n", "required contract column(s) timestamp_ms"),
        (COLUMNS_YAML + "  genre: label\n", "unknown key(s) genre in columns"),
        (COLUMNS_YAML + "  feedback: label\n", "`feedback:` section"),
        ("delimiter: \\t\n" + COLUMNS_YAML, "one character"),
        (COLUMNS_YAML + "feedback:\n  column: label\n  thumb_up: ['1']\n  thumb_down: ['1']\n", "both"),
        (COLUMNS_YAML + "feedback:\n  thumb_up: ['1']\n", "must name its source `column`"),
        ("columns: [user_id\n", "not valid YAML"),
        ("- user_id\n", "YAML mapping"),
    ],
)
def test_mapping_errors_exit_2_naming_the_problem(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], text: str, problem: str
) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(text)
    status, out = run(tmp_path, "mapped", MAPPED_PLAYS, "--mapping", str(mapping))
    assert status == 2
    assert problem in capsys.readouterr().err
    assert not out.exists()


def test_mapped_column_the_file_lacks_exits_2(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING.read_text().replace("column: label", "column: rating"))
    status, _ = run(tmp_path, "mapped", MAPPED_PLAYS, "--mapping", str(mapping))
    assert status == 2
    assert "rating" in capsys.readouterr().err


def test_mapped_needs_a_readable_mapping(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "mapped", MAPPED_PLAYS)[0] == 2
    assert "--mapping" in capsys.readouterr().err
    assert run(tmp_path, "mapped", MAPPED_PLAYS, "--mapping", str(tmp_path / "absent.yaml"))[0] == 2
    assert "absent.yaml" in capsys.readouterr().err


def test_mapping_is_refused_for_other_formats(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "piki", PIKI_SAMPLE, "--mapping", str(MAPPING))[0] == 2
    assert "--mapping only applies" in capsys.readouterr().err


# --- Bad input ------------------------------------------------------------------------------------------
def test_missing_columns_exit_2_naming_them(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.read_csv(MSSD_SAMPLE, dtype=str, nrows=5).drop(columns=["skip_2", "date"])
    log = tmp_path / "log.csv"
    frame.to_csv(log, index=False)
    status, out = run(tmp_path, "mssd", log)
    assert status == 2
    err = capsys.readouterr().err
    assert "skip_2" in err and "date" in err.split(";")[0]
    assert not out.exists()


def test_invalid_utf8_line_is_quarantined_and_the_rest_converted(tmp_path: pathlib.Path) -> None:
    lines = first_lines(PIKI_SAMPLE, 5)
    lines[2] = lines[2].replace(b"3720277", b"37\xff20277")
    log = write_lines(tmp_path / "log.csv", lines)
    status, out = run(tmp_path, "piki", log)
    assert status == 0
    assert reasons_by_line(out) == {3: contract.INVALID_UTF8}
    assert "37\\xff20277" in quarantined(out)[0]["raw"]  # the bad bytes are kept, escaped
    assert summary(out)["rows_written"] == 3


def test_wrong_field_count_is_quarantined(tmp_path: pathlib.Path) -> None:
    lines = first_lines(PIKI_SAMPLE, 4)
    lines[1] += b",extra"
    log = write_lines(tmp_path / "log.csv", lines)
    status, out = run(tmp_path, "piki", log)
    assert status == 0
    assert reasons_by_line(out) == {2: contract.WRONG_FIELD_COUNT}
    assert quarantined(out)[0]["raw"] == lines[1].decode()
    assert summary(out)["rows_written"] == 2


def test_unknown_piki_rating_is_unknown_feedback(tmp_path: pathlib.Path) -> None:
    lines = first_lines(PIKI_SAMPLE, 3)
    lines[1] = lines[1].replace(b"0,0,1,", b"0,-1,1,", 1)
    log = write_lines(tmp_path / "log.csv", lines)
    status, out = run(tmp_path, "piki", log)
    assert status == 0
    assert reasons_by_line(out) == {2: contract.UNKNOWN_FEEDBACK}


def test_empty_file_exits_2(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "empty.csv"
    log.write_bytes(b"\n  \n")
    status, out = run(tmp_path, "piki", log)
    assert status == 2
    assert "empty" in capsys.readouterr().err
    assert not out.exists()


def test_header_only_exits_1_with_a_summary(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write_lines(tmp_path / "log.csv", first_lines(PIKI_SAMPLE, 1))
    status, out = run(tmp_path, "piki", log)
    assert status == 1
    assert "no data rows" in capsys.readouterr().err
    document = summary(out)
    assert (document["rows_read"], document["rows_written"], document["quarantined"]) == (0, 0, {})
    assert not span_folders.numbers(out)


def test_all_rows_quarantined_exits_1(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = first_lines(PIKI_SAMPLE, 3)
    lines[1:] = [line.replace(b"2019-06-21", b"21/06/2019") for line in lines[1:]]
    log = write_lines(tmp_path / "log.csv", lines)
    status, out = run(tmp_path, "piki", log)
    assert status == 1
    assert "quarantined" in capsys.readouterr().err
    assert summary(out)["quarantined"] == {contract.unparsable(contract.TIMESTAMP_MS): 2}
    assert not span_folders.numbers(out)


def test_wrong_delimiter_suggests_the_right_one(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [line.replace(b",", b";") for line in first_lines(PIKI_SAMPLE, 3)]
    status, _ = run(tmp_path, "piki", write_lines(tmp_path / "log.csv", lines))
    assert status == 2
    assert 'semicolon (";")' in capsys.readouterr().err


def test_wrong_delimiter_in_mapping_suggests_tab(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING.read_text().replace('delimiter: "\\t"', 'delimiter: ","'))
    status, _ = run(tmp_path, "mapped", MAPPED_PLAYS, "--mapping", str(mapping))
    assert status == 2
    assert 'delimiter: "\\t"' in capsys.readouterr().err


def test_blank_lines_are_counted_not_quarantined(tmp_path: pathlib.Path) -> None:
    lines = first_lines(PIKI_SAMPLE, 3)
    log = write_lines(tmp_path / "log.csv", [lines[0], b"", lines[1], b"\r", lines[2]])
    status, out = run(tmp_path, "piki", log)
    assert status == 0
    document = summary(out)
    assert (document["rows_read"], document["blank_lines"]) == (2, 2)


def test_byte_order_mark_before_the_header_is_ignored(tmp_path: pathlib.Path) -> None:
    """Spreadsheet exports often start with a UTF-8 BOM; it must not hide the first column's name."""
    lines = first_lines(TOYPIKI_SAMPLE, 3)
    log = write_lines(tmp_path / "log.csv", [b"\xef\xbb\xbf" + lines[0], *lines[1:]])
    status, out = run(tmp_path, "piki", log)
    assert status == 0
    assert summary(out)["rows_written"] == 2


def test_missing_input_and_bad_flags_exit_2(tmp_path: pathlib.Path) -> None:
    assert run(tmp_path, "piki", tmp_path / "absent.csv")[0] == 2
    assert run(tmp_path, "spotify", PIKI_SAMPLE)[0] == 2
    assert convert.main(["--format", "piki"]) == 2


# --- Output directory and summary -----------------------------------------------------------------------
def test_summary_starts_with_the_three_counts(tmp_path: pathlib.Path) -> None:
    status, out = run(tmp_path, "piki", FIXTURES / "piki_bad_rows.csv")
    assert status == 0
    document = summary(out)
    assert list(document)[:3] == ["rows_read", "rows_written", "quarantined"]
    assert document["quarantined"] == {
        contract.missing(contract.USER_ID): 1,
        contract.UNKNOWN_FEEDBACK: 2,
        contract.unparsable(contract.TIMESTAMP_MS): 1,
        contract.WRONG_FIELD_COUNT: 1,
    }


def test_refuses_a_non_empty_out_without_overwrite(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    keep = tmp_path / "out" / "notes.txt"
    keep.parent.mkdir()
    keep.write_text("mine")
    assert run(tmp_path, "piki", PIKI_SAMPLE)[0] == 2
    assert "--overwrite" in capsys.readouterr().err
    assert run(tmp_path, "piki", PIKI_SAMPLE, "--overwrite")[0] == 2  # not an earlier conversion: kept
    assert keep.read_text() == "mine"


def test_overwrite_replaces_an_earlier_conversion(tmp_path: pathlib.Path) -> None:
    assert run(tmp_path, "piki", PIKI_SAMPLE)[0] == 0  # six spans
    status, out = run(tmp_path, "mssd", MSSD_SAMPLE, "--overwrite")
    assert status == 0
    assert span_folders.numbers(out) == [1, 2]
    assert len(events(out)) == 48


# --- As a program ---------------------------------------------------------------------------------------
def test_runs_as_a_module(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out"
    args = ["--format", "mssd", "--input", str(MSSD_SAMPLE), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "listening_logs.convert", *args], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 48 rows in 2 span(s)" in done.stderr
    assert summary(out)["rows_written"] == 48


def test_help_explains_each_format() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "listening_logs.convert", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0
    for text in ("mssd ", "piki ", "mapped ", "skip_2", "thumb_up:", "exit status"):
        assert text in done.stdout
