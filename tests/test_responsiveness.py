"""models/responsiveness.py on a hand-made scorer whose top lists and shares are worked out by hand below."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from models import features, responsiveness as rsp
from schema import contract

LISTEN, DISLIKE, LIKE, SKIP = (contract.LABEL_IDS[name] for name in ("listen", "dislike", "like", "skip"))
# 8 real tracks (ids 0..7) and the OOV id 8.
BASE = np.array([8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.5, 1.0, 100.0])  # the OOV id scores best: it must never come back
ARTISTS = ["A", "A", "A", "B", "B", "B", "C", "C"]
SAME_ARTIST = np.array([[a == b for b in ARTISTS] + [False] for a in ARTISTS])
EMBEDDINGS = np.array([[1, 0], [1, 0.1], [0, 1], [1, 0.5], [-1, 0], [0.5, 1], [0, -1], [-1, 1],
                       [1, 0]], dtype=np.float64)  # the OOV row points like track 0: it must never be a neighbour


def artist_scorer(batch):
    """Looks only at the newest history token: a listen adds 1 to its artist's tracks, a dislike takes 5 off."""
    ids, labels, mask = (np.asarray(batch[key]) for key in (
        features.HISTORY_TRACK_IDS_XF, features.HISTORY_LABELS_XF, features.HISTORY_MASK))
    scores = np.tile(BASE, (len(ids), 1))
    for row in range(len(ids)):
        newest = int(mask[row].sum()) - 1
        track, label = ids[row, newest], labels[row, newest]
        scores[row, SAME_ARTIST[track]] += {LISTEN: 1.0, DISLIKE: -5.0}.get(int(label), 0.0)
    return scores


def two_queries() -> rsp.Queries:
    """q1: history [5 like], probe 0 (artist A); q2: a full history [1 listen, 4 skip], probe 3 (artist B)."""
    return rsp.Queries(
        user_ids=np.array([b"u1", b"u2"], dtype=object), station_ids=np.array([0, 0]),
        history_ids=np.array([[5, 0], [1, 4]]), history_labels=np.array([[LIKE, 0], [LISTEN, SKIP]]),
        history_mask=np.array([[True, False], [True, True]]), probe_ids=np.array([0, 3]))


def test_append_token_puts_the_probe_newest_and_drops_the_oldest_of_a_full_row():
    q = two_queries()
    ids, labels, mask = rsp.append_token(q.history_ids, q.history_labels, q.history_mask, q.probe_ids, DISLIKE)
    assert ids.tolist() == [[5, 0], [4, 3]]
    assert labels.tolist() == [[LIKE, DISLIKE], [SKIP, DISLIKE]]
    assert mask.tolist() == [[True, True], [True, True]]
    assert q.history_ids.tolist() == [[5, 0], [1, 4]]  # the input is untouched


def test_nearest_neighbours_by_cosine_leave_out_the_probe_and_the_oov_id():
    # cosines with track 0: 1 -> 0.995, 3 -> 0.894, 5 -> 0.447; with track 3: 1 -> 0.935, 0 -> 0.894, 5 -> 0.8
    near = rsp.nearest_neighbours(EMBEDDINGS, np.array([0, 3]), count=3, num_tracks=8)
    assert near.tolist() == [[1, 3, 5], [1, 0, 5]]


def test_top_k_after_excludes_history_probe_and_oov():
    q = two_queries()
    # q1 listen: A +1 -> 1:8, 2:7, 3:5 best once 0 (probe), 5 (history) and 8 (OOV) are out
    # q2 listen: B +1 -> 0:8, 2:6, 5:4 once 1, 4 (history, 1 even though the append pushed it out) and 3 are out
    assert rsp.top_k_after(artist_scorer, q, LISTEN, k=3, num_tracks=8).tolist() == [[1, 2, 3], [0, 2, 5]]
    # q1 dislike: A -5 -> 3:5, 4:4, 6:2.5 (1:2, 2:1 fall behind); q2 dislike: B -5 -> 0:8, 2:6, 6:2.5
    assert rsp.top_k_after(artist_scorer, q, DISLIKE, k=3, num_tracks=8).tolist() == [[3, 4, 6], [0, 2, 6]]
    # without num_tracks the OOV id (score 100) would lead
    assert rsp.top_k_after(artist_scorer, q, LISTEN, k=1).tolist() == [[8], [8]]


