"""experiments/: the pure pieces (subsampling, time to target, false-negative share, verdicts) on hand-made
inputs, and one end-to-end smoke run of `python -m experiments.reproduce --quick` on a tiny simulated log."""
from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from experiments import false_negatives, report, reproduce, subsample, training
from listening_logs.ground_truth import GroundTruth
from listening_logs.simulate import SimulationConfig, simulate
from models.params import NEGATIVE_LOSSES, TrainingParams
from schema import contract, span_folders

SKIP, DISLIKE, LIKE, LISTEN = (contract.LABEL_IDS[name] for name in (contract.SKIP, contract.DISLIKE,
                                                                     contract.LIKE, contract.LISTEN))


# --- subsample -------------------------------------------------------------------------------------------
def hand_made_labels() -> tuple[np.ndarray, np.ndarray]:
    """Listener a: 4 skips, 2 dislikes, 3 listens, 1 like; b: 2 skips, 1 like; c: listens only."""
    rows = ([("a", SKIP)] * 4 + [("a", DISLIKE)] * 2 + [("a", LISTEN)] * 3 + [("a", LIKE)]
            + [("b", SKIP)] * 2 + [("b", LIKE)] + [("c", LISTEN)] * 2)
    order = np.random.default_rng(0).permutation(len(rows))  # interleaved, as a real log is
    users = np.array([rows[i][0] for i in order])
    labels = np.array([rows[i][1] for i in order])
    return users, labels


def kept(users: np.ndarray, labels: np.ndarray, keep: np.ndarray, user: str, label: int) -> int:
    return int(((users == user) & (labels == label) & keep).sum())


@pytest.mark.parametrize("fraction, expected", [
    (0.0, {("a", SKIP): 0, ("a", DISLIKE): 0, ("b", SKIP): 0}),
    (0.5, {("a", SKIP): 2, ("a", DISLIKE): 1, ("b", SKIP): 1}),
    (1.0, {("a", SKIP): 4, ("a", DISLIKE): 2, ("b", SKIP): 2}),
])
def test_keep_mask_keeps_exactly_the_fraction_of_each_listeners_negatives(fraction, expected):
    users, labels = hand_made_labels()
    for seed in range(5):
        keep = subsample.keep_mask(users, labels, fraction, np.random.default_rng(seed))
        assert {key: kept(users, labels, keep, *key) for key in expected} == expected
        positive_or_listen = np.isin(labels, [LIKE, LISTEN])
        assert keep[positive_or_listen].all()


def test_keep_mask_rounds_randomly_so_the_kept_share_is_right_on_average():
    users = np.array(["a"] * 3 + ["b"])
    labels = np.array([SKIP] * 4)
    counts = []
    for seed in range(400):
        keep = subsample.keep_mask(users, labels, 0.5, np.random.default_rng(seed))
        counts.append(int(keep[:3].sum()))
        assert int(keep[3]) in (0, 1)
    assert set(counts) == {1, 2}  # floor(1.5) or one more, never 0 or 3
    assert abs(np.mean(counts) - 1.5) < 0.1


def test_keep_mask_picks_different_rows_for_different_seeds_and_the_same_for_one_seed():
    users, labels = hand_made_labels()
    masks = [subsample.keep_mask(users, labels, 0.5, np.random.default_rng(seed)) for seed in range(6)]
    assert len({mask.tobytes() for mask in masks}) > 1
    again = subsample.keep_mask(users, labels, 0.5, np.random.default_rng(0))
    assert np.array_equal(masks[0], again)


