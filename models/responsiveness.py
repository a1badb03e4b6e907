"""Responsiveness (Wang et al., RecSys 2023): does a thumbs-down change what the model recommends next?

For a set of test queries (a listener's history at one test example), the query is built twice, with one
more token appended as the newest: the *probe* track with label `dislike`, and the same track with label
`listen`. Each query scores the whole catalog; the query's history tracks and the probe itself are excluded
(the probe is excluded in both, so the comparison is about what *else* the listener is offered), and the
top-k of each is kept. Two shares of the top-k slots are compared:

- the **artist share**: tracks by the probe's artist (when the artist of the probe is known);
- the **neighbour share**: tracks among the probe's `neighbours` nearest tracks by cosine similarity of the
  model's candidate embeddings (always measurable).

`*_share_drop` = mean over queries of (share after a listen) − (share after a dislike): positive when a
thumbs-down steers the model away from what resembles the rejected track, 0 when the label changes
nothing. `top_k_overlap` is the mean share of the dislike top-k also in the listen top-k (1: the label
changed nothing in the list).

Probe: the example's **target track**, i.e. the track the listener really played next in that context. The
model's own ranking puts that track and its neighbourhood within reach of the top-k, so the two shares are
measurable (a random probe's artist would rarely be in either top-k, and the drop would be 0 for lack of
signal, not for lack of responsiveness). It is excluded from both lists, so "the model recommends the
disliked track itself" is not what is measured: that is the served model's history exclusion's job.

Query choice (deterministic, independent of the order examples are read): only examples with a non-empty
history; per listener the earliest test example (by target timestamp, then target id); when more listeners
remain than `max_queries`, those with the smallest CRC-32 of their user id.

Pure numpy over a scorer (`models.evaluation.Scorer`'s contract: a padded batch -> scores [b, num_track_ids]);
the batches handed to it hold numpy arrays under the keys of `models.features` (history ids, labels and mask,
station id, user id); `as_tensors` wraps a scorer that needs tf.Tensors.
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from models import features, metrics
from schema import contract

K = 10
NEIGHBOURS = 20
MAX_QUERIES = 500
BATCH = 256
DISLIKE_ID = contract.LABEL_IDS[contract.DISLIKE]
LISTEN_ID = contract.LABEL_IDS[contract.LISTEN]
PROBE = "target"
"""Which track is probed (see the module docstring)."""

Scorer = Callable[[dict[str, Any]], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Queries:
    """The chosen test queries: padded histories (left-aligned, oldest first), station, listener, probe."""

    user_ids: np.ndarray
    station_ids: np.ndarray
    history_ids: np.ndarray
    history_labels: np.ndarray
    history_mask: np.ndarray
    probe_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.probe_ids)

    def subset(self, keep: np.ndarray) -> "Queries":
        return Queries(*(getattr(self, field.name)[keep] for field in dataclasses.fields(self)))


def _user_key(user: Any) -> int:
    raw = user if isinstance(user, bytes) else str(user).encode("utf-8")
    return zlib.crc32(raw)


def select_queries(batches: Iterable[Mapping[str, Any]], max_queries: int = MAX_QUERIES) -> Queries:
    """One query per listener from padded batches (`models.inputs` layout), chosen as the module says.

    The histories must be as wide as the model's max_history; the batches' arrays may be numpy or tf.Tensors.
    """
    best: dict[Any, tuple] = {}
    for batch in batches:
        values = {key: np.asarray(batch[key]) for key in (
            features.USER_ID_XF, features.STATION_ID_XF, features.TARGET_TRACK_ID_XF, features.TARGET_TIMESTAMP_MS_XF,
            features.HISTORY_TRACK_IDS_XF, features.HISTORY_LABELS_XF, features.HISTORY_MASK)}
        mask = values[features.HISTORY_MASK].astype(bool)
        timestamps = values[features.TARGET_TIMESTAMP_MS_XF].reshape(-1)
        for row in np.nonzero(mask.any(axis=1))[0]:
            user = values[features.USER_ID_XF].reshape(-1)[row]
            user = user.item() if isinstance(user, np.generic) else user
            order = (int(timestamps[row]), int(values[features.TARGET_TRACK_ID_XF][row]))
            if user not in best or order < best[user][0]:
                best[user] = (order, values[features.STATION_ID_XF].reshape(-1)[row],
                              values[features.HISTORY_TRACK_IDS_XF][row], values[features.HISTORY_LABELS_XF][row],
                              mask[row], int(values[features.TARGET_TRACK_ID_XF][row]))
    users = sorted(best, key=lambda user: (_user_key(user), user))[:max_queries]
    if not users:
        return Queries(np.zeros(0, dtype=object), np.zeros(0, dtype=np.int64), np.zeros((0, 1), dtype=np.int64),
                       np.zeros((0, 1), dtype=np.int64), np.zeros((0, 1), dtype=bool), np.zeros(0, dtype=np.int64))
    rows = [best[user] for user in users]
    return Queries(np.array(users, dtype=object), np.array([r[1] for r in rows], dtype=np.int64),
                   np.stack([r[2] for r in rows]).astype(np.int64), np.stack([r[3] for r in rows]).astype(np.int64),
                   np.stack([r[4] for r in rows]).astype(bool), np.array([r[5] for r in rows], dtype=np.int64))


def append_token(history_ids: np.ndarray, history_labels: np.ndarray, history_mask: np.ndarray,
                 track_ids: np.ndarray, label_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's history with (track, label) appended as the newest token (left-aligned, padded with PAD_ID).

    A full row drops its oldest token, as `models.inputs` keeps the newest max_history tokens.
    """
    ids, labels, mask = (np.array(a, copy=True) for a in (history_ids, history_labels, history_mask))
    mask = mask.astype(bool)
    width = ids.shape[1]
    for row in range(len(ids)):
        length = int(mask[row].sum())
        if length >= width:
            ids[row, :-1], labels[row, :-1] = ids[row, 1:].copy(), labels[row, 1:].copy()
            length = width - 1
        ids[row, length], labels[row, length], mask[row, length] = track_ids[row], label_id, True
    return ids, labels, mask


