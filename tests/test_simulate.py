"""Behaviour of the listening-log simulator and its ground truth, on small logs written to tmp_path."""
from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from listening_logs import ground_truth, simulate, spans
from listening_logs.ground_truth import GroundTruth
from listening_logs.simulate import SimulationConfig
from schema import contract, span_folders

PROJECT = pathlib.Path(__file__).resolve().parents[1]
SMALL = SimulationConfig(users=300, tracks=2_000, events=30_000, days=3, seed=7)
TINY = SimulationConfig(users=40, tracks=300, events=2_000, days=2, seed=3)
LABEL = contract.LABEL_IDS


def read_log(out: pathlib.Path, fmt: str = "csv") -> pd.DataFrame:
    """All spans as text, the way an ingesting job sees them, with the span number of each row."""
    parts = []
    for path in sorted(out.glob(f"{span_folders.GLOB}/{spans.EVENTS_STEM}.{fmt}")):
        part = (pd.read_csv(path, dtype=str, keep_default_na=False) if fmt == "csv"
                else pd.read_parquet(path))
        part["span"] = span_folders.number_of(path.parent.name)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def labels_of(log: pd.DataFrame) -> np.ndarray:
    return contract.label_ids(log[contract.FEEDBACK].to_numpy(), log[contract.LISTEN_MS].astype(float).to_numpy(),
                              log[contract.TRACK_MS].astype(float).to_numpy())


