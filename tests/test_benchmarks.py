"""benchmarks/: the pure functions (recall, QPS at recall, the pandas labelling reference, the completeness
rules) on hand-made inputs, and a smoke run of `python -m benchmarks.run --tiny` checking results.json is
complete and RESULTS.md has every section's tables. No timing is asserted: speed goals live in the
benchmarks, never in tests."""
from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import (ann_metrics, estimate, measure, optimizer_step, pandas_labelling, pipeline_timing, report,
                        results, settings)
from benchmarks.pipeline_runs import RunSpec
from components.feedback_labeler import sequences
from listening_logs import simulate
from pipeline import configs
from reports.json_safe import json_safe
from schema import contract
from tests.conftest import REPO_ROOT, random_log

SMOKE_TIMEOUT_S = 1200


# --- Recall and QPS at recall --------------------------------------------------------------------------

def test_recall_counts_shared_ids_per_query():
    approx = np.array([[1, 2, 3], [4, 5, 6]])
    exact = np.array([[3, 2, 9], [7, 8, 9]])
    assert ann_metrics.recall_at_k(approx, exact, 3) == pytest.approx(1 / 3)
    assert ann_metrics.recall_at_k(approx, exact, 2) == pytest.approx(0.25)  # {1,2} vs {3,2}: one of two
    assert ann_metrics.recall_at_k(np.array([[-1, -1, 9]]), np.array([[9, 8, 7]]), 3) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        ann_metrics.recall_at_k(approx[:1], exact, 3)
    with pytest.raises(ValueError):
        ann_metrics.recall_at_k(approx, exact[:, :2], 3)


def test_exact_top_k_is_the_best_scores_in_order():
    rng = np.random.default_rng(0)
    candidates = rng.standard_normal((500, 8)).astype(np.float32)
    queries = rng.standard_normal((70, 8)).astype(np.float32)
    found = ann_metrics.exact_top_k(queries, candidates, 10, block=16)
    expected = np.argsort(-(queries @ candidates.T), axis=1)[:, :10]
    np.testing.assert_array_equal(found, expected)
    assert ann_metrics.recall_at_k(found, expected, 10) == 1.0


POINTS = [{"recall": 0.80, "qps": 1000.0, "leaves_to_search": 1, "reorder": 10},
          {"recall": 0.85, "qps": 500.0, "leaves_to_search": 2, "reorder": 10},  # dominated by the 0.90 point
          {"recall": 0.90, "qps": 600.0, "leaves_to_search": 2, "reorder": 100},
          {"recall": 0.95, "qps": 400.0, "leaves_to_search": 4, "reorder": 100},
          {"recall": 0.99, "qps": 100.0, "leaves_to_search": 8, "reorder": 500}]


def test_pareto_frontier_drops_dominated_points():
    frontier = ann_metrics.pareto_frontier(POINTS)
    assert [p["recall"] for p in frontier] == [0.80, 0.90, 0.95, 0.99]
    assert [p["qps"] for p in frontier] == [1000.0, 600.0, 400.0, 100.0]


def test_qps_at_recall_interpolates_on_the_frontier():
    assert ann_metrics.interpolated_qps(POINTS, 0.92) == pytest.approx(600 + 0.4 * (400 - 600))
    assert ann_metrics.interpolated_qps(POINTS, 0.95) == pytest.approx(400)
    assert ann_metrics.interpolated_qps(POINTS, 0.50) == pytest.approx(1000)  # below every point: the fastest
    assert ann_metrics.interpolated_qps(POINTS, 0.995) is None  # nothing reaches it
    assert ann_metrics.interpolated_qps([], 0.9) is None
    assert ann_metrics.best_reaching(POINTS, 0.92)["qps"] == 400.0
    assert ann_metrics.best_reaching(POINTS, 0.999) is None


def test_qps_at_recalls_table():
    table = ann_metrics.qps_at_recalls(POINTS, (0.90, 0.95, 0.999))
    assert set(table) == {"0.90", "0.95", "1.00"}
    assert table["0.90"]["best_qps"] == 600.0
    assert table["0.90"]["best_config"] == {"leaves_to_search": 2, "reorder": 100}
    assert table["0.95"]["interpolated_qps"] == pytest.approx(400.0)
    unreachable = table["1.00"]
    assert unreachable["interpolated_qps"] is None and unreachable["best_config"] is None


# --- The pandas labelling reference --------------------------------------------------------------------

