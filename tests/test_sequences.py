"""FeedbackLabeler's rules on hand-written logs, with every expected example written out."""
from __future__ import annotations

import dataclasses

import pytest

from components.feedback_labeler import sequences
from components.feedback_labeler.sequences import Cutoffs, Play
from pipeline import configs
from schema import contract
from schema.contract import DISLIKE, LIKE, LISTEN, SKIP

T0 = 1_767_225_600_000
CUTOFFS = Cutoffs(eval_ms=T0 + 100 * 60_000, test_ms=T0 + 200 * 60_000)


def m(minutes: float) -> int:
    return T0 + int(minutes * 60_000)


def params(**changes) -> sequences.LabelingParams:
    base = dataclasses.replace(
        configs.PipelineConfig().labeling_params(),
        positive_policy="like", input_policy="all", negative_policy="dislikes+skips",
        max_history=3, max_hard_negatives=2, hard_negative_window_ms=10 * 60_000,
    )
    return dataclasses.replace(base, **changes)


U1 = [
    Play(m(0), "a", "st1", LIKE),
    Play(m(1), "b", "st1", SKIP),
    Play(m(2), "c", "st2", LISTEN),
    Play(m(3), "d", "st1", DISLIKE),
    Play(m(4), "e", "st1", LIKE),
    Play(m(5), "f", "st2", SKIP),
    Play(m(6), "g", "st1", LIKE),
    Play(m(6), "h", "st1", SKIP),  # same instant as g: never in g's history
    Play(m(150), "i", "st1", LIKE),
    Play(m(99), "j", "st1", SKIP),
    Play(m(250), "k", "st1", LIKE),
]


def summary(result: sequences.UserResult) -> list[tuple]:
    return [
        (e.target_track_id, e.split, e.history_track_ids, e.history_labels, e.hard_negative_track_ids)
        for e in result.examples
    ]


def test_input_policy_all_history_and_hard_negatives():
    result = sequences.build_user_examples("u1", U1, params(), CUTOFFS)
    assert summary(result) == [
        ("a", "train", [], [], ["b", "d"]),
        ("e", "train", ["a", "b", "d"], [LIKE, SKIP, DISLIKE], ["d", "h"]),
        ("g", "train", ["b", "d", "e"], [SKIP, DISLIKE, LIKE], ["h", "d"]),
        ("i", "eval", ["g", "h", "j"], [LIKE, SKIP, SKIP], []),
        ("k", "test", ["h", "j", "i"], [SKIP, SKIP, LIKE], []),
    ]


def test_input_policy_positives_keeps_only_likes():
    result = sequences.build_user_examples("u1", U1, params(input_policy="positives"), CUTOFFS)
    assert [(e.target_track_id, e.history_track_ids) for e in result.examples] == [
        ("a", []), ("e", ["a"]), ("g", ["a", "e"]), ("i", ["a", "e", "g"]), ("k", ["e", "g", "i"]),
    ]


def test_input_policy_positives_plus_skips_and_listen_targets():
    result = sequences.build_user_examples(
        "u1", U1[:7], params(input_policy="positives+skips", positive_policy="like+listen"), CUTOFFS
    )
    assert [(e.target_track_id, e.target_label, e.history_track_ids) for e in result.examples] == [
        ("a", LIKE, []),
        ("c", LISTEN, ["a", "b"]),  # c is on st2: no st2 history, so the most recent others fill in
        ("e", LIKE, ["a", "b", "c"]),  # dislike d is not an input under positives+skips
        ("g", LIKE, ["a", "b", "e"]),  # three st1 plays fill the history before the more recent st2 ones
    ]


@pytest.mark.parametrize(
    "policy, expected",
    [("dislikes", ["d"]), ("skips", ["h", "b"]), ("dislikes+skips", ["d", "h"]), ("none", [])],
)
def test_negative_policies(policy, expected):
    result = sequences.build_user_examples("u1", U1[:8], params(negative_policy=policy), CUTOFFS)
    assert result.examples[1].target_track_id == "e"
    assert result.examples[1].hard_negative_track_ids == expected


def test_window_and_station_order_negatives():
    plays = [
        Play(m(0), "t", "st1", LIKE),
        Play(m(2), "near_other_station", "st2", SKIP),
        Play(m(9), "far_same_station", "st1", SKIP),
        Play(m(11), "outside_window", "st1", SKIP),
    ]
    result = sequences.build_user_examples("u", plays, params(max_hard_negatives=5), CUTOFFS)
    assert result.examples[0].hard_negative_track_ids == ["far_same_station", "near_other_station"]


def test_target_never_among_its_negatives_and_tracks_are_unique():
    plays = [
        Play(m(0), "z", "st1", SKIP),
        Play(m(1), "w", "st1", SKIP),
        Play(m(2), "z", "st1", LIKE),
        Play(m(3), "w", "st1", SKIP),
    ]
    result = sequences.build_user_examples("u", plays, params(max_hard_negatives=5), CUTOFFS)
    assert result.examples[0].hard_negative_track_ids == ["w"]


