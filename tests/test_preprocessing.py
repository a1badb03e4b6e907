"""preprocessing_fn on real tf.Transform and Beam, reading tf.Examples through TFXIO like the Transform component.

One module-scoped pipeline analyses ANALYSED, transforms it and UNSEEN, and writes both as transformed
tf.Examples, which the tests parse back with the transformed feature spec, as the Trainer will.
"""
from __future__ import annotations

import collections
import dataclasses
import pathlib
from typing import Iterable

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.public import tfxio

from models import features, preprocessing
from components.feedback_labeler.executor import to_tf_example
from components.feedback_labeler.sequences import TrainingExample
from schema import contract

T0 = 1_767_225_600_000
NEW_TRACK, UNSEEN_TRACK, NEW_STATION = "t_new", "t_unseen", "s_new"


@dataclasses.dataclass(frozen=True)
class Labelled:
    """One labelled example as FeedbackLabeler writes it (labeled_examples.pbtxt)."""

    user: str
    station: str
    target: str
    label: str
    timestamp_ms: int
    history: tuple[str, ...] = ()
    history_labels: tuple[str, ...] = ()
    hard_negatives: tuple[str, ...] = ()

    def tracks(self) -> list[str]:
        return [self.target, *self.history, *self.hard_negatives]

    def to_example(self) -> tf.train.Example:
        """Serialized exactly as FeedbackLabeler writes its examples."""
        return to_tf_example(
            TrainingExample(
                user_id=self.user, station_id=self.station, target_track_id=self.target, target_label=self.label,
                target_timestamp_ms=self.timestamp_ms, history_track_ids=list(self.history),
                history_labels=list(self.history_labels), hard_negative_track_ids=list(self.hard_negatives),
                split=contract.TRAIN,
            )
        )


LIKE, LISTEN, SKIP, DISLIKE = contract.LIKE, contract.LISTEN, contract.SKIP, contract.DISLIKE
ANALYSED = (
    Labelled("u1", "s1", "t1", LIKE, T0 + 1, ("t2", "t3"), (LISTEN, SKIP), ("t4",)),
    Labelled("u2", "", "t2", LISTEN, T0 + 2, ("t1", "t1", "t3"), (LIKE, LIKE, DISLIKE), ()),
    Labelled("u1", "s2", "t1", LIKE, T0 + 3, ("t2",), (LISTEN,), ("t4", "t5")),
    Labelled("u3", "s1", "t3", LIKE, T0 + 4, (), (), ("t1",)),
)
T1_OCCURRENCES = 5  # targets of u1 (twice), u2's history (twice), u3's hard negatives
UNSEEN = (
    Labelled("u9", NEW_STATION, NEW_TRACK, LISTEN, T0 + 11, ("t1", UNSEEN_TRACK), (LIKE, SKIP), (NEW_TRACK,)),
    Labelled("u1", "", "t2", LIKE, T0 + 12, ("t5",), (DISLIKE,), ()),
)
Rows = dict[int, dict[str, object]]


