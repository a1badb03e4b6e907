"""FeedbackLabeler's Beam executor on a hand-written log, as ExampleGen would have written it."""
from __future__ import annotations

import gzip  # noqa: F401  (TFRecord files below are GZIP-compressed, as ExampleGen writes them)
import json
import pathlib

import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils, standard_artifacts

from components.feedback_labeler import batch_steps, executor
from components.feedback_labeler.component import FeedbackStats
from pipeline import configs
from schema import contract

T0 = 1_767_225_600_000
MIN = 60_000

# (user, track, station, minutes after T0, listen_ms, feedback); track_ms is 200 s for all.
PLAYS = [
    ("u1", "a", "st1", 0, 200_000, "thumb_up"),
    ("u1", "b", "st1", 1, 5_000, ""),
    ("u1", "c", "st2", 2, 200_000, ""),
    ("u1", "d", "st1", 3, 10_000, "thumb_down"),
    ("u1", "e", "st1", 4, 200_000, "thumb_up"),
    ("u2", "x", "st9", 10, 3_000, ""),
    ("u2", "y", "st9", 90, 200_000, "thumb_up"),
    ("u3", "p", "", 5, 200_000, "thumb_up"),
    ("u3", "q", "", 91, 200_000, "thumb_up"),
    ("u1", "k", "st1", 100, 200_000, "thumb_up"),
]
BAD_ROWS = [
    {contract.TRACK_ID: b"t", contract.TIMESTAMP_MS: T0},  # no user
    {contract.USER_ID: b"u9", contract.TRACK_ID: b"t", contract.TIMESTAMP_MS: T0, contract.FEEDBACK: b"meh"},
    {contract.USER_ID: b"u9", contract.TRACK_ID: b"t", contract.TIMESTAMP_MS: T0, contract.LISTEN_MS: -5},
]


def raw_example(values: dict) -> tf.train.Example:
    features = {}
    for name, value in values.items():
        if isinstance(value, int):
            features[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        elif value:  # ExampleGen leaves an empty CSV cell out
            features[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=features))


def play_example(user, track, station, minutes, listen_ms, feedback) -> tf.train.Example:
    return raw_example({
        contract.USER_ID: user.encode(), contract.TRACK_ID: track.encode(), contract.STATION_ID: station.encode(),
        contract.TIMESTAMP_MS: T0 + minutes * MIN, contract.LISTEN_MS: listen_ms, contract.TRACK_MS: 200_000,
        contract.FEEDBACK: feedback.encode(),
    })


def write_split(examples_dir: pathlib.Path, split: str, examples: list[tf.train.Example]) -> None:
    (examples_dir / f"Split-{split}").mkdir(parents=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(str(examples_dir / f"Split-{split}" / "data_tfrecord-00000-of-00001.gz"), options) as w:
        for example in examples:
            w.write(example.SerializeToString())


def read_split(uri: str, split: str) -> list[tf.train.Example]:
    files = [str(p) for p in pathlib.Path(uri, f"Split-{split}").glob("*.gz")]
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def strings(example: tf.train.Example, key: str) -> list[str]:
    return [v.decode() for v in example.features.feature[key].bytes_list.value]


def run_executor(tmp_path: pathlib.Path, extra_rows: tuple[dict, ...] = (), **settings
                 ) -> tuple[dict, dict[str, list[tf.train.Example]]]:
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "in")
    examples.split_names = artifact_utils.encode_split_names(["span_1", "span_2"])
    plays = [play_example(*p) for p in PLAYS]
    write_split(tmp_path / "in", "span_1", plays[:5] + [raw_example(r) for r in BAD_ROWS + list(extra_rows)])
    write_split(tmp_path / "in", "span_2", plays[5:])
    schema = standard_artifacts.Schema()
    schema.uri = str(tmp_path / "schema")
    (tmp_path / "schema").mkdir()
    (tmp_path / "schema" / "schema.pbtxt").write_text(contract.SCHEMA_PATH.read_text())
    labeled = standard_artifacts.Examples()
    labeled.uri = str(tmp_path / "out")
    stats = FeedbackStats()
    stats.uri = str(tmp_path / "stats")
    config = configs.with_overrides(
        configs.PipelineConfig(),
        [f"eval_cutoff={T0 + 50 * MIN}", f"test_cutoff={T0 + 92 * MIN}", "max_history=3",
         "hard_negative_window_ms=600000"] + [f"{k}={v}" for k, v in settings.items()],
    )
    context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=config.beam_pipeline_args())
    executor.Executor(context).Do(
        {"examples": [examples], "schema": [schema]},
        {"labeled_examples": [labeled], "feedback_stats": [stats]},
        {**vars(config.labeling_params()), "labeler_version": executor.LABELER_VERSION},
    )
    assert artifact_utils.decode_split_names(labeled.split_names) == list(contract.SPLITS)
    assert not (tmp_path / "out" / batch_steps.STAGING_DIR).exists()  # staged files were all placed
    out = {split: read_split(labeled.uri, split) for split in contract.SPLITS}
    return json.loads((tmp_path / "stats" / executor.STATS_FILE).read_text()), out


