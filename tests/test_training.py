"""The pipeline through Trainer and RetrievalEvaluator on a small simulated log: training lowers the loss and
beats most-popular; the evaluator writes its report and blesses, then refuses a model for a stated reason."""
from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from components.retrieval_evaluator import blessing, evaluate, report
from models import evaluation, export_format, features, inputs, trainer
from models.exported import ExportedModel
from pipeline import configs, local_runner, run_outputs
from reports.json_safe import json_safe
from tests.conftest import TRAINED_SETTINGS, TrainedPipeline

pytestmark = pytest.mark.pipeline
SETTINGS = TRAINED_SETTINGS


@pytest.fixture(scope="module")
def workdir(trained_pipeline: TrainedPipeline) -> pathlib.Path:
    return trained_pipeline.workdir


@pytest.fixture(scope="module")
def trained(trained_pipeline: TrainedPipeline) -> local_runner.RunResult:
    return trained_pipeline.result


def eval_dataset(result: local_runner.RunResult, params) -> tuple[tf.data.Dataset, tft.TFTransformOutput]:
    tf_transform_output = tft.TFTransformOutput(result.outputs["Transform"]["transform_graph"][0])
    files = [str(p) for p in pathlib.Path(result.outputs["Transform"]["transformed_examples"][0], "Split-eval").glob("*.gz")]
    spec = tf_transform_output.transformed_feature_spec()
    dataset = (
        tf.data.TFRecordDataset(files, compression_type="GZIP")
        .batch(256)
        .map(lambda records: tf.io.parse_example(records, spec))
        .map(lambda batch: inputs.pad_batch(batch, params.max_history, params.max_hard_negatives))
    )
    return dataset, tf_transform_output


def test_training_lowers_the_loss_and_writes_its_history(trained):
    run_dir = pathlib.Path(trained.outputs["Trainer"]["model_run"][0])
    rows = json.loads((run_dir / export_format.TRAINING_HISTORY_FILE).read_text())["epochs"]
    assert len(rows) == 4
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    for key in ("wall_seconds", "train_loss", "eval_pairwise_accuracy", "eval_recall_at_10", "eval_recall_at_100",
                "examples_per_second"):
        assert all(np.isfinite(row[key]) for row in rows), key
    assert list(run_dir.glob("**/events.out.tfevents.*")), "no TensorBoard logs"
    # the per-epoch evaluation scores a sample only above trainer.EPOCH_EVAL_QUERIES: here every eval example
    assert all(0 < row["eval_queries"] == row["eval_examples_in_split"] <= trainer.EPOCH_EVAL_QUERIES for row in rows)


def test_trained_towers_beat_most_popular_on_eval(trained):
    params = configs.with_overrides(configs.PipelineConfig(), SETTINGS).training_params()
    dataset, tf_transform_output = eval_dataset(trained, params)
    model_dir = pathlib.Path(export_format.exported_model_dir(trained.outputs["Trainer"]["model"][0]))
    query_model = tf.saved_model.load(str(model_dir / export_format.QUERY_MODEL_DIR)).signatures["serving_default"]
    embeddings = np.load(model_dir / export_format.CANDIDATE_EMBEDDINGS_FILE)
    assert embeddings.shape[0] == features.num_track_ids(tf_transform_output)

    def exported_scorer(batch):
        keys = (features.HISTORY_TRACK_IDS_XF, features.HISTORY_LABELS_XF, features.HISTORY_MASK, features.STATION_ID_XF)
        query = query_model(**{key: batch[key] for key in keys})[export_format.QUERY_EMBEDDING]
        return tf.matmul(query, embeddings, transpose_b=True).numpy()

    model = evaluation.evaluate(dataset, exported_scorer)
    baseline = evaluation.evaluate(dataset, evaluation.popularity_scorer(features.track_counts_by_id(tf_transform_output)))
    assert model["pairs"] == baseline["pairs"] > 100
    assert model["pairwise_accuracy"] > baseline["pairwise_accuracy"], (model, baseline)
    assert model["recall_at_k"][100] > baseline["recall_at_k"][100] + 0.1, (model, baseline)


def read_evaluation(result: local_runner.RunResult) -> dict:
    return run_outputs.read_evaluation(result.outputs["RetrievalEvaluator"]["evaluation"][0])


def blessing_properties(result: local_runner.RunResult, workdir: pathlib.Path) -> dict:
    store = run_outputs.sqlite_store(workdir / "root" / configs.METADATA_FILE)
    uri = result.outputs["RetrievalEvaluator"]["blessing"][0]
    [artifact] = [a for a in store.get_artifacts_by_uri(uri)]
    return {key: getattr(value, value.WhichOneof("value")) for key, value in artifact.custom_properties.items()}


