"""`listener_arrays.build_listener` writes the same examples and counts as the reference `sequences` code."""
from __future__ import annotations

import collections
import dataclasses
import random

import pyarrow as pa
import pytest
import tensorflow as tf
from tfx_bsl.public import tfxio

from components.feedback_labeler import batch_steps, listener_arrays, sequences
from components.feedback_labeler.executor import to_tf_example
from pipeline import configs
from schema import contract

T0 = 1_767_225_600_000
MIN = 60_000
CUTOFFS = sequences.Cutoffs(eval_ms=T0 + 300 * MIN, test_ms=T0 + 400 * MIN)


def random_plays(rng: random.Random, count: int) -> list[sequences.Play]:
    stations = ["", "s1", "s2", "s3"]
    tracks = [f"t{i}" for i in range(12)]
    return [sequences.Play(T0 + rng.randrange(0, 480) * MIN // rng.choice([1, 1, 4]), rng.choice(tracks),
                           rng.choice(stations), rng.choice(contract.LABELS)) for _ in range(count)]


def reference(user: str, plays: list[sequences.Play], params: sequences.LabelingParams):
    result = sequences.build_user_examples(user, plays, params, CUTOFFS)
    examples = collections.Counter(to_tf_example(e).SerializeToString(deterministic=True) for e in result.examples)
    stats = collections.Counter({"users": 1})
    for (split, label), count in result.label_counts.items():
        stats[f"labels/{split}/{label}"] += count
    for e in result.examples:
        stats[f"examples/{e.split}"] += 1
        stats[f"hard_negatives_per_example/{e.split}/{len(e.hard_negative_track_ids)}"] += 1
    if result.has_test_target:
        stats["coverage/users_with_test_targets"] += 1
        for policy, covered in result.covered_by_policy.items():
            stats[f"coverage/covered/{policy}"] += int(covered)
    return examples, stats


def columnar(user: str, plays: list[sequences.Play], params: sequences.LabelingParams):
    out, stats = listener_arrays.ExampleColumns(), collections.Counter()
    listener_arrays.build_listener(
        user, [p.timestamp_ms for p in plays], [p.track_id for p in plays], [p.station_id for p in plays],
        [contract.LABEL_IDS[p.label] for p in plays], params, CUTOFFS, out, stats)
    encoder = tfxio.RecordBatchToExamplesEncoder()
    examples = collections.Counter()
    for batch in out.record_batches().values():
        for record in encoder.encode(batch):
            # Same content, canonical bytes: re-serialize deterministically (feature map order may differ).
            examples[tf.train.Example.FromString(record).SerializeToString(deterministic=True)] += 1
    return examples, stats


SETTINGS = [
    {},
    {"positive_policy": "like+listen", "input_policy": "positives"},
    {"input_policy": "positives+skips", "negative_policy": "skips", "max_history": 1},
    {"negative_policy": "none", "max_hard_negatives": 0},
    {"max_hard_negatives": 1, "hard_negative_window_ms": 0},
]


@pytest.mark.parametrize("changes", SETTINGS)
def test_random_listeners_match_the_reference(changes):
    params = dataclasses.replace(configs.PipelineConfig().labeling_params(), max_history=3, max_hard_negatives=2,
                                 hard_negative_window_ms=30 * MIN)
    params = dataclasses.replace(params, **changes)
    rng = random.Random(hash(tuple(sorted(changes.items()))) & 0xFFFF)
    compared = 0
    for listener in range(60):
        plays = random_plays(rng, rng.randrange(1, 80))
        expected_examples, expected_stats = reference(f"u{listener}", plays, params)
        got_examples, got_stats = columnar(f"u{listener}", plays, params)
        assert got_examples == expected_examples
        assert got_stats == expected_stats
        compared += sum(expected_examples.values())
    assert compared > 100  # the comparison saw real examples, not only empty listeners


def test_a_group_sorted_by_arrow_is_in_the_reference_order():
    """The executor sorts a whole group of listeners with Arrow (`batch_steps.sorted_plays`) and then builds each
    listener over that order: it must be Python's order of (listener, Play), ties and non-ASCII text included."""
    rng = random.Random(3)
    texts = ["", "a", "B", "é", "e", "日本", "t1", "t10", "t2", "Z"]
    rows = [(user, sequences.Play(play.timestamp_ms, rng.choice(texts[1:]), rng.choice(texts), play.label))
            for user in ("u1", "ü", "u10", "U") for play in random_plays(rng, 120)]
    rng.shuffle(rows)
    columns = list(zip(*((user, *play) for user, play in rows)))
    batch = pa.RecordBatch.from_arrays(
        [pa.array(columns[0], pa.large_string()), pa.array(columns[1], pa.int64()),
         pa.array(columns[2], pa.large_string()), pa.array(columns[3], pa.large_string()),
         pa.array([contract.LABEL_IDS[label] for label in columns[4]], pa.int8())], schema=batch_steps.PLAYS)
    got = batch_steps.sorted_plays(batch)
    got_rows = list(zip(*(got.column(name).to_pylist() for name in ("user", "timestamp", "track", "station")),
                        (contract.LABELS[i] for i in got.column("label").to_pylist())))
    assert got_rows == sorted((user, *play) for user, play in rows)
    assert len({row[1:4] for row in got_rows}) < len(got_rows)  # ties on (timestamp, track, station) were sorted


def test_listener_groups_grow_with_the_input_so_a_group_stays_bounded():
    from components.feedback_labeler import batch_steps

    per_group = batch_steps.INPUT_BYTES_PER_GROUP
    assert batch_steps.listener_groups(0) == batch_steps.MIN_LISTENER_GROUPS
    assert batch_steps.listener_groups(33 * 2**20) == batch_steps.MIN_LISTENER_GROUPS  # the 1M-play log
    assert batch_steps.listener_groups(100 * per_group + 1) == 101
    assert batch_steps.listener_groups(1000 * per_group) == 1000  # ~a billion plays: ~a million per group
    groups = {batch_steps.listener_group(f"user-{i}", 101) for i in range(5000)}
    assert groups == set(range(101))
    assert batch_steps.listener_group("u1", 101) == batch_steps.listener_group("u1", 101)
