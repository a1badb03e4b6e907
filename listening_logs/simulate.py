"""Simulated listening logs with known ground truth: plays, skips, thumbs up and thumbs down on stations.

Generative model (every number below is a `SimulationConfig` field and a CLI flag):
- Catalog: genre centres are random unit vectors in a `latent_dim` space; each artist sits near its genre
  centre (`artist_spread`), each track near its artist (`track_spread`). Most of those offsets lie in a
  small style subspace shared by all genres (`style_dims`, `style_share`: mood, energy...), so taste also
  differs *within* a genre. Track popularity is Zipf over a random ranking (`zipf_exponent`); `track_ms`
  is lognormal around `track_ms_median`, fixed per track.
- Users: a taste over genres ~ Dirichlet(`taste_concentration`); the latent vector is the taste-weighted
  mix of genre centres plus a (mostly style) offset (`user_noise`). Activity is lognormal
  (`activity_sigma`): a few heavy users, many light ones. A share of users (`skip_only_share`) never uses
  thumbs: they only skip.
- Stations: each user has a few (`stations_per_user`), seeded by a genre drawn from taste **
  `station_taste_power`, or (`artist_station_share`) by the artist of that genre closest to them. A station
  plays popularity-weighted tracks of its seed artist (`same_artist_share`) or genre, plus a little of the
  whole catalog (`exploration_share`), and optionally of its unpopular tail (`tail_exploration_share`:
  uniform over the catalog, so mostly tracks a listener is unlikely to know). So a disliked track is mostly
  a station-genre track whose style leans away from the user: far closer to the user's liked tracks than a
  random track (a hard negative).
- Sessions: plays come in sessions on one station (`session_plays_mean`) on one UTC day; each play starts
  when the previous one stopped (its listen_ms) plus a short gap (`gap_mean_ms`); sessions of a user-day
  do not overlap unless they cannot fit in the day (counted as `overfull_user_days`).
- Outcomes: affinity = cosine(user, track) (`ground_truth.GroundTruth.affinity`). Thumbs down, thumbs up
  and taste skips are logistic in affinity (`*_max`, `*_slope`, `*_center`), drawn in that order; with
  `*_tail_weight` their logits also move with the track's tail score (log popularity rank: unfamiliar tracks
  are rejected more, hits liked more), as on real logs where rejected tracks are far less popular;
  context skips (`context_skip_rate`) override taste (false negatives). Skip-only users turn a thumbs-down
  intent into a skip and a thumbs-up intent into a listen.
- listen_ms: skips mostly 1-30 s (a few `late_skip_share` skips stop later but before
  `DEFAULT_SKIP_FRACTION` of the track), dislikes short, listens and likes play the whole track
  (a `partial_play_share` stops somewhere past both skip thresholds).

Named presets (`listening_logs.presets`, `--preset default|realistic`) set several knobs at once; the
default preset is the original behaviour, byte for byte.

Outputs: `span-N/events.<fmt>` per day (N = day + 1), `catalog/tracks.csv`, `ground_truth/` and
`summary.json`. Identical config and seed give byte-identical files.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import shutil
import sys
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from listening_logs import presets, spans
from listening_logs.ground_truth import GROUND_TRUTH_DIRNAME, GroundTruth, unit_rows
from schema import contract, span_folders

DEFAULT_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS = spans.DAY_MS
MAX_GAP_MS = 60_000
"""A pause between two plays of a session is 1 ms .. this (longer pauses belong between sessions)."""
MIN_LISTEN_MS = 1_000

CATALOG_DIRNAME = "catalog"
CATALOG_FILENAME = "tracks.csv"
SUMMARY_FILENAME = "summary.json"
GENRE = "genre"
POPULARITY = "popularity"
"""Catalog column: the track's global sampling weight (Zipf), normalised so the catalog sums to 1."""

TARGET_LABEL_SHARES: dict[str, tuple[float, float]] = {
    contract.LISTEN: (0.55, 0.70),
    contract.SKIP: (0.20, 0.35),
    contract.LIKE: (0.03, 0.10),
    contract.DISLIKE: (0.01, 0.05),
}
"""Share of each label the default configuration aims for (inclusive bounds)."""

Progress = Callable[[str], None]


