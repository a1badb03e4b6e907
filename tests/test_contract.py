"""The contract module and the TFX schema say the same thing, and rows are validated and labelled by it."""
from __future__ import annotations

import math

import numpy as np
import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from schema import contract

GOOD = {
    contract.USER_ID: "u1",
    contract.TRACK_ID: "t1",
    contract.STATION_ID: "",
    contract.TIMESTAMP_MS: "1767225600000",
    contract.LISTEN_MS: "200000",
    contract.TRACK_MS: "210000",
    contract.FEEDBACK: "",
}


def load_schema() -> schema_pb2.Schema:
    return text_format.Parse(contract.SCHEMA_PATH.read_text(), schema_pb2.Schema())


def test_schema_features_match_contract_columns_and_types():
    features = {feature.name: feature for feature in load_schema().feature}
    assert tuple(features) == contract.COLUMNS
    for name in contract.INT_COLUMNS:
        assert features[name].type == schema_pb2.INT
    for name in contract.STRING_COLUMNS:
        assert features[name].type == schema_pb2.BYTES
    for name, feature in features.items():
        required = name in contract.REQUIRED_COLUMNS
        assert (feature.presence.min_fraction == 1.0) is required, name


def test_schema_domains_match_contract_bounds():
    features = {feature.name: feature for feature in load_schema().feature}
    assert tuple(features[contract.FEEDBACK].string_domain.value) == contract.FEEDBACK_VALUES
    timestamp = features[contract.TIMESTAMP_MS].int_domain
    assert (timestamp.min, timestamp.max + 1) == (contract.MIN_TIMESTAMP_MS, contract.MAX_TIMESTAMP_MS)
    for name in (contract.LISTEN_MS, contract.TRACK_MS):
        assert features[name].int_domain.max == contract.MAX_DURATION_MS
        assert features[name].int_domain.min >= 0


def test_valid_row_becomes_canonical():
    result = contract.validate_row({**GOOD, contract.USER_ID: b" u1 ", contract.LISTEN_MS: "12.0"})
    assert result.ok and result.reason is None
    assert result.row == {
        contract.USER_ID: "u1",
        contract.TRACK_ID: "t1",
        contract.STATION_ID: "",
        contract.TIMESTAMP_MS: 1_767_225_600_000,
        contract.LISTEN_MS: 12,
        contract.TRACK_MS: 210_000,
        contract.FEEDBACK: "",
        contract.ARTIST_ID: "",
    }


def test_optional_values_may_be_missing():
    result = contract.validate_row({**GOOD, contract.LISTEN_MS: "", contract.TRACK_MS: None, contract.FEEDBACK: math.nan})
    assert result.ok
    assert result.row[contract.LISTEN_MS] is None and result.row[contract.TRACK_MS] is None


@pytest.mark.parametrize(
    "change, reason",
    [
        ({contract.USER_ID: ""}, contract.missing(contract.USER_ID)),
        ({contract.TRACK_ID: None}, contract.missing(contract.TRACK_ID)),
        ({contract.TIMESTAMP_MS: ""}, contract.missing(contract.TIMESTAMP_MS)),
        ({contract.TIMESTAMP_MS: "yesterday"}, contract.unparsable(contract.TIMESTAMP_MS)),
        ({contract.TIMESTAMP_MS: "1767225600"}, contract.TIMESTAMP_OUT_OF_RANGE),
        ({contract.LISTEN_MS: "12.5"}, contract.unparsable(contract.LISTEN_MS)),
        ({contract.LISTEN_MS: "-1"}, contract.negative(contract.LISTEN_MS)),
        ({contract.LISTEN_MS: str(contract.MAX_DURATION_MS + 1)}, contract.absurd(contract.LISTEN_MS)),
        ({contract.TRACK_MS: "0"}, contract.absurd(contract.TRACK_MS)),
        ({contract.TRACK_MS: "nan"}, contract.unparsable(contract.TRACK_MS)),
        ({contract.FEEDBACK: "meh"}, contract.UNKNOWN_FEEDBACK),
        ({contract.USER_ID: b"\xff\xfe"}, contract.INVALID_UTF8),
        ({contract.LISTEN_MS: True}, contract.unparsable(contract.LISTEN_MS)),
    ],
)
def test_bad_rows_are_quarantined_with_reason(change, reason):
    result = contract.validate_row({**GOOD, **change})
    assert not result.ok and result.row is None
    assert result.reason == reason


def test_labels_follow_design_rule():
    thresholds = contract.LabelThresholds(skip_ms=30_000, skip_fraction=0.25)
    feedback = np.array(["thumb_up", "thumb_down", "", "", "", "", "", "thumb_up"])
    listen = np.array([1_000, 300_000, 29_999, 30_000, 50_000, np.nan, 50_000, np.nan])
    track = np.array([200_000, 300_000, 200_000, 100_000, 240_000, 200_000, np.nan, np.nan])
    names = [contract.LABELS[i] for i in contract.label_ids(feedback, listen, track, thresholds)]
    assert names == [
        contract.LIKE,  # thumbs decide, however short the play
        contract.DISLIKE,  # thumbs decide, however long the play
        contract.SKIP,  # below skip_ms
        contract.LISTEN,  # exactly skip_ms is not below it
        contract.SKIP,  # 50 s of 240 s is below a quarter of the track
        contract.LISTEN,  # unknown listen time never makes a skip
        contract.LISTEN,  # 50 s with unknown duration: only the absolute rule applies
        contract.LIKE,
    ]


def test_label_of_row_agrees_with_array_rule():
    row = contract.validate_row({**GOOD, contract.LISTEN_MS: "10000"}).row
    assert contract.label_of(row) == contract.SKIP
    assert contract.label_of(row, contract.LabelThresholds(skip_ms=5_000, skip_fraction=0.0)) == contract.LISTEN


def test_thresholds_reject_nonsense():
    with pytest.raises(ValueError, match="skip_fraction"):
        contract.LabelThresholds(skip_fraction=1.5)
    with pytest.raises(ValueError, match="skip_ms"):
        contract.LabelThresholds(skip_ms=-1)


def test_label_ids_are_stable_positions():
    assert contract.LABELS == ("like", "listen", "skip", "dislike")
    assert [contract.LABEL_IDS[name] for name in contract.LABELS] == [0, 1, 2, 3]
