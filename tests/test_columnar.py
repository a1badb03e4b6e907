"""`schema.columnar.validate_batch` agrees with `contract.validate_row` row by row, over every quarantine reason."""
from __future__ import annotations

import random

import numpy as np
import pytest
import tensorflow as tf
from tfx_bsl.coders import example_coder

from components.feedback_labeler.executor import example_to_raw
from schema import columnar, contract

T0 = 1_767_225_600_000
GOOD = {contract.USER_ID: b"u1", contract.TRACK_ID: b"t1", contract.STATION_ID: b"s1", contract.TIMESTAMP_MS: T0,
        contract.LISTEN_MS: 40_000, contract.TRACK_MS: 200_000, contract.FEEDBACK: b"", contract.ARTIST_ID: b"a1"}
BAD_UTF8 = b"\xff\xfe"

# (changes to a good row, the reason validate_row gives). Text cells in int columns are what a loose CSV gives.
CASES = [
    ({contract.USER_ID: None}, contract.missing(contract.USER_ID)),
    ({contract.USER_ID: b"   "}, contract.missing(contract.USER_ID)),
    ({contract.USER_ID: BAD_UTF8}, contract.INVALID_UTF8),
    ({contract.TRACK_ID: None}, contract.missing(contract.TRACK_ID)),
    ({contract.TRACK_ID: b"\t\x1c"}, contract.missing(contract.TRACK_ID)),
    ({contract.TRACK_ID: BAD_UTF8}, contract.INVALID_UTF8),
    ({contract.TIMESTAMP_MS: None}, contract.missing(contract.TIMESTAMP_MS)),
    ({contract.TIMESTAMP_MS: 5}, contract.TIMESTAMP_OUT_OF_RANGE),
    ({contract.TIMESTAMP_MS: contract.MAX_TIMESTAMP_MS}, contract.TIMESTAMP_OUT_OF_RANGE),
    ({contract.LISTEN_MS: -1}, contract.negative(contract.LISTEN_MS)),
    ({contract.LISTEN_MS: contract.MAX_DURATION_MS + 1}, contract.absurd(contract.LISTEN_MS)),
    ({contract.TRACK_MS: -1}, contract.negative(contract.TRACK_MS)),
    ({contract.TRACK_MS: contract.MAX_DURATION_MS + 1}, contract.absurd(contract.TRACK_MS)),
    ({contract.TRACK_MS: 0}, contract.absurd(contract.TRACK_MS)),
    ({contract.FEEDBACK: b"meh"}, contract.UNKNOWN_FEEDBACK),
    ({contract.FEEDBACK: BAD_UTF8}, contract.INVALID_UTF8),
    ({contract.STATION_ID: BAD_UTF8}, contract.INVALID_UTF8),
    ({contract.ARTIST_ID: BAD_UTF8}, contract.INVALID_UTF8),
    ({contract.USER_ID: None, contract.TIMESTAMP_MS: 5}, contract.missing(contract.USER_ID)),  # first check wins
    ({contract.LISTEN_MS: -1, contract.FEEDBACK: b"meh"}, contract.negative(contract.LISTEN_MS)),
    ({contract.FEEDBACK: b" thumb_up "}, None),
    ({contract.STATION_ID: None, contract.ARTIST_ID: None, contract.LISTEN_MS: None, contract.TRACK_MS: None}, None),
    ({contract.USER_ID: "ünï ".encode()}, None),
]
TEXT_INT_CASES = [  # the same integer columns, as text
    ({contract.TIMESTAMP_MS: b"yesterday"}, contract.unparsable(contract.TIMESTAMP_MS)),
    ({contract.TIMESTAMP_MS: b"  "}, contract.missing(contract.TIMESTAMP_MS)),
    ({contract.TIMESTAMP_MS: b"1e30"}, contract.TIMESTAMP_OUT_OF_RANGE),
    ({contract.TIMESTAMP_MS: BAD_UTF8}, contract.INVALID_UTF8),
    ({contract.LISTEN_MS: b"12.5"}, contract.unparsable(contract.LISTEN_MS)),
    ({contract.LISTEN_MS: b"12.0"}, None),
    ({contract.TRACK_MS: b"nan"}, contract.unparsable(contract.TRACK_MS)),
    ({contract.TRACK_MS: b"-3"}, contract.negative(contract.TRACK_MS)),
]
EVERY_REASON = {
    *(contract.missing(c) for c in contract.REQUIRED_COLUMNS),
    *(contract.unparsable(c) for c in contract.INT_COLUMNS),
    *(contract.negative(c) for c in (contract.LISTEN_MS, contract.TRACK_MS)),
    *(contract.absurd(c) for c in (contract.LISTEN_MS, contract.TRACK_MS)),
    contract.UNKNOWN_FEEDBACK, contract.TIMESTAMP_OUT_OF_RANGE, contract.INVALID_UTF8,
}