def write_log(data: pathlib.Path, fmt: str) -> pd.DataFrame:
    """Two spans; u1's skips are short plays (listen_ms < 30 s), u2's dislike is a thumb down."""
    frame = pd.DataFrame({
        contract.USER_ID: ["u1", "u1", "u1", "u1", "u2", "u2", "u2"],
        contract.TRACK_ID: ["t1", "t2", "t3", "t4", "t1", "t2", "t5"],
        contract.STATION_ID: ["s1", "s1", "", "s1", "s2", "s2", "s2"],
        contract.TIMESTAMP_MS: [1_767_225_600_000 + i * 60_000 for i in range(7)],
        contract.LISTEN_MS: [5_000, 200_000, 10_000, 180_000, 200_000, 1_000, 190_000],
        contract.TRACK_MS: [200_000] * 7,
        contract.FEEDBACK: ["", "thumb_up", "", "", "", "thumb_down", ""],
        contract.ARTIST_ID: ["a1"] * 7,
    })
    for span, rows in ((1, slice(0, 4)), (2, slice(4, 7))):
        folder = span_folders.folder(data, span)
        folder.mkdir(parents=True)
        part = frame.iloc[rows]
        if fmt == "csv":
            part.to_csv(folder / "events.csv", index=False)
        else:
            part.to_parquet(folder / "events.parquet", index=False)
    return frame


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_subsample_log_drops_negatives_and_keeps_layout_and_format(tmp_path, fmt):
    write_log(tmp_path / "data", fmt)
    result = subsample.subsample_log(tmp_path / "data", tmp_path / "out", [1, 2], 0.0, 7, contract.LabelThresholds())
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.*")) == [
        f"{span_folders.folder_name(1)}/events.{fmt}", f"{span_folders.folder_name(2)}/events.{fmt}"]
    read = (lambda path: pd.read_csv(path, dtype=str, keep_default_na=False)) if fmt == "csv" else pd.read_parquet
    span1, span2 = (read(span_folders.folder(tmp_path / "out", s) / f"events.{fmt}") for s in (1, 2))
    assert list(span1[contract.TRACK_ID]) == ["t2", "t4"]  # u1's two skips are gone
    assert list(span2[contract.TRACK_ID]) == ["t1", "t5"]  # u2's dislike is gone
    assert list(span1.columns) == list(contract.COLUMNS)
    assert (result.rows_in, result.rows_out) == (7, 4)
    assert result.negative_share == 0.0
    assert result.labels == {"like": 1, "listen": 3, "skip": 0, "dislike": 0}
    if fmt == "parquet":
        assert pq.read_schema(span_folders.folder(tmp_path / "out", 1) / "events.parquet").equals(
            pq.read_schema(span_folders.folder(tmp_path / "data", 1) / "events.parquet"))


def test_describe_counts_negative_share_of_the_untouched_log(tmp_path):
    write_log(tmp_path / "data", "csv")
    result = subsample.describe(tmp_path / "data", [1, 2], contract.LabelThresholds())
    assert result.labels == {"like": 1, "listen": 3, "skip": 2, "dislike": 1}
    assert result.negative_share == pytest.approx(3 / 7)


# --- time to target ------------------------------------------------------------------------------------------
def history(accuracies: list[float], seconds_per_epoch: float = 2.0, first_epoch: float = 10.0) -> list[dict]:
    cumulative, rows = 0.0, []
    for epoch, accuracy in enumerate(accuracies, start=1):
        cumulative += first_epoch if epoch == 1 else seconds_per_epoch
        rows.append({"epoch": epoch, "train_seconds_cumulative": cumulative, "eval_pairwise_accuracy": accuracy})
    return rows


def test_time_to_target_is_the_first_epoch_at_or_above_the_target():
    rows = history([0.55, 0.60, 0.62, 0.61, 0.64])
    assert training.best_accuracy(rows) == 0.64
    # The first epoch took 10 s where later ones take 2 s: 8 s of tracing are not counted.
    assert training.tracing_seconds(rows) == 8.0
    assert training.time_to_target(rows, 0.62) == training.TimeToTarget(True, 6.0, 3)
    assert training.time_to_target(rows, 0.64) == training.TimeToTarget(True, 10.0, 5)
    assert training.time_to_target(rows, 0.50) == training.TimeToTarget(True, 2.0, 1)
    assert training.tracing_seconds(rows[:1]) == 0.0


def test_time_to_target_not_reached_and_unmeasurable():
    rows = history([0.55, float("nan"), 0.58])
    assert training.time_to_target(rows, 0.60) == training.TimeToTarget(False, None, None)
    assert training.time_to_target(rows, None) == training.TimeToTarget(False, None, None)
    assert training.best_accuracy(rows) == 0.58
    assert training.best_accuracy(history([float("nan")])) is None