def test_executor_writes_expected_examples_and_stats(tmp_path):
    stats, out = run_executor(tmp_path)
    by_target = {strings(e, contract.EX_TARGET_TRACK_ID)[0]: e for split in out.values() for e in split}
    assert {split: sorted(strings(e, contract.EX_TARGET_TRACK_ID)[0] for e in rows) for split, rows in out.items()} == {
        "train": ["a", "e", "p"], "eval": ["q", "y"], "test": ["k"],
    }
    assert strings(by_target["e"], contract.EX_HISTORY_TRACK_IDS) == ["a", "b", "d"]
    assert strings(by_target["e"], contract.EX_HISTORY_LABELS) == ["like", "skip", "dislike"]
    assert strings(by_target["e"], contract.EX_HARD_NEGATIVE_TRACK_IDS) == ["d", "b"]
    assert strings(by_target["y"], contract.EX_HISTORY_TRACK_IDS) == ["x"]
    assert strings(by_target["k"], contract.EX_STATION_ID) == ["st1"]
    assert by_target["k"].features.feature[contract.EX_TARGET_TIMESTAMP_MS].int64_list.value == [T0 + 100 * MIN]

    assert stats["quarantined"] == {"missing_user_id": 1, "negative_listen_ms": 1, "unknown_feedback": 1}
    assert stats["valid_plays"] == len(PLAYS)
    assert stats["users"] == 3 and stats["tracks"] == 10
    assert stats["labels"]["train"] == {"dislike": 1, "like": 3, "listen": 1, "skip": 2}
    assert stats["examples"] == {"train": 3, "eval": 2, "test": 1}
    assert stats["hard_negatives_per_example"]["train"] == {"0": 1, "2": 2}
    assert stats["coverage_by_input_policy"]["positives"]["covered_users"] == 1
    assert stats["coverage_by_input_policy"]["all"]["users_with_test_targets"] == 1
    assert stats["capped_users"] == 0 and stats["plays_over_user_cap"] == 0


def test_user_cap_keeps_most_recent_plays_and_counts_the_rest(tmp_path):
    stats, out = run_executor(tmp_path, max_events_per_user=2)
    assert stats["capped_users"] == 1  # u1 has 6 plays; u2 and u3 have 2 each
    assert stats["plays_over_user_cap"] == 4
    targets = sorted(strings(e, contract.EX_TARGET_TRACK_ID)[0] for rows in out.values() for e in rows)
    assert targets == ["e", "k", "p", "q", "y"]  # u1 keeps only e and k


def test_records_whose_feature_kinds_differ_are_each_judged_by_the_contract(tmp_path):
    """listen_ms as text in two records and as int64 in the rest: decoded apart, the text judged per value."""
    text_listen = [
        {contract.USER_ID: b"u9", contract.TRACK_ID: b"t", contract.TIMESTAMP_MS: T0, contract.LISTEN_MS: b"12.5"},
        {contract.USER_ID: b"u9", contract.TRACK_ID: b"t", contract.TIMESTAMP_MS: T0, contract.LISTEN_MS: b" 40000 "},
    ]
    stats, _ = run_executor(tmp_path, extra_rows=tuple(text_listen))
    assert stats["quarantined"] == {"missing_user_id": 1, "negative_listen_ms": 1, "unknown_feedback": 1,
                                    "unparsable_listen_ms": 1}
    assert stats["valid_plays"] == len(PLAYS) + 1 and stats["users"] == 4


def test_staged_files_are_placed_by_name_and_an_empty_split_gets_an_empty_file(tmp_path):
    """`place_files` moves each split's staged files into its folder (named as WriteToTFRecord named them),
    writes one empty file for a split without examples, and may run again (a retried step) without loss."""
    staging = tmp_path / batch_steps.STAGING_DIR
    staging.mkdir()
    written = []
    for index, split in enumerate(["train", "train", "eval"]):
        path = staging / f"{split}-{index}.gz"
        with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
            writer.write(f"{split}{index}".encode())
        written.append((split, str(path)))
    split_uris = {split: str(tmp_path / f"Split-{split}") for split in contract.SPLITS}
    for _ in range(2):
        batch_steps.place_files(written, split_uris)
    names = {split: sorted(p.name for p in (tmp_path / f"Split-{split}").iterdir()) for split in contract.SPLITS}
    assert names == {"train": ["data_tfrecord-00000-of-00002.gz", "data_tfrecord-00001-of-00002.gz"],
                     "eval": ["data_tfrecord-00000-of-00001.gz"], "test": ["data_tfrecord-00000-of-00001.gz"]}
    records = {split: sorted(r.numpy() for r in tf.data.TFRecordDataset(
        [str(p) for p in (tmp_path / f"Split-{split}").iterdir()], compression_type="GZIP")) for split in contract.SPLITS}
    assert records == {"train": [b"train0", b"train1"], "eval": [b"eval2"], "test": []}
    assert not list(staging.iterdir())