def python_reference(frame, params: sequences.LabelingParams) -> dict:
    """The component's own pure-Python rules (contract.validate_row, sequences.build_user_examples) on a frame."""
    quarantined, by_user, times = collections.Counter(), collections.defaultdict(list), []
    for raw in frame.to_dict("records"):
        checked = contract.validate_row({key: None if isinstance(v, float) and math.isnan(v) else v
                                         for key, v in raw.items()})
        if not checked.ok:
            quarantined[checked.reason] += 1
            continue
        row = checked.row
        times.append(row[contract.TIMESTAMP_MS])
        by_user[row[contract.USER_ID]].append(sequences.Play(row[contract.TIMESTAMP_MS], row[contract.TRACK_ID],
                                                             row[contract.STATION_ID],
                                                             contract.label_of(row, params.thresholds())))
    cutoffs = sequences.resolve_cutoffs(params, min(times), max(times))
    history, negatives, labels = collections.Counter(), collections.Counter(), collections.Counter()
    for user, plays in by_user.items():
        kept = sorted(plays, key=lambda p: (p.timestamp_ms, p.track_id))[-params.max_events_per_user:]
        result = sequences.build_user_examples(user, kept, params, cutoffs)
        labels.update(result.label_counts)
        for example in result.examples:
            history[(example.split, len(example.history_track_ids))] += 1
            negatives[(example.split, len(example.hard_negative_track_ids))] += 1
    return {"quarantined": dict(quarantined), "history": history, "negatives": negatives, "labels": labels}


@pytest.mark.parametrize("overrides", [{}, {"positive_policy": "like+listen", "max_events_per_user": 30},
                                       {"negative_policy": "dislikes", "max_hard_negatives": 2,
                                        "input_policy": "positives"}])
def test_pandas_reference_matches_the_labelers_rules_per_example(overrides):
    params = dataclasses.replace(configs.PipelineConfig(), **overrides).labeling_params()
    frame = random_log(2500, days=3, seed=3)
    frame.loc[5, contract.USER_ID] = ""
    frame.loc[7, contract.FEEDBACK] = "meh"
    frame.loc[9, contract.LISTEN_MS] = -5
    frame.loc[11, contract.TRACK_MS] = 0
    frame.loc[100:130, contract.TIMESTAMP_MS] = frame.loc[100, contract.TIMESTAMP_MS]  # plays at one time
    reference = pandas_labelling.label_log(frame, params)
    expected = python_reference(frame, params)

    assert reference.stats["quarantined"] == expected["quarantined"]
    assert collections.Counter(zip(reference.example_splits, reference.history_lengths)) == expected["history"]
    assert collections.Counter(zip(reference.example_splits, reference.hard_negatives)) == expected["negatives"]
    labels = {(split, label): count for split, by_label in reference.stats["labels"].items()
              for label, count in by_label.items()}
    assert labels == dict(expected["labels"])
    assert sum(reference.stats["examples"].values()) == len(reference.history_lengths) > 0


def test_pandas_quarantine_reasons_follow_validate_row():
    frame = random_log(12, days=1)
    frame[contract.LISTEN_MS] = frame[contract.LISTEN_MS].astype("float64")
    frame.loc[0, contract.USER_ID] = " "
    frame.loc[1, contract.TRACK_ID] = ""
    frame.loc[2, contract.TIMESTAMP_MS] = 5
    frame.loc[3, contract.LISTEN_MS] = contract.MAX_DURATION_MS + 1
    frame.loc[4, contract.TRACK_MS] = -1
    frame.loc[5, contract.FEEDBACK] = "thumb_sideways"
    frame.loc[6, contract.LISTEN_MS] = float("nan")  # missing duration: valid, never a skip by duration
    reasons = pandas_labelling.quarantine_reasons(frame)
    expected = [contract.validate_row({k: None if isinstance(v, float) and math.isnan(v) else v
                                       for k, v in row.items()}).reason or ""
                for row in frame.to_dict("records")]
    assert list(reasons) == expected
    assert reasons[6] == ""