def nearest_neighbours(candidate_embeddings: np.ndarray, probe_ids: np.ndarray, count: int = NEIGHBOURS,
                       num_tracks: Optional[int] = None) -> np.ndarray:
    """Per probe, the ids of its `count` most cosine-similar tracks among ids < num_tracks (itself excluded)."""
    embeddings = np.asarray(candidate_embeddings, dtype=np.float64)
    num_tracks = len(embeddings) if num_tracks is None else num_tracks
    unit = embeddings[:num_tracks] / np.maximum(np.linalg.norm(embeddings[:num_tracks], axis=1, keepdims=True), 1e-12)
    probe_ids = np.asarray(probe_ids, dtype=np.int64)
    k = min(count, max(num_tracks - 1, 0))
    tops = [np.zeros((0, k), dtype=np.int64)]
    for rows in metrics.row_blocks(len(probe_ids), num_tracks):  # small temporaries, same ids
        similarity = unit[probe_ids[rows]] @ unit.T
        similarity[np.arange(len(similarity)), probe_ids[rows]] = -np.inf
        tops.append(_top_ids(similarity, k))
    return np.concatenate(tops)


def _top_ids(scores: np.ndarray, k: int) -> np.ndarray:
    """Ids of each row's k best scores, best first, ties broken by the smaller id; -1 where a score is -inf."""
    if k <= 0:
        return np.zeros((len(scores), 0), dtype=np.int64)
    k = min(k, scores.shape[1])
    # Only the ids scoring at least the row's k-th best can be among its top k: sorting those (in id order, a
    # stable sort) gives what a stable sort of the whole row gives, without sorting the whole catalog.
    kth = np.partition(scores, scores.shape[1] - k, axis=1)[:, scores.shape[1] - k]
    order = np.empty((len(scores), k), dtype=np.int64)
    for row, (values, threshold) in enumerate(zip(scores, kth)):
        candidates = np.flatnonzero(values >= threshold)
        order[row] = candidates[np.argsort(-values[candidates], kind="stable")[:k]]
    finite = np.isfinite(np.take_along_axis(scores, order, axis=1))
    return np.where(finite, order, -1)


