"""listening_logs.profile on a small hand-made log whose every number was worked out by hand (comments below)."""
from __future__ import annotations

import csv
import dataclasses
import json
import pathlib

import pandas as pd
import pytest

from components.feedback_labeler.sequences import LabelingParams
from listening_logs import profile, spans
from schema import contract, span_folders

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MINUTE = 60_000
PARAMS = LabelingParams(skip_ms=30_000, skip_fraction=0.25, positive_policy="like", input_policy="all",
                        negative_policy="dislikes+skips", max_history=20, max_hard_negatives=5,
                        hard_negative_window_ms=3_600_000, eval_cutoff="0.7", test_cutoff="0.85",
                        max_events_per_user=5000)
"""The pipeline's labelling defaults, spelled out so the hand computations below do not depend on them."""


def play(user: str, track: str, minute: int, station: str = "", listen: object = 200_000,
         length: object = 200_000, feedback: str = "") -> dict[str, object]:
    return {contract.USER_ID: user, contract.TRACK_ID: track, contract.STATION_ID: station,
            contract.TIMESTAMP_MS: T0 + minute * MINUTE, contract.LISTEN_MS: listen, contract.TRACK_MS: length,
            contract.FEEDBACK: feedback, contract.ARTIST_ID: ""}


# Tracks: h (hit), m (mid), x, y, z. Play counts: h 4, m 4, x 2, y 2, z 1 (13 valid plays, 5 tracks).
ROWS: list[dict[str, object]] = [
    # u1 on station s1: like h, dislike x, skip m (5 s), listen h, skip y (40 s < 25% of 200 s: relative rule).
    play("u1", "h", 0, "s1", feedback=contract.THUMB_UP),
    play("u1", "x", 1, "s1", listen=8_000, feedback=contract.THUMB_DOWN),
    play("u1", "m", 2, "s1", listen=5_000),
    play("u1", "h", 3, "s1"),
    play("u1", "y", 4, "s1", listen=40_000),
    # u2, no station: like m, dislike h, listen h with unknown durations (never a skip), skip y (2 s).
    play("u2", "m", 10, feedback=contract.THUMB_UP),
    play("u2", "h", 11, listen=9_000, feedback=contract.THUMB_DOWN),
    play("u2", "h", 12, listen="", length=""),
    play("u2", "y", 13, listen=2_000),
    # u3 never uses thumbs: listen x, skip z (1 s), listen m, and listen m again a day later.
    play("u3", "x", 20, "s3"),
    play("u3", "z", 21, "s3", listen=1_000),
    play("u3", "m", 22, "s3"),
    play("u3", "m", 1_440, "s3"),
    # Three rows that break the contract.
    play("", "h", 5),
    {**play("u1", "h", 6), contract.TIMESTAMP_MS: "abc"},
    play("u2", "m", 7, feedback="meh"),
]
# Labels: like 2 (u1 h, u2 m), dislike 2 (u1 x, u2 h), skip 4 (u1 m, u1 y, u2 y, u3 z), listen 5.
#
# Popularity percentiles, 100 x (tracks played less + half of those played as often, itself included) / 5:
#   z (1 play): (0 + 0.5) / 5 = 10;  x, y (2): (1 + 1) / 5 = 40;  h, m (4): (3 + 1) / 5 = 80.
#
# Time split: the range is minute 0 .. 1440, so eval starts at 0.7 x 1440 = 1008 and test at 1224: every play
# but u3's last is train. Hard negatives: dislikes and skips within an hour, same split, not the target track.
#   u1 like h (4 plays) vs x (2) win, m (4) tie, y (2) win = 2.5 of 3
#   u2 like m (4)       vs h (4) tie, y (2) win           = 1.5 of 2     -> 4.0 / 5 = 0.8


@pytest.fixture(scope="module")
def result() -> dict:
    return profile.profile_log(ROWS, PARAMS)


def test_counts_and_quarantine(result: dict) -> None:
    assert result["rows_read"] == 16
    assert result["plays"] == 13
    assert result["quarantined"] == {"missing_user_id": 1, "unknown_feedback": 1, "unparsable_timestamp_ms": 1}
    assert result["listeners"] == 3
    assert result["tracks"] == 5


def test_labels_come_from_the_contract(result: dict) -> None:
    assert result["labels"] == {"like": 2, "listen": 5, "skip": 4, "dislike": 2}
    assert result["label_shares"] == pytest.approx({"like": 2 / 13, "listen": 5 / 13, "skip": 4 / 13,
                                                    "dislike": 2 / 13}, abs=1e-6)


def test_per_listener_counts(result: dict) -> None:
    # Likes per listener [1, 1, 0] -> sorted [0, 1, 1]: linear quantiles at positions 0.2, 0.5, 1, 1.5, 1.8.
    assert result["per_listener"]["like"] == pytest.approx(
        {"mean": 2 / 3, "p10": 0.2, "p25": 0.5, "p50": 1.0, "p75": 1.0, "p90": 1.0, "max": 1.0}, abs=1e-6)
    assert result["per_listener"]["dislike"] == result["per_listener"]["like"]
    # Skips per listener [2, 1, 1] -> sorted [1, 1, 2].
    assert result["per_listener"]["skip"] == pytest.approx(
        {"mean": 4 / 3, "p10": 1.0, "p25": 1.0, "p50": 1.0, "p75": 1.5, "p90": 1.8, "max": 2.0}, abs=1e-6)


