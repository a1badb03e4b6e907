"""The pipeline through Trainer on a small simulated log: training lowers the loss and beats most-popular."""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from listening_logs import simulate
from models import evaluation, features, inputs, trainer
from pipeline import configs, local_runner

pytestmark = pytest.mark.pipeline
SETTINGS = ["spans=1-7", "positive_policy=like+listen", "epochs=4", "patience=4", "num_random_negatives=32"]
"""like+listen gives ~19k training examples on this log: enough for the towers to learn tastes, so the
comparison with most-popular is about the model, not about luck in the order Beam wrote the examples."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> local_runner.RunResult:
    tmp = tmp_path_factory.mktemp("training")
    simulate.simulate(simulate.SimulationConfig(users=400, tracks=3000, events=40_000, days=7, seed=7), tmp / "data")
    config = configs.with_overrides(configs.PipelineConfig(), SETTINGS)
    return local_runner.run(tmp / "data", tmp / "root", config)


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
    rows = json.loads((run_dir / trainer.TRAINING_HISTORY_FILE).read_text())["epochs"]
    assert len(rows) == 4
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    for key in ("wall_seconds", "train_loss", "eval_pairwise_accuracy", "eval_recall_at_10", "eval_recall_at_100",
                "examples_per_second"):
        assert all(np.isfinite(row[key]) for row in rows), key
    assert list(run_dir.glob("**/events.out.tfevents.*")), "no TensorBoard logs"


def test_trained_towers_beat_most_popular_on_eval(trained):
    params = configs.with_overrides(configs.PipelineConfig(), SETTINGS).training_params()
    dataset, tf_transform_output = eval_dataset(trained, params)
    model_dir = pathlib.Path(trainer.exported_model_dir(trained.outputs["Trainer"]["model"][0]))
    query_model = tf.saved_model.load(str(model_dir / trainer.QUERY_MODEL_DIR)).signatures["serving_default"]
    embeddings = np.load(model_dir / trainer.CANDIDATE_EMBEDDINGS_FILE)
    assert embeddings.shape[0] == features.num_track_ids(tf_transform_output)

    def exported_scorer(batch):
        keys = (features.HISTORY_TRACK_IDS_XF, features.HISTORY_LABELS_XF, features.HISTORY_MASK, features.STATION_ID_XF)
        query = query_model(**{key: batch[key] for key in keys})[trainer.QUERY_EMBEDDING]
        return tf.matmul(query, embeddings, transpose_b=True).numpy()

    model = evaluation.evaluate(dataset, exported_scorer)
    baseline = evaluation.evaluate(dataset, evaluation.popularity_scorer(trainer.track_counts_by_id(tf_transform_output)))
    assert model["pairs"] == baseline["pairs"] > 100
    assert model["pairwise_accuracy"] > baseline["pairwise_accuracy"], (model, baseline)
    assert model["recall_at_k"][100] > baseline["recall_at_k"][100] + 0.1, (model, baseline)