def test_negatives_never_cross_a_split_boundary():
    plays = [
        Play(CUTOFFS.eval_ms - 60_000, "t", "st1", LIKE),
        Play(CUTOFFS.eval_ms - 30_000, "same_split", "st1", SKIP),
        Play(CUTOFFS.eval_ms, "next_split", "st1", SKIP),
    ]
    result = sequences.build_user_examples("u", plays, params(max_hard_negatives=5), CUTOFFS)
    assert result.examples[0].hard_negative_track_ids == ["same_split"]


def test_split_boundaries_are_exact():
    plays = [
        Play(CUTOFFS.eval_ms - 1, "a", "", LIKE),
        Play(CUTOFFS.eval_ms, "b", "", LIKE),
        Play(CUTOFFS.test_ms - 1, "c", "", LIKE),
        Play(CUTOFFS.test_ms, "d", "", LIKE),
    ]
    result = sequences.build_user_examples("u", plays, params(), CUTOFFS)
    assert [(e.target_track_id, e.split) for e in result.examples] == [
        ("a", "train"), ("b", "eval"), ("c", "eval"), ("d", "test"),
    ]


def test_no_future_play_in_any_history():
    result = sequences.build_user_examples("u1", U1, params(max_history=50), CUTOFFS)
    when = {play.track_id: play.timestamp_ms for play in U1}
    for example in result.examples:
        assert all(when[track] < example.target_timestamp_ms for track in example.history_track_ids)
        assert example.target_track_id not in example.hard_negative_track_ids


def test_no_station_uses_most_recent_plays_of_any_station():
    plays = [Play(m(0), "p", "", LIKE), Play(m(1), "q", "st5", LIKE), Play(m(2), "r", "", LIKE)]
    result = sequences.build_user_examples("u", plays, params(), CUTOFFS)
    assert result.examples[-1].history_track_ids == ["p", "q"]
    assert result.examples[-1].station_id == ""


def test_coverage_per_input_policy():
    skips_only_before = [Play(m(10), "x", "st9", SKIP), Play(m(220), "y", "st9", LIKE)]
    result = sequences.build_user_examples("u2", skips_only_before, params(), CUTOFFS)
    assert result.has_test_target
    assert result.covered_by_policy == {"positives": False, "positives+skips": True, "all": True}
    dislike_only_before = [Play(m(10), "x", "st9", DISLIKE), Play(m(220), "y", "st9", LIKE)]
    result = sequences.build_user_examples("u3", dislike_only_before, params(), CUTOFFS)
    assert result.covered_by_policy == {"positives": False, "positives+skips": False, "all": True}


def test_label_counts_per_split():
    result = sequences.build_user_examples("u1", U1, params(), CUTOFFS)
    assert result.label_counts == {
        ("train", LIKE): 3, ("train", SKIP): 4, ("train", LISTEN): 1, ("train", DISLIKE): 1,
        ("eval", LIKE): 1, ("test", LIKE): 1,
    }


def test_cutoffs_from_fractions_and_timestamps():
    assert sequences.resolve_cutoffs(params(eval_cutoff="0.7", test_cutoff="0.9"), 1000, 2000) == (1700, 1900)
    stamped = params(eval_cutoff=str(T0), test_cutoff=str(T0 + 5))
    assert sequences.resolve_cutoffs(stamped, 0, 1) == (T0, T0 + 5)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"eval_cutoff": "0.9", "test_cutoff": "0.8"}, "eval_cutoff <= test_cutoff"),
        ({"eval_cutoff": "1.5"}, "fraction in \\[0, 1\\]"),
        ({"eval_cutoff": "tomorrow"}, "fraction in \\[0, 1\\]"),
        ({"eval_cutoff": str(T0), "test_cutoff": "0.9"}, "both be fractions"),
        ({"negative_policy": "thumbs"}, "negative_policy must be one of"),
        ({"max_history": 0}, "max_history must be >= 1"),
        ({"skip_fraction": 2.0}, "skip_fraction"),
    ],
)
def test_bad_params_say_what_to_fix(changes, message):
    with pytest.raises(ValueError, match=message):
        params(**changes)


def test_every_example_feature_is_written():
    from components.feedback_labeler.executor import to_tf_example

    example = sequences.build_user_examples("u1", U1, params(), CUTOFFS).examples[1]
    proto = to_tf_example(example)
    assert set(proto.features.feature) == set(contract.EXAMPLE_SCALAR_FEATURES + contract.EXAMPLE_LIST_FEATURES)
    assert list(proto.features.feature[contract.EX_HISTORY_LABELS].bytes_list.value) == [b"like", b"skip", b"dislike"]