def serialized(row: dict) -> bytes:
    features = {}
    for name, value in row.items():
        if value is None:
            continue
        if isinstance(value, int):
            features[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            features[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def assert_batch_agrees_with_rows(rows: list[dict]) -> list:
    """Decodes the rows as one batch (as the executor does) and compares every row with validate_row."""
    records = [serialized(row) for row in rows]
    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(records)
    checked = columnar.validate_batch(batch)
    expected = [contract.validate_row(example_to_raw(tf.train.Example.FromString(r))) for r in records]
    assert checked.reasons.tolist() == [e.reason or columnar.OK for e in expected]
    valid = [e.row for e in expected if e.ok]
    nan = float("nan")
    assert checked.user_id.tolist() == [r[contract.USER_ID] for r in valid]
    assert checked.track_id.tolist() == [r[contract.TRACK_ID] for r in valid]
    assert checked.station_id.tolist() == [r[contract.STATION_ID] for r in valid]
    assert checked.feedback.tolist() == [r[contract.FEEDBACK] for r in valid]
    assert checked.timestamp_ms.tolist() == [r[contract.TIMESTAMP_MS] for r in valid]
    for column, values in ((contract.LISTEN_MS, checked.listen_ms), (contract.TRACK_MS, checked.track_ms)):
        np.testing.assert_array_equal(values, [nan if r[column] is None else r[column] for r in valid])
    labels = checked.label_ids(contract.LabelThresholds())
    assert [contract.LABELS[i] for i in labels] == [contract.label_of(r) for r in valid]
    return [e.reason for e in expected]


def test_every_quarantine_reason_agrees_with_validate_row():
    typed = assert_batch_agrees_with_rows([{**GOOD, **change} for change, _ in CASES])
    text = {name: str(GOOD[name]).encode() for name in contract.INT_COLUMNS}
    as_text = assert_batch_agrees_with_rows([{**GOOD, **text, **change} for change, _ in TEXT_INT_CASES])
    assert typed == [reason for _, reason in CASES]
    assert as_text == [reason for _, reason in TEXT_INT_CASES]
    assert EVERY_REASON <= set(typed + as_text)


def test_random_rows_agree_with_validate_row():
    rng = random.Random(7)
    choices = {
        contract.USER_ID: [None, b"", b" u1", b"u2", BAD_UTF8, "é".encode()],
        contract.TRACK_ID: [None, b"t1", b"t2 ", b"\x0b"],
        contract.STATION_ID: [None, b"", b"s1", b"s2"],
        contract.TIMESTAMP_MS: [None, T0, T0 + 1, 0, contract.MAX_TIMESTAMP_MS - 1],
        contract.LISTEN_MS: [None, 0, 29_999, 30_000, 49_999, -2, contract.MAX_DURATION_MS],
        contract.TRACK_MS: [None, 0, 1, 200_000, contract.MAX_DURATION_MS + 5],
        contract.FEEDBACK: [None, b"", b"thumb_up", b"thumb_down", b"x"],
        contract.ARTIST_ID: [None, b"a"],
        "extra_column": [None, b"z"],
    }
    rows = [{name: rng.choice(values) for name, values in choices.items()} for _ in range(2000)]
    reasons = assert_batch_agrees_with_rows(rows)
    assert None in reasons and len(set(reasons)) > 8


@pytest.mark.parametrize("present", [False, True])
def test_a_column_absent_from_the_whole_batch_reads_as_missing(present):
    row = {**GOOD, contract.FEEDBACK: None, contract.STATION_ID: None}
    rows = [row, {**row, contract.STATION_ID: b"s"}] if present else [row, row]
    assert_batch_agrees_with_rows(rows)