def test_popularity_of_each_label(result: dict) -> None:
    popularity = result["popularity_percentile"]
    assert popularity["like"] == {"plays": 2, "mean": 80.0, "median": 80.0}  # h, m
    assert popularity["dislike"] == {"plays": 2, "mean": 60.0, "median": 60.0}  # x 40, h 80
    assert popularity["skip"] == {"plays": 4, "mean": 42.5, "median": 40.0}  # m 80, y 40, y 40, z 10
    assert popularity["listen"] == {"plays": 5, "mean": 72.0, "median": 80.0}  # h, h, x, m, m


def test_most_popular_pairwise_accuracy_on_the_labellers_pairs(result: dict) -> None:
    most_popular = result["most_popular"]
    assert most_popular["pairs"] == 5
    assert most_popular["pairwise_accuracy"] == pytest.approx(0.8)
    assert most_popular["by_split"] == {"train": {"pairwise_accuracy": 0.8, "pairs": 5},
                                        "eval": {"pairwise_accuracy": None, "pairs": 0},
                                        "test": {"pairwise_accuracy": None, "pairs": 0}}
    variants = most_popular["variants"]
    # Dislikes only: u1 h vs x win, u2 m vs h tie. Skips only: u1 h vs m tie, vs y win; u2 m vs y win.
    assert variants["like_vs_dislikes"] == {"pairwise_accuracy": 0.75, "pairs": 2}
    assert variants["like_vs_skips"] == {"pairwise_accuracy": pytest.approx(2.5 / 3, abs=1e-6), "pairs": 3}
    # Like+listen targets vs skips: u1 h (like) and h (listen) each vs m tie, y win; u2 m (like) and h (listen)
    # each vs y win; u3 x and m vs z win (u3's last m is in test, z in train: no pair). 7 of 8.
    assert variants["like_listen_vs_skips"] == {"pairwise_accuracy": 0.875, "pairs": 8}


def test_thumbs_and_time(result: dict) -> None:
    assert result["listeners_without_thumbs_share"] == pytest.approx(1 / 3, abs=1e-6)  # u3
    time = result["time"]
    assert time["first_ms"] == T0 and time["last_ms"] == T0 + 1_440 * MINUTE
    assert time["span_days"] == 1.0
    assert time["calendar_days"] == 2 and time["days_with_plays"] == 2
    assert time["plays_per_day"] == 6.5  # 13 plays over 2 calendar days


def test_a_frame_gives_the_same_profile_as_rows(result: dict) -> None:
    frame = pd.DataFrame(ROWS).astype(str)  # text cells, as a CSV reader gives them
    assert profile.profile_log(frame, PARAMS) == result


def test_skip_threshold_comes_from_the_params() -> None:
    # With skip_ms 1 s and no relative rule no play is a skip: the shortest, u3's 1 000 ms, is not below it.
    lenient = dataclasses.replace(PARAMS, skip_ms=1_000, skip_fraction=0.0)
    labels = profile.profile_log(ROWS, lenient)["labels"]
    assert labels == {"like": 2, "listen": 9, "skip": 0, "dislike": 2}


def test_a_log_with_no_valid_row_is_refused_with_the_reasons() -> None:
    with pytest.raises(ValueError, match="none of the 2 rows passes the data contract.*missing_user_id"):
        profile.profile_log(ROWS[-3:-1], PARAMS)


def test_default_params_are_the_pipelines() -> None:
    from pipeline.configs import PipelineConfig

    defaults = dataclasses.asdict(PipelineConfig().labeling_params())
    assert profile.profile_log(ROWS[:5])["labeling"] == defaults


def write_log(root: pathlib.Path, rows: list[dict[str, object]]) -> pathlib.Path:
    """The rows as two CSV spans (minute < 1440 in span 1), bad rows included, the way a folder holds them."""
    for span, part in ((1, [r for r in rows if r is not ROWS[12]]), (2, [ROWS[12]])):
        path = span_folders.folder(root, span) / f"{spans.EVENTS_STEM}.csv"
        path.parent.mkdir(parents=True)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(contract.COLUMNS))
            writer.writeheader()
            writer.writerows(part)
    return root


def test_cli_json_on_a_log_folder(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture, result: dict) -> None:
    data = write_log(tmp_path / "log", ROWS)
    (data / profile.CONVERSION_SUMMARY).write_text(json.dumps({"quarantined": {"wrong_field_count": 2}}))
    assert profile.main(["--data", str(data), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["conversion_quarantined"] == {"wrong_field_count": 2}
    assert printed["data"] == str(data)
    # PARAMS are the pipeline's defaults, so the CLI's numbers are the hand-computed ones.
    for key in ("plays", "quarantined", "labels", "popularity_percentile", "per_listener", "time"):
        assert printed[key] == result[key], key
    assert printed["most_popular"]["pairwise_accuracy"] == 0.8


def test_cli_text_report(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    assert profile.main(["--data", str(write_log(tmp_path / "log", ROWS))]) == 0
    text = capsys.readouterr().out
    assert "plays 13  listeners 3  tracks 5" in text
    assert "most-popular pairwise accuracy (like vs dislikes+skips): 0.800 over 5 pairs" in text


def test_parquet_spans_are_read_too(tmp_path: pathlib.Path) -> None:
    valid = [checked.row for checked in map(contract.validate_row, ROWS) if checked.ok]  # None for unknown
    spans.write_spans(pd.DataFrame(valid), tmp_path, "parquet")
    assert len(profile.span_files(tmp_path)) == 2
    assert profile.profile_log(profile.read_log(tmp_path), PARAMS)["most_popular"]["pairwise_accuracy"] == 0.8


def test_cli_refuses_a_folder_without_spans(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        profile.main(["--data", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no span-N/events.csv or .parquet" in capsys.readouterr().err