def test_seed_rows_give_ratio_and_a_null_when_a_seed_misses_the_target():
    plain = (training.TrainedVariant("m", history([0.55, 0.60, 0.62]), 0.0),
             {"pairwise_accuracy": 0.60, "recall_at_100": 0.40})
    fast = (training.TrainedVariant("m", history([0.58, 0.63]), 0.0),
            {"pairwise_accuracy": 0.63, "recall_at_100": 0.42})
    slow = (training.TrainedVariant("m", history([0.50, 0.52, 0.53]), 0.0),
            {"pairwise_accuracy": 0.54, "recall_at_100": 0.30})
    row = reproduce.seed_row(1, plain, fast)
    assert (row["time_to_target_random_s"], row["epochs_to_target_random"]) == (6.0, 3)
    assert (row["time_to_target_hard_s"], row["epochs_to_target_hard"]) == (4.0, 2)
    summary = reproduce.summarize_hard_negatives([row], 1.0)
    assert summary["time_ratio"] == pytest.approx(4 / 6)
    assert summary["relative_gain"] == pytest.approx(0.03 / 0.60)
    assert report.verdict_hard_negatives(summary)[1] == "ok"
    missed = reproduce.summarize_hard_negatives([row, reproduce.seed_row(2, plain, slow)], 1.0)
    assert missed["time_to_target_hard_s"] is None and missed["time_ratio"] is None
    assert (missed["hard_reached_target"], missed["hard_reached_target_seeds"]) == (False, 1)
    text, kind = report.verdict_hard_negatives(missed)
    assert kind == "warn" and "in 1 of 2 seed(s)" in text


# --- false negatives --------------------------------------------------------------------------------------------
def test_liked_share_counts_valid_pairs_at_or_above_the_threshold():
    affinity = np.array([[0.9, 0.6, 0.1], [0.59, 0.7, -0.2]])
    valid = np.array([[True, True, True], [True, False, True]])
    assert false_negatives.liked_counts(affinity, valid, 0.6) == (2, 5)
    assert false_negatives.liked_share(affinity, valid, 0.6) == pytest.approx(0.4)
    assert math.isnan(false_negatives.liked_share(affinity, np.zeros_like(valid), 0.6))


def tiny_truth() -> GroundTruth:
    """u0 faces track t0 (affinity 1), is orthogonal to t1 (0) and opposite t2 (-1)."""
    two = np.eye(2)
    return GroundTruth(user_ids=np.array(["u0"]), user_vectors=np.array([[1.0, 0.0]]), user_taste=np.ones((1, 1)),
                       track_ids=np.array(["t0", "t1", "t2"]), track_vectors=np.array([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]),
                       artist_ids=np.array(["a0", "a1"]), artist_vectors=two,
                       genre_ids=np.array(["g0"]), genre_centres=np.array([[1.0, 0.0]]))


def params(batch_size: int = 4, sampler: str = "popularity") -> TrainingParams:
    return TrainingParams(max_history=5, max_hard_negatives=2, num_random_negatives=8, sampler=sampler,
                          sampler_alpha=1.0, hard_negatives_in_loss=True, hard_negative_weight=1.0, negative_loss="pairwise",
                          negative_loss_weight=1.0, item_bias=False, item_bias_prior_scale=1.0, history_gains="off",
                          history_pooling="all", direct_feedback="off", direct_feedback_scale=1.0, history_memory="all",
                          negative_loss_on_bias=True, negative_loss_on_candidates="all", negative_loss_on_query="all",
                          dislike_neighbour_weight=0.0, dislike_neighbour_floor=0.5, temperature=0.05,
                          embedding_dim=8, num_layers=1, num_heads=1, dropout=0.0, learning_rate=0.01,
                          optimizer="adam",
                          batch_size=batch_size, epochs=1, patience=1, early_stopping="pairwise_accuracy", seed=3,
                          warm_start=False,
                          distribution_strategy="default")


def test_sampled_share_follows_the_trainers_sampler_and_masks_the_target():
    truth = tiny_truth()
    queries = false_negatives.TestQueries(np.array(["u0"] * 6), np.array([1, 1, 1, 1, 1, 1]))
    vocabulary = ["t0", "t1", "t2"]
    only_t0 = np.array([5, 0, 0, 0])  # the last id is the OOV bucket (count 0), as in track_counts_by_id
    only_t1 = np.array([0, 5, 0, 0])
    half = np.array([5, 0, 5, 0])
    assert false_negatives.sampled_false_negative_share(truth, queries, vocabulary, only_t0, params(), 16, 0.6) == 1.0
    assert false_negatives.sampled_false_negative_share(truth, queries, vocabulary, half, params(), 64, 0.6) \
        == pytest.approx(0.5, abs=0.15)
    # every sample is the queries' own target: masked, as RandomNegativeLogits masks it, so nothing to count
    assert math.isnan(false_negatives.sampled_false_negative_share(truth, queries, vocabulary, only_t1, params(), 16, 0.6))
    # the uniform sampler draws the OOV id (here half the time), which is no track and is not counted
    oov_queries = false_negatives.TestQueries(np.array(["u0"] * 6), np.array([1] * 6))
    assert false_negatives.sampled_false_negative_share(
        truth, oov_queries, ["t0"], np.array([5, 0]), params(sampler="uniform"), 64, 0.6) == 1.0


