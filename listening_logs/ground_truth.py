"""The latent truth behind a simulated log: where every user and track sits in taste space.

The simulator (`listening_logs.simulate`) places genres, artists, tracks and users in one latent space and
draws each play's outcome from the *affinity* of the pair: the cosine between the user's and the track's
latent vectors. This module owns that definition (`GroundTruth.affinity_by_index`) and the on-disk format,
so the simulator and anyone judging a model against the truth compute the very same numbers.

Layout of a ground-truth directory (plain `.npy` and text, so identical inputs give identical bytes):
    user_ids.txt, user_vectors.npy, user_taste.npy   one line / row per user; taste is a genre distribution
    track_ids.txt, track_vectors.npy                 one line / row per track
    artist_ids.txt, artist_vectors.npy
    genre_ids.txt, genre_centres.npy

CLI: `python -m listening_logs.ground_truth --dir DIR --user U --track T [--track T2 ...]` prints the
affinity of each (U, T) pair; DIR may be the simulation directory or its `ground_truth/` folder.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import pathlib
import sys
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import pandas as pd

GROUND_TRUTH_DIRNAME = "ground_truth"
_ID_FILES = {"user_ids": "user_ids.txt", "track_ids": "track_ids.txt", "artist_ids": "artist_ids.txt",
             "genre_ids": "genre_ids.txt"}
_ARRAY_FILES = {"user_vectors": "user_vectors.npy", "user_taste": "user_taste.npy",
                "track_vectors": "track_vectors.npy", "artist_vectors": "artist_vectors.npy",
                "genre_centres": "genre_centres.npy"}

Ids = Union[Sequence[str], np.ndarray, pd.Series]


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, so a row-wise dot product is a cosine."""
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("a latent vector has length 0; its cosine affinity is undefined")
    return vectors / norms


def pair_affinity(user_units: np.ndarray, track_units: np.ndarray) -> np.ndarray:
    """Cosine of each (user, track) row pair: the one affinity formula the simulator draws outcomes from."""
    return np.einsum("ij,ij->i", user_units, track_units)


def _write_ids(path: pathlib.Path, ids: np.ndarray) -> None:
    path.write_text("".join(f"{value}\n" for value in ids), encoding="utf-8")


def _read_ids(path: pathlib.Path) -> np.ndarray:
    return np.array(path.read_text(encoding="utf-8").splitlines(), dtype=str)


def _indexer(known: np.ndarray, wanted: Ids, kind: str) -> np.ndarray:
    """Positions of `wanted` ids in `known`; unknown ids are an error, never a silent -1."""
    wanted = np.asarray(wanted, dtype=str)
    positions = pd.Index(known).get_indexer(wanted)
    if np.any(positions < 0):
        unknown = sorted(set(wanted[positions < 0].tolist()))
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise KeyError(f"{len(unknown)} unknown {kind} id(s): {shown}")
    return positions


@dataclasses.dataclass(frozen=True, eq=False)
class GroundTruth:
    """Latent vectors of every user, track, artist and genre of one simulation."""

    user_ids: np.ndarray
    user_vectors: np.ndarray
    user_taste: np.ndarray
    track_ids: np.ndarray
    track_vectors: np.ndarray
    artist_ids: np.ndarray
    artist_vectors: np.ndarray
    genre_ids: np.ndarray
    genre_centres: np.ndarray

    def __post_init__(self) -> None:
        pairs = [("user", self.user_ids, self.user_vectors), ("user taste", self.user_ids, self.user_taste),
                 ("track", self.track_ids, self.track_vectors), ("artist", self.artist_ids, self.artist_vectors),
                 ("genre", self.genre_ids, self.genre_centres)]
        for kind, ids, rows in pairs:
            if len(ids) != len(rows):
                raise ValueError(f"{len(ids)} {kind} ids but {len(rows)} {kind} rows")

    @functools.cached_property
    def _user_units(self) -> np.ndarray:
        return unit_rows(self.user_vectors)

    @functools.cached_property
    def _track_units(self) -> np.ndarray:
        return unit_rows(self.track_vectors)

    def affinity_by_index(self, user_index: np.ndarray, track_index: np.ndarray) -> np.ndarray:
        """Affinity of elementwise (user, track) pairs given as row positions (what the simulator calls)."""
        return pair_affinity(self._user_units[user_index], self._track_units[track_index])

    def affinity(self, user_ids: Ids, track_ids: Ids) -> np.ndarray:
        """Affinity (cosine in [-1, 1]) of elementwise (user, track) id pairs; raises KeyError on unknown ids."""
        users = _indexer(self.user_ids, user_ids, "user")
        tracks = _indexer(self.track_ids, track_ids, "track")
        if users.shape != tracks.shape:
            raise ValueError(f"{users.size} user ids but {tracks.size} track ids: pairs are elementwise")
        return self.affinity_by_index(users, tracks)

    def user_vector(self, user_id: str) -> np.ndarray:
        return self.user_vectors[_indexer(self.user_ids, [user_id], "user")[0]]

    def track_vector(self, track_id: str) -> np.ndarray:
        return self.track_vectors[_indexer(self.track_ids, [track_id], "track")[0]]

    def save(self, directory: pathlib.Path) -> None:
        """Writes the layout in the module docstring (byte-identical for identical contents)."""
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for field, name in _ID_FILES.items():
            _write_ids(directory / name, getattr(self, field))
        for field, name in _ARRAY_FILES.items():
            np.save(directory / name, np.ascontiguousarray(getattr(self, field), dtype=np.float64))

    @classmethod
    def load(cls, directory: Union[str, pathlib.Path]) -> "GroundTruth":
        """Reads a ground-truth folder, or the simulation folder that holds one."""
        directory = resolve_dir(pathlib.Path(directory))
        ids = {field: _read_ids(directory / name) for field, name in _ID_FILES.items()}
        arrays = {field: np.load(directory / name, allow_pickle=False) for field, name in _ARRAY_FILES.items()}
        return cls(**ids, **arrays)


def resolve_dir(directory: pathlib.Path) -> pathlib.Path:
    """The ground-truth folder itself, given either it or the simulation folder above it."""
    nested = directory / GROUND_TRUTH_DIRNAME
    candidate = nested if nested.is_dir() else directory
    if not (candidate / _ID_FILES["user_ids"]).is_file():
        raise FileNotFoundError(f"no ground truth in {directory} (expected {_ID_FILES['user_ids']} there "
                                f"or under {GROUND_TRUTH_DIRNAME}/); run listening_logs.simulate first")
    return candidate


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m listening_logs.ground_truth",
        description="Print the true affinity (cosine of latent vectors, in [-1, 1]) that the simulator used "
                    "to draw the outcomes of plays of TRACK by USER.")
    parser.add_argument("--dir", required=True, type=pathlib.Path,
                        help="simulation output folder (or its ground_truth/ folder)")
    parser.add_argument("--user", required=True, help="a user_id from the simulated log")
    parser.add_argument("--track", required=True, action="append",
                        help="a track_id from the catalog; repeat for several tracks")
    return parser


def main(argv: Optional[Iterable[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        truth = GroundTruth.load(args.dir)
        values = truth.affinity([args.user] * len(args.track), args.track)
    except (FileNotFoundError, KeyError) as error:
        parser.error(str(error).strip("'\""))
    for track, value in zip(args.track, values):
        print(f"{args.user}\t{track}\t{value:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