def top_k_after(scorer: Scorer, queries: Queries, label_id: int, k: int = K, num_tracks: Optional[int] = None,
                batch_size: int = BATCH) -> np.ndarray:
    """[n, k] ids of each query's top-k after appending (probe, label_id); history and probe excluded; -1 pads
    when fewer than k tracks remain. Ids >= num_tracks (the OOV bucket) are never recommended."""
    ids, labels, mask = append_token(queries.history_ids, queries.history_labels, queries.history_mask,
                                     queries.probe_ids, label_id)
    tops = []
    for start in range(0, len(queries), batch_size):
        part = slice(start, start + batch_size)
        batch = {features.HISTORY_TRACK_IDS_XF: ids[part], features.HISTORY_LABELS_XF: labels[part],
                 features.HISTORY_MASK: mask[part], features.STATION_ID_XF: queries.station_ids[part],
                 features.USER_ID_XF: queries.user_ids[part]}
        all_scores = np.asarray(scorer(batch))
        history_ids, history_mask = queries.history_ids[part], queries.history_mask[part]
        probe_ids = queries.probe_ids[part]
        for rows in metrics.row_blocks(len(all_scores), all_scores.shape[1]):  # small temporaries, same ids
            scores = np.array(all_scores[rows], dtype=np.float64, copy=True)
            if num_tracks is not None:
                scores[:, num_tracks:] = -np.inf
            # the same exclusions in both arms: the original history (even a token the append pushed out) and the probe
            hist_rows, hist_cols = np.nonzero(history_mask[rows])
            scores[hist_rows, history_ids[rows][hist_rows, hist_cols]] = -np.inf
            scores[np.arange(len(scores)), probe_ids[rows]] = -np.inf
            tops.append(_top_ids(scores, min(k, scores.shape[1])))
    return np.concatenate(tops) if tops else np.zeros((0, k), dtype=np.int64)