def test_evaluator_blesses_the_first_model_and_writes_its_report(trained, workdir):
    evaluation_json = read_evaluation(trained)
    for key in ("pairwise_accuracy", "recall_at_k", "ndcg_at_k", "mrr", "disliked_in_top_k", "coverage", "slices",
                "baseline", "blessed", "blessing_reasons", "most_popular", "coverage_by_input_policy",
                "feedback_type_similarity", "training_history"):
        assert key in evaluation_json, key
    assert set(evaluation_json["recall_at_k"]) == set(evaluation_json["ndcg_at_k"]) == {"10", "50", "100"}
    assert set(evaluation_json["slices"]) == {"cold_users", "warm_users", "heavy_users", "skip_heavy_users",
                                              "head_tracks", "tail_tracks"}
    assert evaluation_json["slices"]["head_tracks"]["examples"] + evaluation_json["slices"]["tail_tracks"]["examples"] \
        == evaluation_json["examples"] > 100
    assert evaluation_json["baseline"] is None and evaluation_json["blessed"] is True
    sample = evaluation_json["test_sample"]  # below the cap: every test example scored
    assert sample["sampled"] is False and sample["examples_scored"] == sample["examples_in_split"] \
        == evaluation_json["examples"] == evaluation_json["queries"] < configs.PipelineConfig().max_test_queries
    assert sample["standard_error"] == {"pairwise_accuracy": 0.0, "recall_at_100": 0.0}
    assert evaluation_json["pairwise_accuracy"] > evaluation_json["most_popular"]["pairwise_accuracy"]
    assert blessing_properties(trained, workdir)["blessed"] == 1
    assert all(trained.pushed.values()), trained.pushed
    html = (pathlib.Path(trained.outputs["RetrievalEvaluator"]["evaluation"][0]) / "evaluation.html").read_text()
    assert html.count("<svg") >= 5 and "http" not in html and "BLESSED" in html


def test_evaluator_refuses_for_a_stated_reason_against_the_blessed_baseline(trained, workdir):
    config = configs.with_overrides(configs.PipelineConfig(), SETTINGS + ["min_pairwise_accuracy=0.99"])
    second = local_runner.run(workdir / "data", workdir / "root", config)
    assert second.outputs["Trainer"]["model"] == trained.outputs["Trainer"]["model"]  # cached: only the verdict changed
    evaluation_json = read_evaluation(second)
    assert evaluation_json["blessed"] is False and evaluation_json["blessing_rule"] == "absolute_threshold"
    [failed] = [reason for reason in evaluation_json["blessing_reasons"] if not reason["passed"]]
    assert failed["metric"] == "pairwise_accuracy" and failed["threshold"] == 0.99
    assert evaluation_json["baseline"] is not None  # the first run's blessed model, found by the Resolver
    assert evaluation_json["baseline"]["pairwise_accuracy"] == pytest.approx(evaluation_json["pairwise_accuracy"])
    assert blessing_properties(second, workdir)["blessed"] == 0
    assert second.pushed == {"BruteForcePusher": None, "ScannPusher": None}  # refused: nothing new to serve


def test_above_the_cap_the_evaluator_scores_a_seeded_sample_and_still_decides(trained):
    """A cap below the test split: every model is scored on the same seeded sample of exactly the cap, the
    report says so, and the blessing rules read the sampled numbers as they read exact ones."""
    data = evaluate.RunData(trained.outputs["Transform"]["transform_graph"][0],
                            trained.outputs["Transform"]["transformed_examples"][0])
    model = ExportedModel.load(trained.outputs["Trainer"]["model"][0])
    params = configs.with_overrides(configs.PipelineConfig(), SETTINGS).evaluation_params()
    total = read_evaluation(trained)["examples"]
    cap = total // 3
    capped = dataclasses.replace(params, max_test_queries=cap)
    first = evaluate.evaluate_model(model, data, capped, baseline=model)
    assert first["queries"] == first["examples"] == first["most_popular"]["queries"] == cap
    assert first["test_sample"]["sampled"] is True and first["test_sample"]["examples_scored"] == cap
    assert first["test_sample"]["examples_in_split"] == total
    assert 0 < first["test_sample"]["standard_error"]["recall_at_100"] < 0.1
    assert first["baseline"]["pairwise_accuracy"] == first["pairwise_accuracy"]  # the same examples for the baseline
    [accuracy_floor] = [reason for reason in first["blessing_reasons"]
                        if (reason["rule"], reason["metric"]) == (blessing.ABSOLUTE, "pairwise_accuracy")]
    assert accuracy_floor["value"] == first["pairwise_accuracy"]  # the rules read the sampled numbers
    assert {key: first[key] for key in ("blessed", "blessing_rule")} == \
        {key: value for key, value in blessing.decide(first, first["baseline"], capped).items() if key != "blessing_reasons"}
    assert "A SAMPLE" in report.render(json_safe(first)) and f"{cap} of {total}" in report.sample_text(first["test_sample"])
    again = evaluate.evaluate_model(model, data, capped, baseline=model)
    assert {key: again[key] for key in ("pairwise_accuracy", "recall_at_k", "mrr", "blessed")} == \
        {key: first[key] for key in ("pairwise_accuracy", "recall_at_k", "mrr", "blessed")}
    other = evaluate.evaluate_model(model, data, dataclasses.replace(capped, seed=params.seed + 1))
    assert other["queries"] == cap and (other["pairs"], other["mrr"]) != (first["pairs"], first["mrr"])