def file_bytes(out: pathlib.Path) -> dict[str, bytes]:
    """Every output file except summary.json, by relative path."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != simulate.SUMMARY_FILENAME}


def summary_without_seconds(out: pathlib.Path) -> dict:
    summary = json.loads((out / simulate.SUMMARY_FILENAME).read_text())
    summary.pop("seconds")
    return summary


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, dict]:
    out = tmp_path_factory.mktemp("small") / "sim"
    return out, simulate.simulate(SMALL, out)


@pytest.fixture(scope="module")
def small_log(small_run: tuple[pathlib.Path, dict]) -> pd.DataFrame:
    return read_log(small_run[0])


@pytest.fixture(scope="module")
def small_sim() -> simulate.Simulation:
    return simulate.generate(SMALL)


# --- Determinism ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", spans.FORMATS)
def test_same_seed_gives_identical_files(tmp_path: pathlib.Path, fmt: str) -> None:
    config = dataclasses.replace(TINY, file_format=fmt)
    simulate.simulate(config, tmp_path / "a")
    simulate.simulate(config, tmp_path / "b")
    first, second = file_bytes(tmp_path / "a"), file_bytes(tmp_path / "b")
    assert f"{span_folders.folder_name(1)}/{spans.EVENTS_STEM}.{fmt}" in first
    assert first == second
    assert summary_without_seconds(tmp_path / "a") == summary_without_seconds(tmp_path / "b")


def test_different_seeds_give_different_logs(tmp_path: pathlib.Path) -> None:
    simulate.simulate(TINY, tmp_path / "a")
    simulate.simulate(dataclasses.replace(TINY, seed=TINY.seed + 1), tmp_path / "b")
    first, second = file_bytes(tmp_path / "a"), file_bytes(tmp_path / "b")
    span_files = [name for name in first if span_folders.is_span_folder_name(name.split("/")[0])]
    assert span_files and all(first[name] != second.get(name) for name in span_files)


# --- Labels ---------------------------------------------------------------------------------------------

def test_label_shares_within_targets(small_run: tuple[pathlib.Path, dict]) -> None:
    shares = small_run[1]["label_shares"]
    for name, (low, high) in simulate.TARGET_LABEL_SHARES.items():
        assert low <= shares[name] <= high, f"{name} share {shares[name]} outside [{low}, {high}]"


def test_summary_counts_are_the_contract_labels_of_the_written_files(small_run, small_log) -> None:
    summary = small_run[1]
    counts = np.bincount(labels_of(small_log), minlength=len(contract.LABELS))
    assert summary["labels"] == {name: int(counts[i]) for i, name in enumerate(contract.LABELS)}
    assert summary["events"] == len(small_log) == SMALL.events
    assert summary["users"] == small_log[contract.USER_ID].nunique() == SMALL.users
    assert summary["stations"] == small_log[contract.STATION_ID].nunique()
    assert summary["tracks"] == small_log[contract.TRACK_ID].nunique()
    assert summary["config"] == dataclasses.asdict(SMALL)


def test_listen_times_encode_the_intended_outcome(small_sim: simulate.Simulation) -> None:
    frame = small_sim.frame()
    assert np.array_equal(labels_of(frame), small_sim.events.label)


def test_listen_times_are_realistic(small_log: pd.DataFrame) -> None:
    labels = labels_of(small_log)
    listen = small_log[contract.LISTEN_MS].astype(int).to_numpy()
    track = small_log[contract.TRACK_MS].astype(int).to_numpy()
    skips = listen[labels == LABEL[contract.SKIP]]
    assert skips.min() >= simulate.MIN_LISTEN_MS
    assert 0.8 <= np.mean(skips < contract.DEFAULT_SKIP_MS) < 1.0  # mostly quick, a few late skips
    assert np.median(listen[labels == LABEL[contract.DISLIKE]]) < contract.DEFAULT_SKIP_MS
    played = labels == LABEL[contract.LISTEN]
    assert np.mean(listen[played] >= track[played] - 2_000) > 0.9  # mostly the whole track
    assert np.all(listen <= track)
    assert 150_000 <= np.median(track) <= 270_000
    assert small_log.groupby(contract.TRACK_ID)[contract.TRACK_MS].nunique().max() == 1


# --- Latent structure -----------------------------------------------------------------------------------

def test_disliked_tracks_are_close_to_liked_ones(small_run, small_log) -> None:
    """Hard negatives: a user's disliked tracks sit nearer their liked tracks than random catalog tracks."""
    truth = GroundTruth.load(small_run[0])
    units = ground_truth.unit_rows(truth.track_vectors)
    row = pd.Series(np.arange(len(truth.track_ids)), index=truth.track_ids)
    labels = labels_of(small_log)
    random_tracks = units[np.random.default_rng(0).integers(len(units), size=500)]
    disliked_closeness, random_closeness = [], []
    for _, plays in small_log.assign(label=labels).groupby(contract.USER_ID):
        liked = row[plays.loc[plays.label == LABEL[contract.LIKE], contract.TRACK_ID]].to_numpy()
        disliked = row[plays.loc[plays.label == LABEL[contract.DISLIKE], contract.TRACK_ID]].to_numpy()
        if len(liked) == 0 or len(disliked) == 0:
            continue
        centroid = units[liked].mean(axis=0)
        centroid /= np.linalg.norm(centroid)
        disliked_closeness.append(np.mean(units[disliked] @ centroid))
        random_closeness.append(np.mean(random_tracks @ centroid))
    disliked_closeness, random_closeness = np.array(disliked_closeness), np.array(random_closeness)
    assert len(disliked_closeness) >= 50
    assert disliked_closeness.mean() > random_closeness.mean() + 0.15
    assert np.mean(disliked_closeness > random_closeness) > 0.7


def test_affinity_orders_the_outcomes(small_run, small_log) -> None:
    truth = GroundTruth.load(small_run[0])
    affinity = truth.affinity(small_log[contract.USER_ID], small_log[contract.TRACK_ID])
    labels = labels_of(small_log)
    mean = {name: affinity[labels == LABEL[name]].mean() for name in contract.LABELS}
    assert mean[contract.LIKE] > mean[contract.LISTEN] > mean[contract.SKIP] > mean[contract.DISLIKE]