def shares(top_ids: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Per row, the share of its recommended slots (ids >= 0) holding a member ([n, V] boolean)."""
    top_ids = np.asarray(top_ids)
    real = top_ids >= 0
    hits = np.take_along_axis(np.asarray(members, dtype=bool), np.where(real, top_ids, 0), axis=1) & real
    counts = real.sum(axis=1)
    return np.where(counts > 0, hits.sum(axis=1) / np.maximum(counts, 1), np.nan)


def artist_array(artist_by_track: Optional[Mapping[int, str] | Sequence[Optional[str]]],
                 num_ids: int) -> Optional[np.ndarray]:
    """Artist per track id as an object array ('' unknown), or None when no track has a known artist."""
    if artist_by_track is None:
        return None
    artists = np.full(num_ids, "", dtype=object)
    items = artist_by_track.items() if isinstance(artist_by_track, Mapping) else enumerate(artist_by_track)
    for track, artist in items:
        if 0 <= int(track) < num_ids and artist:
            artists[int(track)] = str(artist)
    return artists if (artists != "").any() else None


def _mean(values: np.ndarray) -> Optional[float]:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


def measure(scorer: Scorer, queries: Queries, candidate_embeddings: np.ndarray, num_tracks: Optional[int] = None,
            artist_by_track: Optional[Mapping[int, str] | Sequence[Optional[str]]] = None,
            artist_unavailable_reason: str = "no artist of the catalog's tracks was given",
            k: int = K, neighbours: int = NEIGHBOURS, batch_size: int = BATCH) -> dict[str, Any]:
    """The responsiveness numbers (module docstring) for the chosen queries.

    num_tracks: real track ids are 0..num_tracks-1 (the OOV id and beyond are never recommended nor neighbours;
    default: every row of candidate_embeddings). artist_by_track: artist per track id (mapping or sequence;
    '' or None unknown); queries whose probe's artist is unknown are left out of the artist numbers.
    """
    embeddings = np.asarray(candidate_embeddings)
    num_tracks = len(embeddings) if num_tracks is None else int(num_tracks)
    known_probe = (queries.probe_ids >= 0) & (queries.probe_ids < num_tracks)
    queries = queries.subset(known_probe)  # an OOV target stands for no one track: no artist, no neighbours
    result: dict[str, Any] = {
        "probe": PROBE, "label_compared": [contract.LISTEN, contract.DISLIKE], "k": k, "neighbours": neighbours,
        "queries": len(queries), "unknown_probes_skipped": int((~known_probe).sum())}
    listen = top_k_after(scorer, queries, LISTEN_ID, k, num_tracks, batch_size)
    dislike = top_k_after(scorer, queries, DISLIKE_ID, k, num_tracks, batch_size)
    overlap = [len(set(a[a >= 0]) & set(b[b >= 0])) / max(int((b >= 0).sum()), 1) for a, b in zip(listen, dislike)]
    result["top_k_overlap"] = _mean(np.array(overlap))

    width = max(num_tracks, int(listen.max(initial=0)) + 1, int(dislike.max(initial=0)) + 1)
    near = nearest_neighbours(embeddings, queries.probe_ids, neighbours, num_tracks)
    members = np.zeros((len(queries), width), dtype=bool)
    rows = np.repeat(np.arange(len(queries)), near.shape[1])
    members[rows, near.reshape(-1)] = True
    listen_share, dislike_share = shares(listen, members), shares(dislike, members)
    result.update({"listen_neighbour_share": _mean(listen_share), "dislike_neighbour_share": _mean(dislike_share),
                   "neighbour_share_drop": _mean(listen_share - dislike_share)})

    artists = artist_array(artist_by_track, width)
    result.update({"listen_artist_share": None, "dislike_artist_share": None, "artist_share_drop": None,
                   "artist_queries": 0, "artist_note": None})
    if artists is None:
        result["artist_note"] = artist_unavailable_reason
        return result
    probe_artists = artists[queries.probe_ids]
    known = probe_artists != ""
    result["artist_queries"] = int(known.sum())
    if not known.any():
        result["artist_note"] = "no probe track has a known artist"
        return result
    same = (artists[None, :] == probe_artists[known][:, None])
    listen_share, dislike_share = shares(listen[known], same), shares(dislike[known], same)
    result.update({"listen_artist_share": _mean(listen_share), "dislike_artist_share": _mean(dislike_share),
                   "artist_share_drop": _mean(listen_share - dislike_share)})
    return result


def as_tensors(scorer: Callable[[dict[str, Any]], np.ndarray]) -> Scorer:
    """A scorer of tf.Tensor batches (e.g. `ExportedModel.scorer()`) made to take this module's numpy batches."""
    import tensorflow as tf

    def score(batch: dict[str, Any]) -> np.ndarray:
        converted = {}
        for key, value in batch.items():
            if key == features.USER_ID_XF:
                value = [user if isinstance(user, bytes) else str(user).encode("utf-8") for user in value]
            converted[key] = tf.constant(value)
        return scorer(converted)

    return score


def read_artist_by_track(data_dir: str) -> tuple[Optional[dict[str, str]], str]:
    """(raw track id -> artist id, where it came from) for a log folder: its `catalog/tracks.csv` (a simulated
    log's track_id, artist_id) when present, else the spans' `artist_id` column (per track its most frequent
    non-empty value). (None, why) when neither names any artist."""
    import os
    import pathlib

    import pandas as pd

    catalog = os.path.join(data_dir, "catalog", "tracks.csv")
    if os.path.isfile(catalog):
        table = pd.read_csv(catalog, dtype=str, keep_default_na=False)
        source = catalog
        pairs = table[[contract.TRACK_ID, contract.ARTIST_ID]]
    else:
        from pipeline.demo_request import read_log

        log = read_log(pathlib.Path(data_dir))
        source = f"the {contract.ARTIST_ID} column of the log in {data_dir}"
        if contract.ARTIST_ID not in log:
            return None, f"the log in {data_dir} has no {contract.ARTIST_ID} column"
        pairs = log[[contract.TRACK_ID, contract.ARTIST_ID]].fillna("").astype(str)
        pairs = (pairs.groupby([contract.TRACK_ID, contract.ARTIST_ID]).size().rename("n").reset_index()
                 .sort_values(["n", contract.ARTIST_ID], ascending=[False, True]))
    pairs = pairs[pairs[contract.ARTIST_ID].str.len() > 0].drop_duplicates(contract.TRACK_ID)
    if pairs.empty:
        return None, f"{source}: every artist_id is empty"
    return dict(zip(pairs[contract.TRACK_ID], pairs[contract.ARTIST_ID])), source