def test_like_center_comes_from_the_simulation_summary(tmp_path):
    assert false_negatives.like_center(tmp_path) == SimulationConfig().like_center
    (tmp_path / "summary.json").write_text(json.dumps({"config": {"like_center": 0.42}}))
    assert false_negatives.like_center(tmp_path) == 0.42


# --- verdicts, settings ----------------------------------------------------------------------------------------------
def test_verdicts_flag_differences_from_the_paper():
    assert report.verdict_input_policies({"positives": {"coverage": 0.6, "pairwise_accuracy": 0.6},
                                          "positives+skips": {"coverage": 0.9, "pairwise_accuracy": 0.61}})[1] == "ok"
    text, kind = report.verdict_input_policies({"positives": {"coverage": 0.99, "pairwise_accuracy": 0.6},
                                                "positives+skips": {"coverage": 1.0, "pairwise_accuracy": 0.6}})
    assert kind == "warn" and "already cover" in text
    rising = [{"num_random_negatives": n, "pairwise_accuracy": a, "false_negative_share": None}
              for n, a in ((1, 0.55), (16, 0.60), (256, 0.58))]
    assert report.verdict_sweep(rising, 0.62)[1] == "ok"
    assert report.verdict_sweep(rising, 0.59)[1] == "warn"
    still_rising = [dict(row, pairwise_accuracy=0.5 + 0.01 * i) for i, row in enumerate(rising)]
    assert "turning point" in report.verdict_sweep(still_rising, 0.9)[0]
    flat = [{"keep_fraction": f, "pairwise_accuracy": a} for f, a in ((0.0, 0.60), (1.0, 0.61))]
    assert report.verdict_feedback(flat)[1] == "ok"
    assert report.verdict_feedback([dict(flat[0], pairwise_accuracy=0.5), flat[1]])[1] == "warn"


def test_quick_caps_epochs_unless_set_and_spans_default_to_all(tmp_path):
    config = reproduce.experiment_config([], quick=True, spans=[1, 2, 3])
    assert (config.spans, config.epochs, config.patience) == ("1-3", 4, 4)
    config = reproduce.experiment_config(["epochs=7", "spans=2"], quick=True, spans=[1, 2, 3])
    assert (config.spans, config.epochs, config.patience) == ("2", 7, 7)
    assert reproduce.experiment_config([], quick=False, spans=[1]).epochs == reproduce.configs.PipelineConfig().epochs
    with pytest.raises(ValueError, match="missing span folders"):
        reproduce.selected_spans("1-3", [1, 3])


def test_missing_data_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        reproduce.main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "is not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        reproduce.main(["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    assert "no span-N folders" in capsys.readouterr().err


# --- end to end --------------------------------------------------------------------------------------------------------
REQUIRED = {
    "hard_negatives": {"accuracy_random_only", "accuracy_with_hard", "relative_gain", "recall_at_100_random_only",
                       "recall_at_100_with_hard", "time_to_target_random_s", "time_to_target_hard_s", "time_ratio",
                       "epochs_to_target_random", "epochs_to_target_hard", "hard_negative_weight", "seeds"},
    "sweep_row": {"num_random_negatives", "pairwise_accuracy", "recall_at_100", "false_negative_share",
                  "false_negatives_per_query"},
    "feedback_row": {"keep_fraction", "negative_share", "pairwise_accuracy", "recall_at_100", "coverage"},
    "top": {"hard_negatives", "input_policies", "random_negatives_sweep", "feedback_proportions",
            "feedback_type_similarity", "config", "data", "quick", "seeds", "versions", "durations", "paper"},
}


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