def test_ground_truth_affinity_is_exactly_what_the_simulator_used(small_run, small_sim) -> None:
    truth = GroundTruth.load(small_run[0])
    frame = small_sim.frame()
    affinity = truth.affinity(frame[contract.USER_ID].to_numpy(), frame[contract.TRACK_ID].to_numpy())
    assert np.array_equal(affinity, small_sim.events.affinity)
    user, track = frame[contract.USER_ID].iloc[0], frame[contract.TRACK_ID].iloc[0]
    u, t = truth.user_vector(user), truth.track_vector(track)
    assert u.shape == t.shape == (SMALL.latent_dim,)
    assert affinity[0] == pytest.approx(u @ t / np.linalg.norm(u) / np.linalg.norm(t))


def test_ground_truth_rejects_unknown_ids(small_run) -> None:
    truth = GroundTruth.load(small_run[0] / ground_truth.GROUND_TRUTH_DIRNAME)
    with pytest.raises(KeyError, match="unknown track"):
        truth.affinity([truth.user_ids[0]], ["no-such-track"])
    with pytest.raises(KeyError, match="unknown user"):
        truth.user_vector("no-such-user")


def test_popularity_and_activity_are_heavy_tailed(small_log, small_run) -> None:
    catalog = pd.read_csv(small_run[0] / simulate.CATALOG_DIRNAME / simulate.CATALOG_FILENAME)
    head = catalog.nlargest(len(catalog) // 10, simulate.POPULARITY)[contract.TRACK_ID]
    assert small_log[contract.TRACK_ID].isin(head).mean() > 0.35  # top 10% of tracks: > 35% of plays
    plays_per_user = small_log[contract.USER_ID].value_counts()
    assert plays_per_user.nlargest(len(plays_per_user) // 10).sum() / len(small_log) > 0.25
    assert plays_per_user.max() > 5 * plays_per_user.median()


# --- Users, stations, sessions --------------------------------------------------------------------------

def test_skip_only_users_exist_and_never_use_thumbs(small_run, small_log) -> None:
    users = pd.read_csv(small_run[0] / ground_truth.GROUND_TRUTH_DIRNAME / "users.csv")
    skip_only = set(users.loc[users.skip_only == 1, contract.USER_ID])
    assert 0.15 * SMALL.users <= len(skip_only) <= 0.35 * SMALL.users
    labels = pd.Series(labels_of(small_log), index=small_log.index)
    theirs = small_log[contract.USER_ID].isin(skip_only)
    assert (small_log.loc[theirs, contract.FEEDBACK] == contract.NO_FEEDBACK).all()
    assert (labels[theirs] == LABEL[contract.SKIP]).sum() > 0
    assert small_run[1]["skip_only_users"] >= len(skip_only) - 5  # nearly all of them do skip
    assert (labels[~theirs] == LABEL[contract.DISLIKE]).sum() > 0


def test_stations_belong_to_one_user(small_log: pd.DataFrame) -> None:
    owners = small_log.groupby(contract.STATION_ID)[contract.USER_ID].agg(["nunique", "first"])
    assert (owners["nunique"] == 1).all()
    assert all(station.startswith(f"st-{user}-") for station, user in owners["first"].items())
    assert small_log.groupby(contract.USER_ID)[contract.STATION_ID].nunique().max() > 1


def test_sessions_advance_by_listen_time_plus_a_small_gap(small_run, small_log) -> None:
    assert small_run[1]["overfull_user_days"] == 0
    log = small_log.astype({contract.TIMESTAMP_MS: int, contract.LISTEN_MS: int}).sort_values(
        [contract.USER_ID, contract.TIMESTAMP_MS])
    same_user = log[contract.USER_ID].eq(log[contract.USER_ID].shift(-1)).to_numpy()[:-1]
    gap = (np.diff(log[contract.TIMESTAMP_MS].to_numpy()) - log[contract.LISTEN_MS].to_numpy()[:-1])[same_user]
    assert gap.min() >= 1  # a user's plays never overlap
    assert np.mean(gap <= simulate.MAX_GAP_MS) > 0.8  # most next plays follow within a session
    assert np.median(gap) < 10_000


# --- Files ----------------------------------------------------------------------------------------------

def test_one_span_per_day_with_timestamps_inside_it(small_run, small_log) -> None:
    out = small_run[0]
    assert span_folders.numbers(out) == [day + 1 for day in range(SMALL.days)]
    day_start = SMALL.start_ms + (small_log["span"].to_numpy() - 1) * spans.DAY_MS
    timestamps = small_log[contract.TIMESTAMP_MS].astype(np.int64).to_numpy()
    assert np.all((day_start <= timestamps) & (timestamps < day_start + spans.DAY_MS))
    assert small_run[1]["spans"] == {str(s): int(n) for s, n in small_log["span"].value_counts().items()}


def test_every_row_passes_the_contract(small_log: pd.DataFrame) -> None:
    assert list(small_log.columns[:-1]) == list(contract.COLUMNS)
    reasons = [contract.validate_row(row).reason for row in small_log[list(contract.COLUMNS)].to_dict("records")]
    assert reasons == [None] * len(small_log)


def test_catalog_and_ground_truth_match_the_log(small_run, small_log) -> None:
    out = small_run[0]
    catalog = pd.read_csv(out / simulate.CATALOG_DIRNAME / simulate.CATALOG_FILENAME)
    assert list(catalog.columns) == [contract.TRACK_ID, contract.ARTIST_ID, simulate.GENRE, simulate.POPULARITY]
    assert len(catalog) == SMALL.tracks and catalog[contract.TRACK_ID].is_unique
    assert catalog[simulate.POPULARITY].sum() == pytest.approx(1.0)
    assert catalog[simulate.GENRE].nunique() == SMALL.genres
    artist_of = catalog.set_index(contract.TRACK_ID)[contract.ARTIST_ID]
    assert small_log[contract.TRACK_ID].isin(artist_of.index).all()
    assert (artist_of[small_log[contract.TRACK_ID]].to_numpy() == small_log[contract.ARTIST_ID].to_numpy()).all()
    truth = GroundTruth.load(out)
    assert set(truth.track_ids) == set(catalog[contract.TRACK_ID])
    assert set(small_log[contract.USER_ID]) <= set(truth.user_ids)
    assert truth.user_taste.sum(axis=1) == pytest.approx(np.ones(SMALL.users))


def test_parquet_output_holds_the_same_plays(tmp_path: pathlib.Path) -> None:
    simulate.simulate(TINY, tmp_path / "csv")
    simulate.simulate(dataclasses.replace(TINY, file_format="parquet"), tmp_path / "parquet")
    from_csv = read_log(tmp_path / "csv").astype({c: "int64" for c in contract.INT_COLUMNS})
    from_parquet = read_log(tmp_path / "parquet", "parquet").astype({c: "int64" for c in contract.INT_COLUMNS})
    pd.testing.assert_frame_equal(from_csv, from_parquet)


# --- Config and CLI -------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    ({"users": 0}, "users must be >= 1"),
    ({"events": 10, "users": 20}, "events (10) must be >= users"),
    ({"days": 0}, "days must be >= 1"),
    ({"start_ms": simulate.DEFAULT_START_MS + 1}, "UTC midnight"),
    ({"exploration_share": 1.5}, "exploration_share must be within"),
])
def test_nonsense_config_is_rejected(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        dataclasses.replace(TINY, **change)


def test_non_empty_out_dir_needs_overwrite(tmp_path: pathlib.Path) -> None:
    simulate.simulate(TINY, tmp_path)
    stale = span_folders.folder(tmp_path, 99)
    stale.mkdir()
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        simulate.simulate(TINY, tmp_path)
    simulate.simulate(TINY, tmp_path, overwrite=True)
    assert not stale.exists() and keep.read_text() == "mine"
    assert (tmp_path / simulate.SUMMARY_FILENAME).is_file()


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT, capture_output=True, text=True,
                          timeout=120)


