"""Shared fixtures: small hand-made logs in the contract, written as daily spans."""
from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest

from listening_logs import spans
from schema import contract

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
HEAVY_MODULES = ("tensorflow", "tfx", "apache_beam", "tensorflow_transform")


def heavy_modules_loaded_by(modules: str) -> list[str]:
    """Which of HEAVY_MODULES a fresh interpreter has loaded after `import <modules>` (comma-separated)."""
    probe = (f"import sys, {modules}; "
             f"print(','.join(name for name in {HEAVY_MODULES!r} if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [name for name in result.stdout.strip().split(",") if name]
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


TRAINED_SETTINGS = ["spans=1-7", "positive_policy=like+listen", "epochs=4", "patience=4", "num_random_negatives=32"]
"""like+listen gives ~19k training examples on the trained pipeline's log: enough for the towers to learn
tastes, so comparisons with most-popular are about the model, not about luck in the order Beam wrote examples."""


@dataclasses.dataclass(frozen=True)
class TrainedPipeline:
    """One full pipeline run (through the Pushers) shared by the training, evaluator and serving tests."""

    workdir: pathlib.Path
    settings: list[str]
    result: Any

    @property
    def data(self) -> pathlib.Path:
        return self.workdir / "data"

    @property
    def root(self) -> pathlib.Path:
        return self.workdir / "root"


PIPELINE_FIXTURES = frozenset({"trained_pipeline", "hand_log_run"})
"""Fixtures that run a real pipeline: a test using one must carry the `pipeline` marker, which `make check` leaves out."""


LONGEST_GROUPS_FIRST = ("trained_pipeline", "test_experiments.py", "test_scheduled_runs.py", "hand_log_run",
                        "test_pipeline_stage.py")
"""Work groups that take minutes, longest first (measured on an idle 2-core machine): under `pytest -n 2 --dist
loadgroup --no-loadscope-reorder` (the Makefile) they start first, so the two workers end at about the same time.
Every other group follows in collection order."""


def work_group(item: pytest.Item) -> str:
    """A test's xdist group: the shared pipeline fixture it uses (so that fixture runs once, on one worker), else its
    module (so the module's own fixtures run once)."""
    shared = sorted(PIPELINE_FIXTURES & set(getattr(item, "fixturenames", ())))
    if len(shared) > 1:
        raise pytest.UsageError(f"{item.nodeid} uses two shared pipeline fixtures {shared}; tests/conftest.py puts "
                                "a test in one xdist group")
    return shared[0] if shared else item.path.name


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuses a test that uses a pipeline fixture without the `pipeline` marker (it would slow `make check` down);
    marks every test with its work group and puts the LONGEST_GROUPS_FIRST first."""
    unmarked = [item.nodeid for item in items
                if PIPELINE_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("pipeline") is None]
    if unmarked:
        raise pytest.UsageError("these tests run a pipeline through a shared fixture but are not marked "
                                "@pytest.mark.pipeline:\n  " + "\n  ".join(unmarked))
    groups = {item.nodeid: work_group(item) for item in items}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(groups[item.nodeid]))
    rank = {group: index for index, group in enumerate(LONGEST_GROUPS_FIRST)}
    # A stable sort: within a group, tests stay in collection order (a module's tests together).
    items.sort(key=lambda item: rank.get(groups[item.nodeid], len(rank)))


@pytest.fixture(scope="session")
def trained_pipeline(tmp_path_factory) -> TrainedPipeline:
    from listening_logs import simulate
    from pipeline import configs, local_runner

    workdir = tmp_path_factory.mktemp("trained_pipeline")
    simulate.simulate(simulate.SimulationConfig(users=400, tracks=3000, events=40_000, days=7, seed=7), workdir / "data")
    config = configs.with_overrides(configs.PipelineConfig(), TRAINED_SETTINGS)
    return TrainedPipeline(workdir, TRAINED_SETTINGS, local_runner.run(workdir / "data", workdir / "root", config))


@pytest.fixture(scope="session")
def hand_log_run(tmp_path_factory):
    """The whole pipeline, in-process, on tests/hand_log_runs.py's hand-written log: read by the labelling tests and
    the portable runner's comparison (one run instead of one per module)."""
    from pipeline import configs, local_runner
    from tests import hand_log_runs

    tmp = tmp_path_factory.mktemp("hand_log_run")
    spans.write_spans(hand_log_runs.hand_log(), tmp / "data")
    config = configs.with_overrides(configs.PipelineConfig(), hand_log_runs.SETTINGS)
    return local_runner.run(tmp / "data", tmp / "root", config)