def write_examples(examples: Iterable[Labelled], path: pathlib.Path) -> tfxio.TFXIO:
    """Writes the examples and returns a TFXIO reading them with the labelled-example schema."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for example in examples:
            writer.write(example.to_example().SerializeToString())
    schema = text_format.Parse(contract.LABELED_SCHEMA_PATH.read_text(), schema_pb2.Schema())
    return tfxio.TFExampleRecord(file_pattern=str(path), schema=schema, telemetry_descriptors=["test"])


def read_transformed(path: pathlib.Path, tf_transform_output: tft.TFTransformOutput) -> Rows:
    """Transformed examples keyed by timestamp; lists as Python lists, scalars as Python values."""
    serialized = [record.numpy() for record in tf.data.TFRecordDataset(str(path))]
    parsed = tf.io.parse_example(serialized, tf_transform_output.transformed_feature_spec())
    columns = {
        key: tf.RaggedTensor.from_sparse(value).to_list()
        if isinstance(value, tf.SparseTensor)
        else value.numpy().tolist()
        for key, value in parsed.items()
    }
    rows = [dict(zip(columns, values)) for values in zip(*columns.values())]
    return {row[features.TARGET_TIMESTAMP_MS_XF]: row for row in rows}


@dataclasses.dataclass(frozen=True)
class Transformed:
    """What the Trainer will see: the transform output and the transformed examples, keyed by timestamp."""

    output: tft.TFTransformOutput
    analysed: Rows
    unseen: Rows

    def track_tokens(self) -> list[str]:
        return features.read_track_frequencies(self.output)[0]


@pytest.fixture(scope="module")
def transformed(tmp_path_factory: pytest.TempPathFactory) -> Transformed:
    """One pipeline for all tests: analysing is the slow part (~20 s)."""
    tmp = tmp_path_factory.mktemp("transform")
    analysed_source = write_examples(ANALYSED, tmp / "analysed.tfrecord")
    unseen_source = write_examples(UNSEEN, tmp / "unseen.tfrecord")
    with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=str(tmp / "tft_tmp")):
        raw = pipeline | "ReadAnalysed" >> analysed_source.BeamSource()
        (data, metadata), transform_fn = (
            raw,
            analysed_source.TensorAdapterConfig(),
        ) | tft_beam.AnalyzeAndTransformDataset(preprocessing.preprocessing_fn)
        unseen_raw = pipeline | "ReadUnseen" >> unseen_source.BeamSource()
        unseen_data, _ = (
            (unseen_raw, unseen_source.TensorAdapterConfig()),
            transform_fn,
        ) | tft_beam.TransformDataset()
        coder = tft.coders.ExampleProtoCoder(metadata.schema)
        for name, rows in (("analysed", data), ("unseen", unseen_data)):
            _ = (
                rows
                | f"Encode{name}" >> beam.Map(coder.encode)
                | f"Write{name}" >> beam.io.WriteToTFRecord(str(tmp / f"{name}_xf"), shard_name_template="")
            )
        _ = transform_fn | tft_beam.WriteTransformFn(str(tmp / "transform_fn"))
    output = tft.TFTransformOutput(str(tmp / "transform_fn"))
    return Transformed(
        output, read_transformed(tmp / "analysed_xf", output), read_transformed(tmp / "unseen_xf", output)
    )


def test_every_example_is_transformed_with_the_documented_keys(transformed):
    assert sorted(transformed.analysed) == [example.timestamp_ms for example in ANALYSED]
    assert sorted(transformed.unseen) == [example.timestamp_ms for example in UNSEEN]
    assert set(transformed.output.transformed_feature_spec()) == set(features.TRANSFORMED_FEATURES)


def test_track_ids_round_trip_through_the_one_vocabulary(transformed):
    tokens = transformed.track_tokens()
    assert len(set(tokens)) == len(tokens) == features.track_vocab_size(transformed.output)
    ids_of = collections.defaultdict(set)
    for example in ANALYSED:
        row = transformed.analysed[example.timestamp_ms]
        assert tokens[row[features.TARGET_TRACK_ID_XF]] == example.target
        assert [tokens[i] for i in row[features.HISTORY_TRACK_IDS_XF]] == list(example.history)
        assert [tokens[i] for i in row[features.HARD_NEGATIVE_TRACK_IDS_XF]] == list(example.hard_negatives)
        ids_of[example.target].add(row[features.TARGET_TRACK_ID_XF])
        for track, track_id in zip(example.history + example.hard_negatives,
                                   row[features.HISTORY_TRACK_IDS_XF] + row[features.HARD_NEGATIVE_TRACK_IDS_XF]):
            ids_of[track].add(track_id)
    assert {track: len(ids) for track, ids in ids_of.items()} == {track: 1 for track in tokens}


def test_unseen_tracks_and_station_get_the_oov_ids(transformed):
    track_oov = features.track_vocab_size(transformed.output)
    tokens = transformed.track_tokens()
    row = transformed.unseen[UNSEEN[0].timestamp_ms]
    assert row[features.TARGET_TRACK_ID_XF] == track_oov
    assert row[features.HISTORY_TRACK_IDS_XF] == [tokens.index("t1"), track_oov]
    assert row[features.HARD_NEGATIVE_TRACK_IDS_XF] == [track_oov]
    assert row[features.STATION_ID_XF] == features.station_oov_id(transformed.output)
    assert features.num_track_ids(transformed.output) == track_oov + 1
    assert features.num_station_ids(transformed.output) == features.station_oov_id(transformed.output) + 1


def test_no_station_has_its_own_id_apart_from_real_stations(transformed):
    stations = [token.decode() for token in transformed.output.vocabulary_by_name(features.STATION_VOCAB)]
    assert sorted(stations) == ["s1", "s2"]
    for example in ANALYSED + UNSEEN[1:]:
        row = {**transformed.analysed, **transformed.unseen}[example.timestamp_ms]
        expected = (
            features.NO_STATION_ID if example.station == features.NO_STATION
            else features.FIRST_STATION_ID + stations.index(example.station)
        )
        assert row[features.STATION_ID_XF] == expected, example


def test_frequencies_are_exact_occurrence_counts(transformed):
    tokens, counts = features.read_track_frequencies(transformed.output)
    assert counts.dtype == np.int64
    assert counts.sum() == sum(len(example.tracks()) for example in ANALYSED)
    assert counts[tokens.index("t1")] == T1_OCCURRENCES
    assert dict(zip(tokens, counts.tolist())) == collections.Counter(
        track for example in ANALYSED for track in example.tracks()
    )


def test_label_ids_follow_the_contract_order(transformed):
    for example in ANALYSED + UNSEEN:
        row = {**transformed.analysed, **transformed.unseen}[example.timestamp_ms]
        assert row[features.TARGET_LABEL_XF] == contract.LABEL_IDS[example.label]
        assert [contract.LABELS[i] for i in row[features.HISTORY_LABELS_XF]] == list(example.history_labels)


def test_list_lengths_and_pass_throughs_are_preserved(transformed):
    for example in ANALYSED + UNSEEN:
        row = {**transformed.analysed, **transformed.unseen}[example.timestamp_ms]
        assert len(row[features.HISTORY_TRACK_IDS_XF]) == len(example.history)
        assert len(row[features.HISTORY_LABELS_XF]) == len(example.history_labels)
        assert len(row[features.HARD_NEGATIVE_TRACK_IDS_XF]) == len(example.hard_negatives)
        assert row[features.USER_ID_XF] == example.user.encode()
    assert [] in [row[features.HARD_NEGATIVE_TRACK_IDS_XF] for row in transformed.analysed.values()]
    assert [] in [row[features.HISTORY_TRACK_IDS_XF] for row in transformed.analysed.values()]


def test_serving_may_send_only_the_history(transformed):
    """Missing raw features are filled by tf.Transform; nothing may fail on them."""
    tokens = transformed.track_tokens()
    history = tf.RaggedTensor.from_row_lengths([b"t3", UNSEEN_TRACK.encode(), b"t1"], [2, 1]).to_sparse()
    labels = tf.RaggedTensor.from_row_lengths([SKIP.encode(), LIKE.encode(), b"unheard-of"], [2, 1]).to_sparse()
    result = transformed.output.transform_raw_features(
        {contract.EX_HISTORY_TRACK_IDS: history, contract.EX_HISTORY_LABELS: labels}
    )
    ids = tf.RaggedTensor.from_sparse(result[features.HISTORY_TRACK_IDS_XF]).to_list()
    assert ids == [[tokens.index("t3"), features.track_vocab_size(transformed.output)], [tokens.index("t1")]]
    label_ids = tf.RaggedTensor.from_sparse(result[features.HISTORY_LABELS_XF]).to_list()
    assert label_ids == [[contract.LABEL_IDS[SKIP], contract.LABEL_IDS[LIKE]], [features.UNKNOWN_LABEL_ID]]


def test_analysis_fails_on_an_unknown_label(tmp_path):
    bad = dataclasses.replace(ANALYSED[0], history_labels=(LISTEN, "skipped"))
    source = write_examples(ANALYSED[1:] + (bad,), tmp_path / "bad.tfrecord")
    with pytest.raises(Exception, match="label names that are not in"):
        with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=str(tmp_path / "tft_tmp")):
            raw = pipeline | source.BeamSource()
            _ = (raw, source.TensorAdapterConfig()) | tft_beam.AnalyzeDataset(preprocessing.preprocessing_fn)


def test_track_ids_that_a_frequency_file_cannot_hold_are_refused():
    """The predicate behind the analysis check on track ids (the check itself is the label test's)."""
    tracks = tf.constant(["t1", "MSSD:t_0a-9", "t 4", "t4\n", "\rt4", ""])
    exact = tf.strings.regex_full_match(tracks, preprocessing.EXACT_TRACK_TOKEN).numpy().tolist()
    assert exact == [True, True, False, False, False, False]


class _FakeTransformOutput:
    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.transform_savedmodel_dir = str(path.parent)

    def vocabulary_file_by_name(self, name: str) -> str:
        assert name == features.TRACK_VOCAB
        return str(self.path)


def test_read_track_frequencies_rejects_a_line_without_a_count(tmp_path):
    vocab = tmp_path / features.TRACK_VOCAB
    vocab.write_text("3 t1\n2 t with space\n")
    tokens, counts = features.read_track_frequencies(_FakeTransformOutput(vocab))
    assert (tokens, counts.tolist()) == (["t1", "t with space"], [3, 2])
    vocab.write_text("3 t1\nt2\n")
    with pytest.raises(ValueError, match="expected 'count token'"):
        features.read_track_frequencies(_FakeTransformOutput(vocab))