def test_cli_writes_a_log_and_reports_it(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "cli"
    result = run_module("listening_logs.simulate", "--out", str(out), "--users", "30", "--tracks", "200",
                        "--events", "1500", "--days", "2", "--seed", "5", "--format", "parquet",
                        "--skip-only-share", "0.5")
    assert result.returncode == 0, result.stderr
    assert "1500 events" in result.stdout and str(out) in result.stdout
    assert "wrote 2 spans (parquet)" in result.stderr
    summary = json.loads((out / simulate.SUMMARY_FILENAME).read_text())
    assert summary["events"] == 1500 and summary["config"]["skip_only_share"] == 0.5
    assert (span_folders.folder(out, 2) / f"{spans.EVENTS_STEM}.parquet").is_file()

    log = read_log(out, "parquet")
    user, track = log[contract.USER_ID].iloc[0], log[contract.TRACK_ID].iloc[0]
    shown = run_module("listening_logs.ground_truth", "--dir", str(out), "--user", user, "--track", track)
    assert shown.returncode == 0, shown.stderr
    expected = GroundTruth.load(out).affinity([user], [track])[0]
    assert float(shown.stdout.split()[-1]) == pytest.approx(expected, abs=1e-6)

    again = run_module("listening_logs.simulate", "--out", str(out), "--users", "30", "--events", "1500")
    assert again.returncode == 2 and "--overwrite" in again.stderr


@pytest.mark.parametrize("args, message", [
    (["--users", "0"], "users must be >= 1"),
    (["--users", "50", "--events", "10"], "must be >= users"),
    (["--days", "0"], "days must be >= 1"),
    (["--format", "xml"], "invalid choice"),
])
def test_cli_rejects_nonsense(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture, args: list[str],
                              message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        simulate.main(["--out", str(tmp_path / "x"), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_help_lists_every_knob() -> None:
    result = run_module("listening_logs.simulate", "--help")
    assert result.returncode == 0
    for field in dataclasses.fields(SimulationConfig):
        flag = field.metadata.get("flag", "--" + field.name.replace("_", "-"))
        assert flag in result.stdout, flag
    assert "--overwrite" in result.stdout and "--out" in result.stdout


def test_ground_truth_cli_rejects_unknown_user(small_run, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        ground_truth.main(["--dir", str(small_run[0]), "--user", "nobody", "--track", "t0000"])
    assert exit_info.value.code == 2
    assert "unknown user" in capsys.readouterr().err


# --- Presets: the default stays as it was, `realistic` rejects unpopular tracks ----------------------------

TINY_SPAN_SHA256 = {
    f"{span_folders.folder_name(1)}/events.csv": "24c287ddb0734d262ac870481c75f2e293c25146dc479674d59ca658ac4836d0",
    f"{span_folders.folder_name(2)}/events.csv": "ae93816f36801efafb1085221275e5ccc7645fa3f743abdc0cd7e3f23a66f935",
}
"""sha256 of TINY's span files, recorded with the simulator before the presets and popularity settings existed."""
TINY_LABELS = {"dislike": 64, "like": 153, "listen": 1200, "skip": 583}
"""TINY's summary.json label counts, recorded at the same time."""


def test_default_preset_output_is_unchanged(tmp_path: pathlib.Path) -> None:
    import hashlib

    config = simulate.preset_config("default", **{f.name: getattr(TINY, f.name) for f in dataclasses.fields(TINY)
                                                  if f.name in ("users", "tracks", "events", "days", "seed")})
    assert config == TINY
    summary = simulate.simulate(config, tmp_path / "sim", preset="default")
    assert summary["labels"] == TINY_LABELS
    assert summary["preset"] == "default"
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in file_bytes(tmp_path / "sim").items()
              if span_folders.is_span_folder_name(name.split("/")[0])}
    assert hashes == TINY_SPAN_SHA256


def test_tail_scores_are_log_popularity_ranks() -> None:
    scores = simulate.tail_scores(np.array([0.1, 0.5, 0.4]))  # ranks 3, 1, 2 of 3
    np.testing.assert_allclose(scores, [1.0, 0.0, np.log(2) / np.log(3)])
    assert simulate.tail_scores(np.array([1.0])).tolist() == [0.0]


@pytest.fixture(scope="module")
def preset_profiles() -> dict[str, tuple[dict, simulate.Simulation]]:
    """Profiles of SMALL's size under each preset (labelling at the pipeline's defaults, spelled out)."""
    from components.feedback_labeler.sequences import LabelingParams
    from listening_logs import profile

    params = LabelingParams(skip_ms=30_000, skip_fraction=0.25, positive_policy="like", input_policy="all",
                            negative_policy="dislikes+skips", max_history=20, max_hard_negatives=5,
                            hard_negative_window_ms=3_600_000, eval_cutoff="0.7", test_cutoff="0.85",
                            max_events_per_user=5000)
    size = {name: getattr(SMALL, name) for name in ("users", "tracks", "events", "days", "seed")}
    result = {}
    for name in ("default", "realistic"):
        simulation = simulate.generate(simulate.preset_config(name, **size))
        result[name] = (profile.profile_log(simulation.frame(), params), simulation)
    return result


def test_realistic_preset_makes_most_popular_a_strong_baseline(preset_profiles) -> None:
    default, realistic = preset_profiles["default"][0], preset_profiles["realistic"][0]
    assert default["most_popular"]["pairwise_accuracy"] < 0.65  # the kind simulator: popularity says little
    assert realistic["most_popular"]["pairwise_accuracy"] >= 0.75
    assert realistic["most_popular"]["pairs"] > 1_000
    popularity = realistic["popularity_percentile"]
    assert popularity["like"]["mean"] > popularity["listen"]["mean"] > popularity["skip"]["mean"]
    assert popularity["like"]["mean"] > popularity["dislike"]["mean"] + 5


def test_realistic_preset_keeps_plausible_labels_and_meaningful_truth(preset_profiles) -> None:
    profile_, simulation = preset_profiles["realistic"]
    for name, (low, high) in simulate.TARGET_LABEL_SHARES.items():
        assert low <= profile_["label_shares"][name] <= high, name
    events = simulation.events
    mean_affinity = {name: events.affinity[events.label == LABEL[name]].mean() for name in LABEL}
    assert mean_affinity[contract.LIKE] > mean_affinity[contract.LISTEN] > mean_affinity[contract.SKIP]
    assert mean_affinity[contract.LIKE] > mean_affinity[contract.DISLIKE] + 0.3


def test_explicit_flags_override_the_preset(tmp_path: pathlib.Path) -> None:
    parser = simulate.build_parser()
    realistic = simulate.config_from_args(parser.parse_args(["--out", str(tmp_path), "--preset", "realistic"]))
    assert realistic == simulate.preset_config("realistic")
    assert realistic.tail_exploration_share > 0 and realistic.exploration_share == 0.0
    mixed = simulate.config_from_args(parser.parse_args(
        ["--out", str(tmp_path), "--preset", "realistic", "--exploration-share", "0.03", "--users", "50"]))
    assert mixed == dataclasses.replace(realistic, exploration_share=0.03, users=50)
    plain = simulate.config_from_args(parser.parse_args(["--out", str(tmp_path)]))
    assert plain == SimulationConfig()


def test_unknown_preset_or_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown preset 'kind'; choose one of"):
        simulate.preset_config("kind")
    with pytest.raises(ValueError, match=r"unknown simulation settings \['colour'\]"):
        simulate.preset_config("default", colour=1)
    with pytest.raises(ValueError, match="exploration_share \\+ tail_exploration_share must be <= 1"):
        simulate.preset_config("default", exploration_share=0.6, tail_exploration_share=0.6)


def test_cli_help_lists_the_presets() -> None:
    result = run_module("listening_logs.simulate", "--help")
    assert result.returncode == 0
    assert "--preset {default,realistic}" in result.stdout
    assert "tail_exploration_share=0.2" in " ".join(result.stdout.split())