@pytest.mark.pipeline
def test_pandas_reference_agrees_with_the_beam_labeller(tmp_path):
    """Every count of feedback_stats.json, on a small simulated log, from the real executor."""
    from benchmarks import labeler
    from listening_logs import spans

    frame = simulate.generate(simulate.SimulationConfig(users=50, tracks=400, events=2500, days=3, seed=4)).frame()
    labeler.write_examples(frame, tmp_path / labeler.EXAMPLES_DIRNAME / f"Split-{labeler.SPLIT}", shards=2)
    labeler.write_schema(tmp_path / labeler.SCHEMA_DIRNAME)
    spans.write_spans(frame, tmp_path / "parquet", "parquet")
    beam = labeler.run_labeler(tmp_path, tmp_path / "run", 1, len(frame), 0.05, lambda message: None)
    params = configs.PipelineConfig().labeling_params()
    reference = pandas_labelling.label_log(pandas_labelling.read_log((tmp_path / "parquet").glob("*/*.parquet")),
                                           params)
    assert pandas_labelling.differences(reference.stats, beam["_stats"]) == {}
    assert reference.stats["labels"] == beam["_stats"]["labels"]


# --- Settings, estimate, completeness rules ------------------------------------------------------------

def test_size_overrides_are_typed_and_checked():
    profile = settings.with_overrides(settings.QUICK, ["labelling_events=1234", "retrieval_loop_s=0.25"])
    assert profile.labelling_events == 1234 and profile.retrieval_loop_s == 0.25
    with pytest.raises(ValueError, match="KEY one of"):
        settings.with_overrides(settings.QUICK, ["no_such_size=1"])
    with pytest.raises(ValueError, match="expected int"):
        settings.with_overrides(settings.QUICK, ["labelling_events=many"])
    with pytest.raises(ValueError, match="must be > 0"):
        settings.with_overrides(settings.QUICK, ["serving_loop_s=0"])


def test_every_profile_has_an_estimate_for_every_section():
    for profile in settings.PROFILES.values():
        seconds = estimate.section_seconds(profile, settings.SECTIONS)
        assert set(seconds) == set(settings.SECTIONS) and all(value >= 0 for value in seconds.values())
    assert sum(estimate.section_seconds(settings.QUICK, settings.SECTIONS).values()) < 600


def test_completeness_rules_catch_missing_and_broken_numbers():
    document = {key: {} for key in results.TOP_LEVEL_KEYS}
    document["machine"] = {"cpu": {"flags": ["avx2"]}}
    document["sections"] = {"pipeline": {"plays": 10, "wall_s": 1.0, "mlmd_span_s": float("nan"), "events_per_s": 3.0,
                                         "components": [{"seconds": 1.0, "share_of_run": 1.5}],
                                         "slowest_component": "Trainer", "slowest_share": 0.5,
                                         "curve": {"sizes": [{"plays": 10, "mlmd_span_s": 2.0}]}}}
    found = results.problems(json_safe(document), ("pipeline", "serving"))
    assert "pipeline.mlmd_span_s: None is not positive" in found
    assert "pipeline.components.0.share_of_run: 1.5 is not unit" in found
    assert "section 'serving' missing" in found
    assert len(found) == 3


def test_a_pipeline_root_without_a_run_is_a_usage_error(tmp_path, capsys):
    from benchmarks import run

    with pytest.raises(SystemExit) as exit_info:
        run.main(["--tiny", "--out", str(tmp_path / "out"), "--pipeline-root", str(tmp_path)])
    assert exit_info.value.code == 2
    assert f"--pipeline-root {tmp_path} holds no pipeline run" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --- The optimizer's step cost against the track table's size ----------------------------------------------

@pytest.mark.parametrize("arguments, message", [(["--optimizers", "adam,sgd"], "--optimizers takes names from"),
                                                (["--rounds", "0"], "--rounds and --steps must be >= 1")])