def _param(default: Any, help: str, group: str, **argparse_extra: Any) -> Any:
    """A config field whose help text and CLI group live beside its default (one place per knob)."""
    return dataclasses.field(default=default, metadata={"help": help, "group": group, **argparse_extra})


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    """Every knob of the simulator; validated on construction."""

    users: int = _param(1_000, "number of listeners", "size")
    tracks: int = _param(5_000, "number of tracks in the catalog", "size")
    events: int = _param(50_000, "number of plays in the whole log", "size")
    days: int = _param(7, "number of simulated UTC days = number of span folders", "size")
    seed: int = _param(0, "random seed; the same seed gives byte-identical files", "size")
    file_format: str = _param("csv", "file format of the span files", "size", flag="--format",
                              choices=spans.FORMATS)
    start_ms: int = _param(DEFAULT_START_MS, "epoch ms of the start of day 0 (a UTC midnight)", "size")

    latent_dim: int = _param(16, "dimension of the latent taste space", "catalog")
    style_dims: int = _param(4, "dimensions of the style subspace shared by all genres (within-genre taste)",
                             "catalog")
    style_share: float = _param(0.8, "share of artist, track and user offsets lying in the style subspace",
                                "catalog")
    genres: int = _param(20, "number of genres (clusters of artists)", "catalog")
    artists: int = _param(0, "number of artists; 0 means tracks // 10", "catalog")
    artist_spread: float = _param(0.9, "distance of an artist from its genre centre (genre centres are "
                                       "unit vectors)", "catalog")
    track_spread: float = _param(0.5, "distance of a track from its artist", "catalog")
    zipf_exponent: float = _param(0.9, "Zipf exponent of track popularity (weight = rank^-exponent)",
                                  "catalog")
    track_ms_median: int = _param(210_000, "median track duration in ms (lognormal)", "catalog")
    track_ms_sigma: float = _param(0.3, "sigma of log track duration", "catalog")
    track_ms_min: int = _param(60_000, "shortest track in ms", "catalog")
    track_ms_max: int = _param(720_000, "longest track in ms", "catalog")

    taste_concentration: float = _param(0.2, "Dirichlet concentration of a user's taste over genres "
                                             "(small: a few favourite genres)", "users")
    user_noise: float = _param(0.6, "distance of a user's vector from their taste-weighted genre mix",
                               "users")
    activity_sigma: float = _param(1.0, "sigma of lognormal user activity (larger: heavier heavy users)",
                                   "users")
    skip_only_share: float = _param(0.25, "share of users who never use thumbs and only skip", "users")

    stations_per_user: float = _param(3.0, "mean number of stations per user (at least 1)", "stations")
    max_stations_per_user: int = _param(10, "most stations a user has", "stations")
    station_taste_power: float = _param(2.0, "station genres are drawn in proportion to taste ** this "
                                             "(> 1: stations favour a user's favourite genres)", "stations")
    artist_station_share: float = _param(0.4, "share of stations seeded by an artist (else by a genre)",
                                         "stations")
    seed_artist_candidates: int = _param(8, "an artist seed is the closest to the user of this many "
                                            "popularity-drawn artists of a favourite genre", "stations")
    same_artist_share: float = _param(0.4, "share of an artist station's plays by the seed artist itself",
                                      "stations")
    exploration_share: float = _param(0.03, "share of plays drawn from the whole catalog by popularity",
                                      "stations")
    tail_exploration_share: float = _param(0.0, "share of plays drawn uniformly from the whole catalog, so "
                                                "mostly from its unpopular tail: tracks a listener is unlikely "
                                                "to know (0: off)", "stations")

    session_plays_mean: float = _param(12.0, "mean number of plays in a session", "sessions")
    max_session_plays: int = _param(100, "a session is cut after this many plays", "sessions")
    gap_mean_ms: float = _param(1_500.0, "mean pause between plays of a session (exponential, capped at "
                                         f"{MAX_GAP_MS} ms)", "sessions")

    like_max: float = _param(0.40, "highest probability of a thumbs up", "outcomes")
    like_slope: float = _param(12.0, "steepness of thumbs up in affinity", "outcomes")
    like_center: float = _param(0.60, "affinity at which thumbs up is half its maximum", "outcomes")
    dislike_max: float = _param(0.08, "highest probability of a thumbs down", "outcomes")
    dislike_slope: float = _param(12.0, "steepness of thumbs down as affinity falls", "outcomes")
    dislike_center: float = _param(0.35, "affinity at which thumbs down is half its maximum", "outcomes")
    skip_max: float = _param(0.55, "highest probability of a taste skip", "outcomes")
    skip_slope: float = _param(8.0, "steepness of taste skips as affinity falls", "outcomes")
    skip_center: float = _param(0.30, "affinity at which a taste skip is half its maximum", "outcomes")
    like_tail_weight: float = _param(0.0, "thumbs-up logit falls by this x (tail score - 0.5); the tail score "
                                          "is ln(popularity rank) / ln(tracks): 0 for the most popular track, "
                                          "1 for the least (0: popularity plays no part)", "outcomes")
    dislike_tail_weight: float = _param(0.0, "thumbs-down logit rises by this x (tail score - 0.5): unfamiliar "
                                             "tracks are rejected more (0: off)", "outcomes")
    skip_tail_weight: float = _param(0.0, "taste-skip logit rises by this x (tail score - 0.5) (0: off)",
                                     "outcomes")
    context_skip_rate: float = _param(0.06, "share of plays skipped for reasons unrelated to taste "
                                            "(false negatives)", "outcomes")
    partial_play_share: float = _param(0.05, "share of listens and likes that stop before the end",
                                       "outcomes")
    late_skip_share: float = _param(0.10, f"share of skips that stop after {contract.DEFAULT_SKIP_MS} ms but "
                                          f"before {contract.DEFAULT_SKIP_FRACTION} of the track", "outcomes")

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("invalid simulation config: " + "; ".join(problems))

    @property
    def artist_count(self) -> int:
        return self.artists if self.artists > 0 else max(self.genres, self.tracks // 10)

    def problems(self) -> list[str]:
        """Every broken constraint, each as a sentence saying what to change."""
        checks = [
            (self.users >= 1, f"users must be >= 1 (got {self.users})"),
            (self.tracks >= 1, f"tracks must be >= 1 (got {self.tracks})"),
            (self.days >= 1, f"days must be >= 1 (got {self.days})"),
            (self.events >= max(self.users, self.days),
             f"events ({self.events}) must be >= users ({self.users}) and >= days ({self.days}): "
             "every user plays at least once and every day gets a span"),
            (self.file_format in spans.FORMATS, f"format must be one of {spans.FORMATS}"),
            (self.start_ms % DAY_MS == 0, f"start_ms ({self.start_ms}) must be a UTC midnight "
                                          f"(a multiple of {DAY_MS})"),
            (contract.MIN_TIMESTAMP_MS <= self.start_ms
             and self.start_ms + self.days * DAY_MS <= contract.MAX_TIMESTAMP_MS,
             "start_ms and days must keep timestamps inside the contract's plausible range"),
            (self.latent_dim >= 2, "latent_dim must be >= 2"),
            (1 <= self.style_dims <= self.latent_dim, "style_dims must be within [1, latent_dim]"),
            (1 <= self.genres <= self.artist_count, f"genres ({self.genres}) must be >= 1 and <= artists "
                                                    f"({self.artist_count})"),
            (self.artist_count <= self.tracks, f"artists ({self.artist_count}) must be <= tracks "
                                               f"({self.tracks}): every artist has a track"),
            (0 < self.track_ms_min <= self.track_ms_median <= self.track_ms_max <= contract.MAX_DURATION_MS,
             "need 0 < track_ms_min <= track_ms_median <= track_ms_max"),
            (self.track_ms_min > contract.DEFAULT_SKIP_MS, f"track_ms_min must exceed the skip threshold "
                                                           f"{contract.DEFAULT_SKIP_MS} ms"),
            (self.stations_per_user >= 1 and self.max_stations_per_user >= 1,
             "stations_per_user and max_stations_per_user must be >= 1"),
            (self.seed_artist_candidates >= 1, "seed_artist_candidates must be >= 1"),
            (self.session_plays_mean >= 1 and self.max_session_plays >= 1,
             "session_plays_mean and max_session_plays must be >= 1"),
            (self.max_session_plays * (self.track_ms_max + MAX_GAP_MS) < DAY_MS,
             f"max_session_plays * (track_ms_max + {MAX_GAP_MS} ms) must fit in one day"),
        ]
        non_negative = ["artist_spread", "track_spread", "zipf_exponent", "track_ms_sigma", "user_noise",
                        "activity_sigma", "station_taste_power", "gap_mean_ms", "like_slope", "dislike_slope",
                        "skip_slope", "like_tail_weight", "dislike_tail_weight", "skip_tail_weight"]
        checks += [(getattr(self, name) >= 0, f"{name} must be >= 0") for name in non_negative]
        checks += [(self.taste_concentration > 0, "taste_concentration must be > 0")]
        checks += [(self.exploration_share + self.tail_exploration_share <= 1.0,
                    "exploration_share + tail_exploration_share must be <= 1")]
        shares = ["skip_only_share", "artist_station_share", "same_artist_share", "exploration_share",
                  "tail_exploration_share",
                  "like_max", "dislike_max", "skip_max", "context_skip_rate", "partial_play_share",
                  "late_skip_share", "style_share"]
        checks += [(0.0 <= getattr(self, name) <= 1.0, f"{name} must be within [0, 1]") for name in shares]
        return [message for ok, message in checks if not ok]


# --- The simulated world -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Catalog:
    genre_centres: np.ndarray  # (G, dim)
    style_basis: np.ndarray  # (style_dims, dim) orthonormal
    artist_genre: np.ndarray  # (A,)
    artist_vectors: np.ndarray  # (A, dim)
    track_artist: np.ndarray  # (T,)
    track_vectors: np.ndarray  # (T, dim)
    popularity: np.ndarray  # (T,) sums to 1
    track_ms: np.ndarray  # (T,) int64

    @property
    def track_genre(self) -> np.ndarray:
        return self.artist_genre[self.track_artist]


@dataclasses.dataclass(frozen=True, eq=False)
class Listeners:
    taste: np.ndarray  # (U, G)
    vectors: np.ndarray  # (U, dim)
    activity: np.ndarray  # (U,) relative activity weight
    skip_only: np.ndarray  # (U,) bool
    plays: np.ndarray  # (U,) number of events


@dataclasses.dataclass(frozen=True, eq=False)
class Stations:
    user: np.ndarray  # (S,) owner, sorted
    number: np.ndarray  # (S,) k-th station of its user
    genre: np.ndarray  # (S,) seed genre (the seed artist's genre for artist stations)
    artist: np.ndarray  # (S,) seed artist, -1 for genre stations
    first: np.ndarray  # (U,) index of each user's first station
    count: np.ndarray  # (U,)


@dataclasses.dataclass(frozen=True, eq=False)
class Events:
    user: np.ndarray
    station: np.ndarray
    track: np.ndarray
    day: np.ndarray
    timestamp_ms: np.ndarray
    listen_ms: np.ndarray
    label: np.ndarray  # intended label id (contract.LABEL_IDS)
    affinity: np.ndarray
    overfull_user_days: int


@dataclasses.dataclass(frozen=True, eq=False)
class Simulation:
    """One generated log in memory, with the truth behind it."""

    config: SimulationConfig
    ids: dict[str, np.ndarray]  # "user", "track", "artist", "genre", "station" -> string ids
    catalog: Catalog
    listeners: Listeners
    stations: Stations
    events: Events
    truth: GroundTruth

    def frame(self) -> pd.DataFrame:
        """The log in contract columns, one row per play, in generation order."""
        ev, ids = self.events, self.ids
        feedback = np.array(contract.FEEDBACK_VALUES, dtype=object)[_feedback_codes(ev.label)]
        return pd.DataFrame({
            contract.USER_ID: ids["user"][ev.user],
            contract.TRACK_ID: ids["track"][ev.track],
            contract.STATION_ID: ids["station"][ev.station],
            contract.TIMESTAMP_MS: ev.timestamp_ms,
            contract.LISTEN_MS: ev.listen_ms,
            contract.TRACK_MS: self.catalog.track_ms[ev.track],
            contract.FEEDBACK: feedback,
            contract.ARTIST_ID: ids["artist"][self.catalog.track_artist[ev.track]],
        })


def _feedback_codes(label: np.ndarray) -> np.ndarray:
    """Index into contract.FEEDBACK_VALUES for each intended label."""
    codes = np.zeros(label.shape, dtype=np.int64)
    codes[label == contract.LABEL_IDS[contract.LIKE]] = contract.FEEDBACK_VALUES.index(contract.THUMB_UP)
    codes[label == contract.LABEL_IDS[contract.DISLIKE]] = contract.FEEDBACK_VALUES.index(contract.THUMB_DOWN)
    return codes


# --- Sampling helpers ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class WeightedGroups:
    """Weighted draws of a member within a group (tracks of a genre, artists of a genre), many at once."""

    order: np.ndarray  # members sorted by group
    cumulative: np.ndarray  # running weight in that order
    low: np.ndarray  # (n_groups,) running weight before each group
    total: np.ndarray  # (n_groups,) weight of each group
    start: np.ndarray  # (n_groups,) first position of each group in `order`
    stop: np.ndarray  # (n_groups,) one past the last

    @classmethod
    def build(cls, group_of: np.ndarray, weights: np.ndarray, n_groups: int) -> "WeightedGroups":
        order = np.argsort(group_of, kind="stable")
        cumulative = np.cumsum(weights[order])
        sizes = np.bincount(group_of, minlength=n_groups)
        if np.any(sizes == 0):
            raise ValueError("every group needs at least one member to draw from")
        stop = np.cumsum(sizes)
        start = stop - sizes
        low = np.where(start > 0, cumulative[np.maximum(start - 1, 0)], 0.0)
        total = cumulative[stop - 1] - low
        return cls(order, cumulative, low, total, start, stop)

    def sample(self, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        target = self.low[groups] + rng.random(len(groups)) * self.total[groups]
        position = np.searchsorted(self.cumulative, target, side="right")
        position = np.clip(position, self.start[groups], self.stop[groups] - 1)  # guards float round-off
        return self.order[position]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _assign_with_cover(n_items: int, n_bins: int, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bin per item, drawn by weight, with every bin used at least once (needs n_items >= n_bins)."""
    bins = np.empty(n_items, dtype=np.int64)
    bins[:n_bins] = np.arange(n_bins)
    bins[n_bins:] = rng.choice(n_bins, size=n_items - n_bins, p=weights / weights.sum())
    return rng.permutation(bins)


def _sample_rows(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per row of a (n, k) probability matrix."""
    cumulative = np.cumsum(probabilities, axis=1)
    draws = rng.random(len(probabilities))[:, None] * cumulative[:, -1:]
    return np.minimum((cumulative <= draws).sum(axis=1), probabilities.shape[1] - 1)


def _style_basis(dim: int, style_dims: int, rng: np.random.Generator) -> np.ndarray:
    """Orthonormal rows spanning the shared style subspace (mood, energy...) that cuts across genres."""
    q, _ = np.linalg.qr(rng.standard_normal((dim, style_dims)))
    return q.T


def _offsets(n: int, scale: float, style_basis: np.ndarray, style_share: float,
             rng: np.random.Generator) -> np.ndarray:
    """Gaussian offsets of expected length about `scale`, `style_share` of their variance in the style subspace.

    Offsets in a few shared directions make within-genre taste differences large enough to matter: a user
    whose style leans one way dislikes the tracks of their favourite genre that lean the other way.
    """
    style_dims, dim = style_basis.shape
    isotropic = rng.standard_normal((n, dim)) / np.sqrt(dim)
    style = rng.standard_normal((n, style_dims)) @ style_basis / np.sqrt(style_dims)
    return scale * (np.sqrt(style_share) * style + np.sqrt(1.0 - style_share) * isotropic)


# --- Catalog --------------------------------------------------------------------------------------------

def make_catalog(config: SimulationConfig, rng: np.random.Generator) -> Catalog:
    """Genres -> artists -> tracks as nested clusters, Zipf popularity, lognormal durations."""
    dim, n_genres, n_artists, n_tracks = config.latent_dim, config.genres, config.artist_count, config.tracks
    genre_centres = unit_rows(rng.standard_normal((n_genres, dim)))
    style = _style_basis(dim, config.style_dims, rng)
    genre_weights = rng.dirichlet(np.full(n_genres, 2.0))
    artist_genre = _assign_with_cover(n_artists, n_genres, genre_weights, rng)
    artist_offsets = _offsets(n_artists, config.artist_spread, style, config.style_share, rng)
    artist_vectors = genre_centres[artist_genre] + artist_offsets
    artist_weights = rng.lognormal(0.0, 1.0, n_artists)
    track_artist = _assign_with_cover(n_tracks, n_artists, artist_weights, rng)
    track_offsets = _offsets(n_tracks, config.track_spread, style, config.style_share, rng)
    track_vectors = artist_vectors[track_artist] + track_offsets
    ranks = rng.permutation(n_tracks) + 1
    weights = ranks.astype(np.float64) ** -config.zipf_exponent
    durations = rng.lognormal(np.log(config.track_ms_median), config.track_ms_sigma, n_tracks)
    track_ms = np.clip(np.round(durations), config.track_ms_min, config.track_ms_max).astype(np.int64)
    return Catalog(genre_centres, style, artist_genre, artist_vectors, track_artist, track_vectors,
                   weights / weights.sum(), track_ms)


# --- Users and stations ---------------------------------------------------------------------------------

def make_listeners(config: SimulationConfig, catalog: Catalog, rng: np.random.Generator) -> Listeners:
    """Tastes over genres, latent vectors, heavy-tailed activity and the skip-only minority."""
    n_users, n_genres = config.users, config.genres
    taste = rng.dirichlet(np.full(n_genres, config.taste_concentration), size=n_users)
    taste = np.nan_to_num(taste, nan=0.0)  # tiny concentrations can underflow a whole row
    empty = taste.sum(axis=1) == 0
    taste[empty, rng.integers(n_genres, size=int(empty.sum()))] = 1.0
    offsets = _offsets(n_users, config.user_noise, catalog.style_basis, config.style_share, rng)
    vectors = taste @ catalog.genre_centres + offsets
    activity = rng.lognormal(0.0, config.activity_sigma, n_users)
    plays = 1 + rng.multinomial(config.events - n_users, activity / activity.sum())
    skip_only = rng.random(n_users) < config.skip_only_share
    return Listeners(taste, vectors, activity, skip_only, plays.astype(np.int64))


def make_stations(config: SimulationConfig, catalog: Catalog, listeners: Listeners,
                  rng: np.random.Generator) -> Stations:
    """A few stations per user, each seeded by a favourite genre or the closest artist of one."""
    n_users = config.users
    count = np.minimum(1 + rng.poisson(config.stations_per_user - 1.0, n_users), config.max_stations_per_user)
    user = np.repeat(np.arange(n_users), count)
    first = np.cumsum(count) - count
    number = np.arange(len(user)) - first[user]
    genre = _sample_rows(listeners.taste[user] ** config.station_taste_power, rng)
    artist = np.full(len(user), -1, dtype=np.int64)
    by_artist = rng.random(len(user)) < config.artist_station_share
    artist[by_artist] = _closest_artist(config, catalog, listeners, user[by_artist], genre[by_artist], rng)
    return Stations(user, number, genre, artist, first, count)


def _closest_artist(config: SimulationConfig, catalog: Catalog, listeners: Listeners, users: np.ndarray,
                    genres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each (user, genre): of a few popularity-drawn artists of the genre, the one nearest the user."""
    artist_weight = np.bincount(catalog.track_artist, weights=catalog.popularity,
                                minlength=len(catalog.artist_genre))
    sampler = WeightedGroups.build(catalog.artist_genre, artist_weight, config.genres)
    k = config.seed_artist_candidates
    candidates = sampler.sample(np.repeat(genres, k), rng).reshape(len(genres), k)
    user_units = unit_rows(listeners.vectors[users])
    artist_units = unit_rows(catalog.artist_vectors)
    closeness = np.einsum("nd,nkd->nk", user_units, artist_units[candidates])
    return candidates[np.arange(len(genres)), np.argmax(closeness, axis=1)]


# --- Sessions and plays ---------------------------------------------------------------------------------

def _session_ids(config: SimulationConfig, user: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Session number per event (events sorted by user): geometric lengths, capped, at least `days` of them."""
    n = len(user)
    starts = rng.random(n) < 1.0 / config.session_plays_mean
    starts[0] = True
    starts[1:] |= user[1:] != user[:-1]
    session = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    position = np.arange(n) - first[session]
    starts |= (position % config.max_session_plays) == 0
    missing = config.days - int(starts.sum())
    if missing > 0:  # so every day can get a session of its own
        starts[rng.choice(np.flatnonzero(~starts), size=missing, replace=False)] = True
    return np.cumsum(starts) - 1


def _session_days(config: SimulationConfig, n_sessions: int, rng: np.random.Generator) -> np.ndarray:
    """A UTC day per session, uniform, with every day holding at least one session."""
    return _assign_with_cover(n_sessions, config.days, np.ones(config.days), rng)


def _session_stations(stations: Stations, session_user: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A station of the session's user; the first stations are favourites (k = floor(n * u^2))."""
    n_own = stations.count[session_user]
    k = np.minimum((n_own * rng.random(len(session_user)) ** 2).astype(np.int64), n_own - 1)
    return stations.first[session_user] + k


def _draw_tracks(config: SimulationConfig, catalog: Catalog, stations: Stations, station: np.ndarray,
                 rng: np.random.Generator, tail_rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Station programming: seed artist, else seed genre, else (exploration) the whole catalog.

    Tail exploration (uniform over the catalog) draws its tracks from `tail_rng`, and only when it is on, so
    a config without it consumes `rng` exactly as before (same seed, same bytes).
    """
    n = len(station)
    seed_artist = stations.artist[station]
    mode = rng.random(n)
    explore = mode < config.exploration_share
    tail = ~explore & (mode < config.exploration_share + config.tail_exploration_share)
    same_artist = ~explore & ~tail & (seed_artist >= 0) & (rng.random(n) < config.same_artist_share)
    in_genre = ~explore & ~tail & ~same_artist
    track = np.empty(n, dtype=np.int64)
    if tail.any():
        track[tail] = (tail_rng or rng).integers(config.tracks, size=int(tail.sum()))
    everyone = WeightedGroups.build(np.zeros(config.tracks, dtype=np.int64), catalog.popularity, 1)
    track[explore] = everyone.sample(np.zeros(int(explore.sum()), dtype=np.int64), rng)
    by_artist = WeightedGroups.build(catalog.track_artist, catalog.popularity, len(catalog.artist_genre))
    track[same_artist] = by_artist.sample(seed_artist[same_artist], rng)
    by_genre = WeightedGroups.build(catalog.track_genre, catalog.popularity, config.genres)
    track[in_genre] = by_genre.sample(stations.genre[station[in_genre]], rng)
    return track


def tail_scores(popularity: np.ndarray) -> np.ndarray:
    """ln(popularity rank) / ln(tracks) per track: 0 for the most popular, 1 for the least.

    On a log scale because familiarity does: the 10th and the 100th hit differ about as much to a listener
    as the 100th and the 1000th track.
    """
    n = len(popularity)
    if n < 2:
        return np.zeros(n)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-popularity, kind="stable")] = np.arange(1, n + 1)
    return np.log(rank) / np.log(n)


def _with_tail(logit: np.ndarray, weight: float, tail: Optional[np.ndarray]) -> np.ndarray:
    """`logit + weight x (tail - 0.5)`; the logit itself, untouched, when the weight is 0 (same bytes)."""
    if weight == 0.0 or tail is None:
        return logit
    return logit + weight * (tail - 0.5)


def draw_labels(config: SimulationConfig, affinity: np.ndarray, skip_only: np.ndarray,
                rng: np.random.Generator, tail: Optional[np.ndarray] = None) -> np.ndarray:
    """Intended label id per play: thumbs down, thumbs up, taste skip in turn; context skips override.

    `tail` is each play's track tail score (`tail_scores`); with the `*_tail_weight` settings it makes
    unfamiliar tracks more often disliked and skipped and less often liked.
    """
    n = len(affinity)
    dislike_logit = _with_tail(-config.dislike_slope * (affinity - config.dislike_center),
                               config.dislike_tail_weight, tail)
    like_logit = _with_tail(config.like_slope * (affinity - config.like_center), -config.like_tail_weight, tail)
    skip_logit = _with_tail(-config.skip_slope * (affinity - config.skip_center), config.skip_tail_weight, tail)
    p_dislike = config.dislike_max * _sigmoid(dislike_logit)
    p_like = config.like_max * _sigmoid(like_logit)
    p_skip = config.skip_max * _sigmoid(skip_logit)
    draws = rng.random((4, n))
    dislike = draws[0] < p_dislike
    like = ~dislike & (draws[1] < p_like)
    taste_skip = ~dislike & ~like & (draws[2] < p_skip)
    context_skip = draws[3] < config.context_skip_rate
    ids = contract.LABEL_IDS
    label = np.full(n, ids[contract.LISTEN], dtype=np.int64)
    label[taste_skip | (dislike & skip_only) | context_skip] = ids[contract.SKIP]
    label[like & ~skip_only & ~context_skip] = ids[contract.LIKE]
    label[dislike & ~skip_only & ~context_skip] = ids[contract.DISLIKE]
    return label


def draw_listen_ms(config: SimulationConfig, label: np.ndarray, track_ms: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """How long each play ran, consistent with `contract.label_ids` at the default thresholds."""
    n = len(label)
    ids = contract.LABEL_IDS
    skip_ms, fraction = contract.DEFAULT_SKIP_MS, contract.DEFAULT_SKIP_FRACTION
    listen = track_ms - np.minimum(rng.exponential(500.0, n).astype(np.int64), 2_000)  # whole track
    plays_on = (label == ids[contract.LISTEN]) | (label == ids[contract.LIKE])
    relative_floor = np.ceil(fraction * track_ms).astype(np.int64)
    floor = np.maximum(skip_ms, relative_floor)
    partial = plays_on & (rng.random(n) < config.partial_play_share) & (floor < track_ms - 1)
    listen[partial] = rng.integers(floor[partial], track_ms[partial] - 1)
    skip = label == ids[contract.SKIP]
    quick = np.clip(rng.lognormal(np.log(8_000.0), 0.8, n), MIN_LISTEN_MS, skip_ms - 1).astype(np.int64)
    listen[skip] = quick[skip]
    late = skip & (rng.random(n) < config.late_skip_share) & (relative_floor - 1 > skip_ms + MIN_LISTEN_MS)
    listen[late] = rng.integers(skip_ms, relative_floor[late] - 1)
    dislike = label == ids[contract.DISLIKE]
    short = np.clip(rng.lognormal(np.log(12_000.0), 0.7, n), MIN_LISTEN_MS, np.minimum(track_ms, 90_000))
    listen[dislike] = short[dislike].astype(np.int64)
    return listen


def _group_offsets(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Running sum of `values` within consecutive groups, excluding the current element."""
    running = np.cumsum(values) - values
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    sizes = np.diff(np.r_[starts, len(group)])
    return running - np.repeat(running[starts], sizes)


def _session_starts(config: SimulationConfig, session_user: np.ndarray, session_day: np.ndarray,
                    duration: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Start ms of each session: a user-day's sessions laid out in random order at random non-overlapping
    offsets; a user-day too full to fit them lets each session start anywhere it ends within the day."""
    n = len(duration)
    user_day = session_user.astype(np.int64) * config.days + session_day
    order = np.lexsort((rng.random(n), user_day))
    key, length = user_day[order], duration[order]
    totals = np.bincount(key, weights=length, minlength=config.users * config.days)[key]
    free = DAY_MS - 1 - totals
    uniforms = rng.random(n)
    offsets_sorted = uniforms[np.lexsort((uniforms, key))]  # sorted within each user-day (key is sorted)
    packed = np.floor(offsets_sorted * np.maximum(free, 0)) + _group_offsets(length, key)
    loose = np.floor(rng.random(n) * (DAY_MS - length))
    start_in_day = np.where(free >= 0, packed, loose).astype(np.int64)
    starts = np.empty(n, dtype=np.int64)
    starts[order] = config.start_ms + session_day[order] * DAY_MS + start_in_day
    overfull = int(len(np.unique(key[free < 0])))
    return starts, overfull


def make_events(config: SimulationConfig, catalog: Catalog, listeners: Listeners, stations: Stations,
                truth: GroundTruth, rng: np.random.Generator,
                tail_rng: Optional[np.random.Generator] = None) -> Events:
    """All plays: sessions, station programming, outcomes, listen times, timestamps.

    `tail_rng` draws the tail-exploration tracks (a stream of its own, so settings without them leave every
    other draw, and so the default log, unchanged).
    """
    user = np.repeat(np.arange(config.users), listeners.plays)
    session = _session_ids(config, user, rng)
    first_event = np.flatnonzero(np.r_[True, session[1:] != session[:-1]])
    session_user = user[first_event]
    session_day = _session_days(config, len(first_event), rng)
    session_station = _session_stations(stations, session_user, rng)
    station = session_station[session]
    track = _draw_tracks(config, catalog, stations, station, rng, tail_rng)
    affinity = truth.affinity_by_index(user, track)
    label = draw_labels(config, affinity, listeners.skip_only[user], rng, tail_scores(catalog.popularity)[track])
    listen_ms = draw_listen_ms(config, label, catalog.track_ms[track], rng)
    gap = np.clip(rng.exponential(config.gap_mean_ms, len(user)).astype(np.int64), 1, MAX_GAP_MS)
    step = listen_ms + gap
    within = _group_offsets(step, session)
    duration = np.bincount(session, weights=step).astype(np.int64)
    starts, overfull = _session_starts(config, session_user, session_day, duration, rng)
    timestamp = starts[session] + within
    return Events(user, station, track, session_day[session], timestamp, listen_ms, label, affinity, overfull)


# --- Ids and the whole run ------------------------------------------------------------------------------

def _ids(prefix: str, n: int) -> np.ndarray:
    width = len(str(max(n - 1, 0)))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(n)], dtype=object)


def _station_ids(user_ids: np.ndarray, stations: Stations) -> np.ndarray:
    return np.array([f"st-{user_ids[u]}-{k}" for u, k in zip(stations.user.tolist(), stations.number.tolist())],
                    dtype=object)


def generate(config: SimulationConfig) -> Simulation:
    """The whole simulated world and its log, in memory; deterministic in `config.seed`."""
    # The fifth stream is only drawn from by settings that are off by default (tail exploration); spawned
    # children do not depend on how many siblings follow them, so the first four are what they always were.
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(5)]
    catalog = make_catalog(config, streams[0])
    listeners = make_listeners(config, catalog, streams[1])
    stations = make_stations(config, catalog, listeners, streams[2])
    ids = {"user": _ids("u", config.users), "track": _ids("t", config.tracks),
           "artist": _ids("a", config.artist_count), "genre": _ids("genre-", config.genres)}
    ids["station"] = _station_ids(ids["user"], stations)
    truth = GroundTruth(
        user_ids=ids["user"].astype(str), user_vectors=listeners.vectors, user_taste=listeners.taste,
        track_ids=ids["track"].astype(str), track_vectors=catalog.track_vectors,
        artist_ids=ids["artist"].astype(str), artist_vectors=catalog.artist_vectors,
        genre_ids=ids["genre"].astype(str), genre_centres=catalog.genre_centres)
    events = make_events(config, catalog, listeners, stations, truth, streams[3], tail_rng=streams[4])
    return Simulation(config, ids, catalog, listeners, stations, events, truth)


def catalog_frame(simulation: Simulation) -> pd.DataFrame:
    """Catalog rows: track_id, artist_id, genre, popularity (global sampling weight, sums to 1)."""
    catalog, ids = simulation.catalog, simulation.ids
    return pd.DataFrame({
        contract.TRACK_ID: ids["track"],
        contract.ARTIST_ID: ids["artist"][catalog.track_artist],
        GENRE: ids["genre"][catalog.track_genre],
        POPULARITY: catalog.popularity,
    })


def _extra_truth_tables(simulation: Simulation) -> dict[str, pd.DataFrame]:
    """Per-user and per-station facts (skip-only flag, activity, station seeds) for slicing evaluations."""
    ids, listeners, stations = simulation.ids, simulation.listeners, simulation.stations
    users = pd.DataFrame({contract.USER_ID: ids["user"], "skip_only": listeners.skip_only.astype(int),
                          "activity": listeners.activity, "plays": listeners.plays,
                          "stations": stations.count})
    seed_artist = np.where(stations.artist >= 0, ids["artist"][np.maximum(stations.artist, 0)], "")
    station_table = pd.DataFrame({contract.STATION_ID: ids["station"],
                                  contract.USER_ID: ids["user"][stations.user],
                                  "seed_kind": np.where(stations.artist >= 0, "artist", "genre"),
                                  "seed_genre": ids["genre"][stations.genre], "seed_artist": seed_artist})
    return {"users.csv": users, "stations.csv": station_table}


def summarize(simulation: Simulation, frame: pd.DataFrame, written: dict[int, int]) -> dict[str, Any]:
    """Counts of the written log, labelled by the contract's own rule at default thresholds.

    `skip_only_users` counts users of the log with no thumbs at all and at least one skip (whether or not
    they were drawn as skip-only: light users may simply never have thumbed); `skip_only_configured_users`
    counts those drawn as never using thumbs.
    """
    labels = contract.label_ids(frame[contract.FEEDBACK].to_numpy(), frame[contract.LISTEN_MS].to_numpy(),
                                frame[contract.TRACK_MS].to_numpy())
    counts = np.bincount(labels, minlength=len(contract.LABELS))
    events, n_users = simulation.events, simulation.config.users  # frame rows are events, in order
    is_thumb = np.isin(labels, [contract.LABEL_IDS[contract.LIKE], contract.LABEL_IDS[contract.DISLIKE]])
    thumbs = np.bincount(events.user, weights=is_thumb, minlength=n_users)
    skips = np.bincount(events.user, weights=labels == contract.LABEL_IDS[contract.SKIP], minlength=n_users)
    n = len(frame)
    return {
        "events": n,
        "labels": {name: int(counts[i]) for i, name in enumerate(contract.LABELS)},
        "label_shares": {name: round(float(counts[i]) / n, 6) for i, name in enumerate(contract.LABELS)},
        "users": int(len(np.unique(events.user))),
        "tracks": int(len(np.unique(events.track))),
        "stations": int(len(np.unique(events.station))),
        "artists": int(len(np.unique(simulation.catalog.track_artist[events.track]))),
        "genres": simulation.config.genres,
        "catalog_tracks": simulation.config.tracks,
        "catalog_artists": simulation.config.artist_count,
        "skip_only_users": int(np.sum((thumbs == 0) & (skips > 0))),
        "skip_only_configured_users": int(simulation.listeners.skip_only.sum()),
        "overfull_user_days": events.overfull_user_days,
        "spans": {str(span): rows for span, rows in sorted(written.items())},
        "config": dataclasses.asdict(simulation.config),
    }


def _own_outputs(out_dir: pathlib.Path) -> list[pathlib.Path]:
    """What a previous run may have written here (all that --overwrite removes)."""
    names = {CATALOG_DIRNAME, GROUND_TRUTH_DIRNAME, SUMMARY_FILENAME}
    return sorted(p for p in out_dir.iterdir() if p.name in names or span_folders.is_span_folder_name(p.name))


def check_out_dir(out_dir: pathlib.Path, overwrite: bool) -> None:
    """Refuses to mix a new log with an earlier one unless told to replace it."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"--out {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"--out {out_dir} is not empty; pass --overwrite to replace a previous "
                              "simulation there, or choose another directory")


def clear_previous_outputs(out_dir: pathlib.Path) -> None:
    """Removes a previous run's spans, catalog, ground truth and summary; leaves anything else alone."""
    if not out_dir.is_dir():
        return
    for path in _own_outputs(out_dir):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def simulate(config: SimulationConfig, out_dir: pathlib.Path, overwrite: bool = False,
             progress: Optional[Progress] = None, preset: Optional[str] = None) -> dict[str, Any]:
    """Generates and writes spans, catalog, ground truth and summary.json; returns the summary.

    `preset` only names, in the summary, the preset the config came from (None: not said).
    """
    say = progress or (lambda message: None)
    began = time.perf_counter()
    out_dir = pathlib.Path(out_dir)
    check_out_dir(out_dir, overwrite)
    clear_previous_outputs(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    simulation = generate(config)
    frame = simulation.frame()
    say(f"generated {len(frame)} plays of {config.users} users ({len(simulation.ids['station'])} stations) "
        f"over {config.tracks} tracks in {time.perf_counter() - began:.1f} s")
    written = spans.write_spans(frame, out_dir, config.file_format, spans=simulation.events.day + 1)
    say(f"wrote {len(written)} spans ({config.file_format}) under {out_dir}: "
        f"{span_folders.folder_name(1)} .. {span_folders.folder_name(max(written))}")
    (out_dir / CATALOG_DIRNAME).mkdir()
    catalog_frame(simulation).to_csv(out_dir / CATALOG_DIRNAME / CATALOG_FILENAME, index=False)
    truth_dir = out_dir / GROUND_TRUTH_DIRNAME
    simulation.truth.save(truth_dir)
    for name, table in _extra_truth_tables(simulation).items():
        table.to_csv(truth_dir / name, index=False)
    say(f"wrote {out_dir / CATALOG_DIRNAME / CATALOG_FILENAME} and {truth_dir}/")
    summary = summarize(simulation, frame, written)
    summary["preset"] = preset
    summary["seconds"] = round(time.perf_counter() - began, 3)
    (out_dir / SUMMARY_FILENAME).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return summary


# --- CLI ------------------------------------------------------------------------------------------------

_GROUP_TITLES = {"size": "size and output", "catalog": "catalog (latent space, popularity, durations)",
                 "users": "users", "stations": "stations (what gets played)", "sessions": "sessions and time",
                 "outcomes": "outcomes (logistic in affinity = cosine(user, track))"}


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from SimulationConfig, so every knob has exactly one default and help text."""
    parser = argparse.ArgumentParser(
        prog="python -m listening_logs.simulate",
        usage="%(prog)s --out DIR [--preset {" + ",".join(presets.PRESETS) + "}] [--users N] [--tracks M] "
              "[--events E] [--days D] [--seed S] [--format {csv,parquet}] [--overwrite] [behaviour flags below]",
        description=__doc__.split("\n\n")[0],
        epilog="Writes DIR/span-N/events.<format> (day N-1), DIR/catalog/tracks.csv (popularity = the track's "
               "global sampling weight, summing to 1), DIR/ground_truth/ (query it with "
               "`python -m listening_logs.ground_truth`) and DIR/summary.json. Defaults shown are the default "
               "preset's; a flag given explicitly overrides the chosen preset's value.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, type=pathlib.Path, metavar="DIR",
                        help="output directory (created if missing; must be empty unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the spans, catalog, ground truth and summary of an earlier run in DIR")
    parser.add_argument("--preset", choices=sorted(presets.PRESETS), default=presets.DEFAULT,
                        help="named settings, overridden by any flag given explicitly: "
                             + "; ".join(presets.describe(name) for name in presets.PRESETS))
    groups = {key: parser.add_argument_group(title) for key, title in _GROUP_TITLES.items()}
    for field in dataclasses.fields(SimulationConfig):
        meta = field.metadata
        flag = meta.get("flag", "--" + field.name.replace("_", "-"))
        extra = {"choices": meta["choices"]} if "choices" in meta else {}
        # SUPPRESS keeps flags the user did not give out of the namespace, so only explicit ones beat a preset.
        groups[meta["group"]].add_argument(flag, dest=field.name, type=type(field.default),
                                           default=argparse.SUPPRESS,
                                           help=f"{meta['help']} (default: {field.default})", **extra)
    return parser


def preset_config(name: str = presets.DEFAULT, **overrides: Any) -> SimulationConfig:
    """The config of a named preset (`listening_logs.presets`), with `overrides` applied on top.

    Raises ValueError for an unknown preset or field name, and for any nonsense value.
    """
    values = {**presets.overrides(name), **overrides}
    known = {field.name for field in dataclasses.fields(SimulationConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown simulation settings {unknown} (preset {name!r}); valid ones are the "
                         "SimulationConfig fields listed by --help")
    return SimulationConfig(**values)


def config_from_args(args: argparse.Namespace) -> SimulationConfig:
    """The config named by parsed flags: the preset (default: `default`) with every flag present applied.

    Raises ValueError listing every nonsense value.
    """
    names = [field.name for field in dataclasses.fields(SimulationConfig)]
    given = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return preset_config(getattr(args, "preset", presets.DEFAULT), **given)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        check_out_dir(args.out, args.overwrite)
    except (ValueError, FileExistsError) as error:
        parser.error(str(error))  # exits 2 with the message
    progress = lambda message: print(f"simulate: {message}", file=sys.stderr, flush=True)  # noqa: E731
    summary = simulate(config, args.out, overwrite=args.overwrite, progress=progress, preset=args.preset)
    shares = ", ".join(f"{name} {share:.1%}" for name, share in summary["label_shares"].items())
    print(f"simulate: {summary['events']} events, {summary['users']} users, {summary['tracks']} tracks played, "
          f"{summary['stations']} stations, {len(summary['spans'])} spans -> {args.out} "
          f"in {summary['seconds']:.1f} s")
    print(f"simulate: preset {args.preset}; labels {shares}; skip-only users {summary['skip_only_users']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