def test_measure_gives_the_hand_computed_drops():
    result = rsp.measure(artist_scorer, two_queries(), EMBEDDINGS, num_tracks=8, artist_by_track=ARTISTS,
                         k=3, neighbours=2)
    # artist: q1 listen {1,2,3} has 2 of A, dislike {3,4,6} none; q2 listen {0,2,5} has 1 of B, dislike {0,2,6} none
    assert result["listen_artist_share"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert result["dislike_artist_share"] == pytest.approx(0.0)
    assert result["artist_share_drop"] == pytest.approx(0.5)
    assert result["artist_queries"] == 2 and result["artist_note"] is None
    # neighbours (2 nearest): of 0 -> {1, 3}: listen 2/3, dislike 1/3; of 3 -> {1, 0}: listen 1/3, dislike 1/3
    assert result["listen_neighbour_share"] == pytest.approx(0.5)
    assert result["dislike_neighbour_share"] == pytest.approx(1 / 3)
    assert result["neighbour_share_drop"] == pytest.approx(1 / 6)
    assert result["top_k_overlap"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert (result["queries"], result["k"], result["neighbours"], result["probe"]) == (2, 3, 2, "target")


def test_a_scorer_blind_to_labels_has_no_drop():
    def blind(batch):
        return np.tile(BASE, (len(batch[features.HISTORY_MASK]), 1))

    result = rsp.measure(blind, two_queries(), EMBEDDINGS, num_tracks=8, artist_by_track=ARTISTS, k=3, neighbours=2)
    assert result["artist_share_drop"] == 0.0 and result["neighbour_share_drop"] == 0.0
    assert result["top_k_overlap"] == 1.0


def test_unknown_artists_give_null_with_the_reason_and_partial_artists_only_count_known_probes():
    none = rsp.measure(artist_scorer, two_queries(), EMBEDDINGS, num_tracks=8, k=3, neighbours=2,
                       artist_unavailable_reason="the evaluator's inputs carry no artist_id")
    assert none["artist_share_drop"] is None and none["artist_note"] == "the evaluator's inputs carry no artist_id"
    assert none["neighbour_share_drop"] == pytest.approx(1 / 6)  # always there
    empty = rsp.measure(artist_scorer, two_queries(), EMBEDDINGS, num_tracks=8, artist_by_track=[""] * 8, k=3)
    assert empty["artist_share_drop"] is None and empty["artist_note"]
    # only track 3's artist known (as a mapping): q2 alone counts, with its drop 1/3
    partial = rsp.measure(artist_scorer, two_queries(), EMBEDDINGS, num_tracks=8,
                          artist_by_track={3: "B", 4: "B", 5: "B"}, k=3, neighbours=2)
    assert partial["artist_queries"] == 1
    assert partial["artist_share_drop"] == pytest.approx(1 / 3)


def batch(users, targets, timestamps, lengths, width=3):
    mask = np.arange(width)[None, :] < np.array(lengths)[:, None]
    return {features.USER_ID_XF: np.array(users, dtype=object), features.STATION_ID_XF: np.zeros(len(users), np.int64),
            features.TARGET_TRACK_ID_XF: np.array(targets), features.TARGET_TIMESTAMP_MS_XF: np.array(timestamps),
            features.HISTORY_TRACK_IDS_XF: np.where(mask, 7, 0), features.HISTORY_LABELS_XF: np.where(mask, LISTEN, 0),
            features.HISTORY_MASK: mask}


def test_select_queries_takes_each_listeners_earliest_example_with_a_history_whatever_the_read_order():
    first = batch([b"a", b"b", b"a"], [1, 2, 3], [30, 10, 20], [1, 2, 3])
    second = batch([b"b", b"c", b"a"], [4, 5, 6], [5, 1, 1], [1, 0, 2])  # c has no history; a's t=1 is earliest
    forward = rsp.select_queries([first, second])
    backward = rsp.select_queries([second, first])
    chosen = dict(zip(forward.user_ids, forward.probe_ids))
    assert chosen == {b"a": 6, b"b": 4}
    assert dict(zip(backward.user_ids, backward.probe_ids)) == chosen
    assert forward.history_mask.sum(axis=1).tolist() == [{b"a": 2, b"b": 1}[u] for u in forward.user_ids]
    capped = rsp.select_queries([first, second], max_queries=1)
    assert len(capped) == 1 and capped.user_ids[0] == min((b"a", b"b"), key=rsp._user_key)


def test_queries_whose_probe_is_the_oov_id_are_left_out():
    q = two_queries()
    with_oov = rsp.Queries(*(np.concatenate([getattr(q, name), getattr(q, name)[:1]])
                             for name in ("user_ids", "station_ids", "history_ids", "history_labels", "history_mask",
                                          "probe_ids")))
    with_oov = dataclasses.replace(with_oov, probe_ids=np.array([0, 3, 8]))
    result = rsp.measure(artist_scorer, with_oov, EMBEDDINGS, num_tracks=8, artist_by_track=ARTISTS, k=3, neighbours=2)
    assert (result["queries"], result["unknown_probes_skipped"]) == (2, 1)
    assert result["artist_share_drop"] == pytest.approx(0.5) and result["neighbour_share_drop"] == pytest.approx(1 / 6)


def test_top_ids_equal_a_stable_sort_of_the_whole_row_with_ties_and_excluded_tracks():
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 8, (60, 400)).astype(np.float64)  # heavy ties: the smaller id must win
    scores[rng.random(scores.shape) < 0.3] = -np.inf
    scores[0, 5:] = -np.inf  # fewer than k finite scores: -1 pads
    for k in (1, 10, 400):
        reference = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        reference = np.where(np.isfinite(np.take_along_axis(scores, reference, axis=1)), reference, -1)
        np.testing.assert_array_equal(rsp._top_ids(scores, k), reference)
    assert (rsp._top_ids(scores, 10)[0, 5:] == -1).all()
