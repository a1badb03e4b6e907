"""The demo's last step: serve the pushed model on loopback and ask it for one simulated listener.

Real parts only: `python -m serving.server` as its own process over the Pusher's directory, the gRPC client of
`serving.client`, then SIGTERM. With the simulator's ground truth the answer is also judged: the true affinity
of the recommended tracks against that of the whole catalog.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Optional

import numpy as np
import pandas as pd

from listening_logs import ground_truth
from schema import contract, span_folders
from serving.client import RecommendationClient
from serving.process import ServerProcess

SHOWN = 10


@dataclasses.dataclass(frozen=True)
class Listener:
    user_id: str
    history: list[tuple[str, str]]
    """(track id, label name), oldest first: the listener's most recent plays."""


def read_log(data_dir: pathlib.Path) -> pd.DataFrame:
    files = sorted(data_dir.glob(f"{span_folders.GLOB}/*.csv"))
    if not files:
        raise FileNotFoundError(f"no span CSV files under {data_dir}")
    return pd.concat([pd.read_csv(path, dtype={contract.USER_ID: str, contract.TRACK_ID: str},
                                  keep_default_na=False) for path in files], ignore_index=True)


def keenest_listener(log: pd.DataFrame, max_history: int) -> Listener:
    """The listener with the most thumbs up (the clearest taste to judge), and their newest plays with labels."""
    likes = log[log[contract.FEEDBACK] == contract.THUMB_UP][contract.USER_ID].value_counts()
    user = likes.index[0] if len(likes) else log[contract.USER_ID].value_counts().index[0]
    plays = log[log[contract.USER_ID] == user].sort_values(contract.TIMESTAMP_MS).tail(max_history)
    numeric = {column: pd.to_numeric(plays[column], errors="coerce") for column in (contract.LISTEN_MS, contract.TRACK_MS)}
    labels = contract.label_ids(plays[contract.FEEDBACK].to_numpy(), numeric[contract.LISTEN_MS].to_numpy(),
                                numeric[contract.TRACK_MS].to_numpy())
    return Listener(user, [(track, contract.LABELS[label]) for track, label in zip(plays[contract.TRACK_ID], labels)])


def true_affinity(data_dir: pathlib.Path, user: str, groups: dict[str, list[str]]) -> Optional[dict[str, float]]:
    """Mean ground-truth affinity of each group of tracks for `user`, when the log is simulated."""
    if not (data_dir / ground_truth.GROUND_TRUTH_DIRNAME).is_dir():
        return None
    truth = ground_truth.GroundTruth.load(data_dir)
    return {name: float(np.mean(truth.affinity([user] * len(tracks), tracks))) for name, tracks in groups.items() if tracks}


def ask(serving_dir: pathlib.Path, model_name: str, listener: Listener, log_path: pathlib.Path,
        k: int = SHOWN) -> dict[str, Any]:
    """Starts the server on the pushed versions, waits for them, asks once over gRPC, stops it (SIGTERM)."""
    with ServerProcess(["--model_name", model_name, "--model_base_path", str(serving_dir / model_name)],
                       log_path, rest=False) as server:
        server.wait_for_ports()
        server.wait_for_available(model_name)
        with RecommendationClient(server.target, model_name, timeout_s=30.0) as client:
            answer = client.recommend(listener.history, k=k)
        answer["server_exit_code"] = server.stop()
    return answer