@pytest.mark.pipeline
def test_quick_reproduction_writes_all_four_experiments(tmp_path, capsys):
    data = tmp_path / "data"
    simulate(SimulationConfig(users=60, tracks=300, events=4000, days=7, seed=1), data)
    out = tmp_path / "out"
    status = reproduce.main([
        "--data", str(data), "--out", str(out), "--quick", "--seeds", "1", "--sweep", "4,16", "--keep-fractions", "0",
        "--set", "epochs=2", "--set", "batch_size=64", "--set", "embedding_dim=16", "--set", "num_layers=1",
        "--set", "num_random_negatives=16", "--set", "serving_top_k=5", "--set", "serving_max_exclusions=2",
        "--set", "max_history=10",
    ])
    printed = capsys.readouterr().out
    assert status == 0
    assert "expected duration" in printed and "report.html:" in printed
    result = json.loads((out / "report.json").read_text())
    assert REQUIRED["top"] <= set(result)
    assert result["quick"] is True and result["config"]["epochs"] == 2 and result["config"]["spans"] == "1-7"

    hard = result["hard_negatives"]
    assert REQUIRED["hard_negatives"] <= set(hard)
    for key in ("accuracy_random_only", "accuracy_with_hard", "relative_gain", "recall_at_100_random_only",
                "recall_at_100_with_hard", "time_to_target_random_s", "epochs_to_target_random"):
        assert finite(hard[key]), key
    assert hard["hard_reached_target"] == (hard["time_to_target_hard_s"] is not None)
    assert len(hard["seeds"]) == 1 and len(hard["seeds"][0]["history_with_hard"]) >= 1

    assert set(result["input_policies"]) == set(contract.INPUT_POLICIES)
    for policy, row in result["input_policies"].items():
        assert 0.0 <= row["coverage"] <= 1.0 and finite(row["pairwise_accuracy"]) and finite(row["recall_at_100"]), policy
    assert result["input_policies"]["positives+skips"]["coverage"] >= result["input_policies"]["positives"]["coverage"]
    # the input policy changes histories only: every run judges the same test targets and real negatives
    assert len({(row["test_examples"], row["pairs"]) for row in result["input_policies"].values()}) == 1

    sweep = result["random_negatives_sweep"]
    assert [row["num_random_negatives"] for row in sweep] == [4, 16]
    for row in sweep:
        assert REQUIRED["sweep_row"] <= set(row)
        assert finite(row["pairwise_accuracy"]) and 0.0 <= row["false_negative_share"] <= 1.0
        assert row["false_negatives_per_query"] == pytest.approx(row["num_random_negatives"] * row["false_negative_share"])
    # 16 equals the config's num_random_negatives: the seed's random-only training is reused, same numbers
    assert sweep[1]["pairwise_accuracy"] == hard["seeds"][0]["accuracy_random_only"]
    # the loss formulations reuse section 1's two trainings (same settings and seed) and train the other two
    formulations = result["loss_formulations"]["per_seed"][0]["variants"]
    assert set(formulations) == {"random_only", *NEGATIVE_LOSSES}
    assert formulations["random_only"]["test"]["pairwise_accuracy"] == hard["seeds"][0]["accuracy_random_only"]
    assert formulations[result["config"]["negative_loss"]]["test"]["pairwise_accuracy"] \
        == hard["seeds"][0]["accuracy_with_hard"]
    assert printed.count("the same training as before (same settings)") == 2

    feedback = result["feedback_proportions"]
    assert [row["keep_fraction"] for row in feedback] == [0.0, 1.0]
    for row in feedback:
        assert REQUIRED["feedback_row"] <= set(row) and finite(row["pairwise_accuracy"]) and finite(row["coverage"])
    assert feedback[0]["negative_share"] == 0.0 < feedback[1]["negative_share"]

    similarity = result["feedback_type_similarity"]
    assert similarity["labels"] == list(contract.LABELS) and len(similarity["cosine"]) == 4

    page = (out / "report.html").read_text()
    assert page.count("<section>") >= 5 and page.count("<svg") >= 5
    for title in ("1. Hard negatives", "2. Skips as inputs", "3. Number of random negatives", "4. Feedback proportions"):
        section = page.split(title, 1)[1].split("</section>", 1)[0]
        assert "<svg" in section and "callout" in section, title
    assert "http" not in page