def test_optimizer_step_refuses_bad_arguments(tmp_path, capsys, arguments, message):
    assert optimizer_step.main(["--run", str(tmp_path), *arguments]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.pipeline
def test_optimizer_step_pads_the_track_table_and_times_every_model(trained_pipeline):
    """Both optimizers at 1x and 2x the catalog; the track table's gradient is row-wise (what lazy_adam needs);
    no timing is asserted, only that every model was timed in every round and the ratios are consistent."""
    record = optimizer_step.measure(trained_pipeline.root, [1, 2], ["adam", "lazy_adam"], rounds=2, steps=2,
                                    say=lambda line: None)
    catalog = record["catalog_rows"]
    assert [(row["optimizer"], row["table_rows"]) for row in record["rows"]] == [
        ("adam", catalog), ("adam", 2 * catalog), ("lazy_adam", catalog), ("lazy_adam", 2 * catalog)]
    assert any("track_embedding" in name for name in record["sparse_gradient_variables"])
    assert record["steps_per_pass"] == 2 and len(record["load_averages"]) == 3
    for row in record["rows"]:
        assert len(row["cpu_per_step_runs_ms"]) == 2 and all(value > 0 for value in row["cpu_per_step_runs_ms"])
        assert row["cpu_ratio_to_scale_1"] == pytest.approx(
            row["cpu_ms_per_step"]["median"] / record["rows"][0 if row["optimizer"] == "adam" else 2]
            ["cpu_ms_per_step"]["median"], abs=1e-3)
    assert all("cpu_ratio_to_adam" in row for row in record["rows"][2:])
    assert "| lazy_adam |" in optimizer_step.markdown(record)


# --- The pipeline cost curve ---------------------------------------------------------------------------

def test_scaled_runs_grow_plays_listeners_and_catalog_together():
    base, triple = (RunSpec.of(settings.FULL, "pipeline", scale) for scale in (1.0, 3.0))
    assert (triple.events, triple.users, triple.tracks) == (3 * base.events, 3 * base.users, 3 * base.tracks)
    assert (triple.days, triple.settings) == (base.days, base.settings) and triple.name != base.name
    assert [RunSpec.of(settings.FULL, "pipeline", scale).events for scale in settings.FULL.scales] == \
        [100_000, 1_000_000, 3_000_000]
    quick = settings.with_overrides(settings.QUICK, ["pipeline_scales=2.5,1"])
    assert [RunSpec.of(quick, "pipeline", scale).events for scale in quick.scales] == [40_000, 100_000]
    assert RunSpec.of(quick, "pipeline") == RunSpec.of(quick, "model")  # scale 1 is still the one shared run
    with pytest.raises(ValueError, match="include 1"):
        settings.with_overrides(settings.QUICK, ["pipeline_scales=0.5,2"])
    with pytest.raises(ValueError, match="pipeline_scales"):
        settings.with_overrides(settings.QUICK, ["pipeline_scales=1,-2"])


def test_stage_resources_cut_cpu_and_peak_rss_by_time():
    mb = measure.MB
    timeline = [measure.ResourceSample(1000.0 * t, rss * mb, cpu) for t, rss, cpu in
                [(0, 100, 0.0), (1, 300, 1.0), (2, 200, 3.0), (3, 150, 3.5), (4, 100, 4.0)]]
    assert pipeline_timing.stage_resources(timeline, 1000, 3000) == (pytest.approx(2.5), 300.0)
    cpu, peak = pipeline_timing.stage_resources(timeline, 1500, 1600)  # no sample inside: the nearest one (2 s)
    assert cpu == pytest.approx(0.2) and peak == 200.0
    assert pipeline_timing.stage_resources(None, 0, 1) == (None, None)


def curve_point(plays: int, seconds: dict[str, float], cpu: float) -> dict:
    return {"plays": plays, "users": plays // 50, "tracks": plays // 20, "mlmd_span_s": sum(seconds.values()),
            "cpu_s": cpu, "peak_rss_mb": 1000.0, "wall_s": None, "load_average": [1.0, 1.0, 1.0],
            "components": [{"component": name, "seconds": value, "cpu_s": value} for name, value in seconds.items()]}


def test_growth_exponents_between_sizes():
    assert pipeline_timing.growth_exponent(10.0, 100.0, 1_000, 10_000) == pytest.approx(1.0)
    assert pipeline_timing.growth_exponent(10.0, 90.0, 1_000, 3_000) == pytest.approx(2.0)
    assert pipeline_timing.growth_exponent(None, 90.0, 1_000, 3_000) is None
    assert pipeline_timing.growth_exponent(10.0, 90.0, 1_000, 1_000) is None
    small = curve_point(100_000, {"Trainer": 10.0, "RetrievalEvaluator": 1.0}, 11.0)
    middle = curve_point(1_000_000, {"Trainer": 100.0, "RetrievalEvaluator": 100.0}, 200.0)
    large = curve_point(3_000_000, {"Trainer": 300.0, "RetrievalEvaluator": 900.0}, 1200.0)
    curve = pipeline_timing.cost_curve([large, small, middle])
    assert [size["plays"] for size in curve["sizes"]] == [100_000, 1_000_000, 3_000_000]
    first, second = curve["exponents"]
    assert first["components"]["Trainer"]["seconds"] == pytest.approx(1.0)
    assert first["components"]["RetrievalEvaluator"]["cpu_s"] == pytest.approx(2.0)
    assert second["components"]["RetrievalEvaluator"]["seconds"] == pytest.approx(2.0)
    assert second["run_s"] == pytest.approx(math.log(1200 / 200) / math.log(3))
    assert curve["max_run_exponent"] == pytest.approx(second["run_s"]) and curve["linear"] is False
    assert pipeline_timing.cost_curve([small])["linear"] is None
    markdown = report.cost_curve(json_safe(curve))
    assert "| RetrievalEvaluator | 1 (1) | 100 (100) | 900 (900) | 2.00 (2.00) | 2.00 (2.00) |" in markdown
    assert "NOT linear" in markdown
    assert "no cost curve" in report.cost_curve(json_safe(pipeline_timing.cost_curve([small])))


def test_numbers_in_the_report_read_well():
    assert report.number(1234567.8) == "1,234,568"
    assert report.number(0.012345) == "0.0123"
    assert report.number(None) == "n/a" and report.number(float("nan")) == "n/a"
    assert report.times(0.4) == "0.4×" and report.times(None) == "n/a"


# --- Smoke run -----------------------------------------------------------------------------------------

SECTION_HEADINGS = ("## Headlines", "## 1. Labelling", "## 2. Training", "## 3. Retrieval", "## 4. Serving",
                    "## 5. Pipeline")


@pytest.mark.pipeline
def test_tiny_benchmark_run_writes_complete_results(tmp_path, trained_pipeline):
    """Every section at tiny sizes through the CLI, re-measuring the shared trained pipeline's run
    (--pipeline-root: nothing simulated or run again); results.json complete, RESULTS.md with each section's
    tables, and the repository's benchmarks/RESULTS.md untouched."""
    repo_results = REPO_ROOT / "benchmarks" / settings.RESULTS_MD
    before = repo_results.stat().st_mtime_ns if repo_results.exists() else None
    out = tmp_path / "bench"
    process = subprocess.run([sys.executable, "-m", "benchmarks.run", "--tiny", "--out", str(out),
                              "--pipeline-root", str(trained_pipeline.root)], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S,
                             env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert process.returncode == 0, process.stderr[-6000:]

    document = json.loads((out / settings.RESULTS_JSON).read_text())
    assert results.problems(document) == []
    assert document["complete"] is True and document["errors"] == {}
    assert document["profile"] == "tiny" and document["quick"] is True
    # the given run served the training, serving and pipeline sections; no run of the benchmark's own
    root = trained_pipeline.root.resolve()
    assert document["pipeline_root"] == str(root) and not (out / "pipeline-runs").exists()
    assert document["sections"]["training"]["model_run"] == str(trained_pipeline.root)
    assert pathlib.Path(document["sections"]["serving"]["model_dir"]).resolve().is_relative_to(root)
    simulated = json.loads((trained_pipeline.data / simulate.SUMMARY_FILENAME).read_text())["events"]
    assert document["sections"]["pipeline"]["plays"] == simulated and document["sections"]["pipeline"]["given_root"]
    assert set(document["sections"]) == set(settings.SECTIONS)
    assert document["machine"]["cpu"]["flags"] and document["versions"]["tensorflow"]
    assert document["threads"]["retrieval_threads"] == [1, 2] and document["seeds"]["training"]
    retrieval = document["sections"]["retrieval"]["catalogs"][0]
    assert {row["method"] for row in retrieval["rows"]} == {"numpy_exact", "tf_exact", "scann_native", "scann_tf_op"}
    assert {row["threads"] for row in retrieval["rows"]} == {1, 2}
    assert all(row["recall"] == pytest.approx(1.0) for row in retrieval["rows"] if row["method"] == "numpy_exact")
    serving = document["sections"]["serving"]
    assert [row["clients"] for row in serving["closed_loop"]] == [1, 2, 4, 8]
    assert serving["version_swap"]["failed"] == 0
    pipeline = document["sections"]["pipeline"]
    assert {"ExampleGen", "FeedbackLabeler", "Transform", "Trainer"} <= {row["component"] for row in
                                                                         pipeline["components"]}
    assert document["sections"]["labelling"]["agreement"]["agrees"] is True

    markdown = (out / settings.RESULTS_MD).read_text()
    for heading in SECTION_HEADINGS:
        assert heading in markdown
        assert "\n| " in markdown.split(heading, 1)[1], f"no table after {heading}"
    assert "Incomplete run" not in markdown
    after = repo_results.stat().st_mtime_ns if repo_results.exists() else None
    assert after == before, "a tiny run must not rewrite benchmarks/RESULTS.md"
