"""Shared fixtures: small hand-made logs in the contract, written as daily spans."""
from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd
import pytest

from listening_logs import spans
from schema import contract

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DAY0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def random_log(rows: int, days: int, seed: int = 0) -> pd.DataFrame:
    """Valid plays spread over `days` UTC days, with every optional column sometimes empty."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            contract.USER_ID: [f"u{i}" for i in rng.integers(0, 40, rows)],
            contract.TRACK_ID: [f"t{i}" for i in rng.integers(0, 200, rows)],
            contract.STATION_ID: [f"st{i}" if i % 3 else "" for i in rng.integers(0, 9, rows)],
            contract.TIMESTAMP_MS: DAY0_MS + rng.integers(0, days * spans.DAY_MS, rows),
            contract.LISTEN_MS: rng.integers(0, 300_000, rows),
            contract.TRACK_MS: rng.integers(120_000, 360_000, rows),
            contract.FEEDBACK: rng.choice(list(contract.FEEDBACK_VALUES), rows, p=[0.9, 0.07, 0.03]),
            contract.ARTIST_ID: "",
        }
    )


@pytest.fixture
def three_day_log(tmp_path: pathlib.Path) -> tuple[pathlib.Path, dict[int, int]]:
    """A CSV log of three daily spans; returns its folder and the rows per span."""
    data = tmp_path / "data"
    written = spans.write_spans(random_log(900, days=3), data)
    return data, written
