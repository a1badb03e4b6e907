"""The pushed serving SavedModels (docs/design.md §7) from a real pipeline run: contract, exclusions, stock ops."""
from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from models import export_format, memory, neighbours, serving_export
from models.exported import ExportedModel
from models.params import DislikePenalty
from pipeline import configs
from schema import contract
from tests.conftest import TrainedPipeline

pytestmark = pytest.mark.pipeline
CONFIG = configs.PipelineConfig()


def pushed_dir(trained_pipeline: TrainedPipeline, kind: str) -> pathlib.Path:
    destination = trained_pipeline.result.pushed[f"{'Scann' if kind == serving_export.SCANN else 'BruteForce'}Pusher"]
    assert destination, "the trained pipeline's model was not pushed"
    path = pathlib.Path(destination)
    assert path.parent == trained_pipeline.root / configs.SERVING_DIR / configs.SERVED_MODEL_NAMES[kind]
    assert path.name.isdigit(), "TF Serving needs integer version folders"
    return path


@pytest.fixture(scope="module")
def exported(trained_pipeline) -> ExportedModel:
    return ExportedModel.load(trained_pipeline.result.outputs["Trainer"]["model"][0])


@pytest.fixture(scope="module", params=serving_export.INDEX_KINDS)
def served(request, trained_pipeline):
    return request.param, tf.saved_model.load(str(pushed_dir(trained_pipeline, request.param)))


def recommend(loaded, history, station="", exclude=()):
    exclude = list(exclude) + [""] * (CONFIG.serving_max_exclusions - len(exclude))
    out = loaded.signatures["serving_default"](
        history_track_ids=tf.constant([[track for track, _ in history]], tf.string),
        history_feedback=tf.constant([[label for _, label in history]], tf.string),
        station_id=tf.constant([station]), exclude_track_ids=tf.constant([exclude]))
    return [t.decode() for t in out["track_ids"].numpy()[0]], out["scores"].numpy()[0]


def test_signatures_follow_the_serving_contract(served):
    _, loaded = served
    signature = loaded.signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    assert {name: spec.dtype for name, spec in inputs.items()} == {
        "history_track_ids": tf.string, "history_feedback": tf.string, "station_id": tf.string,
        "exclude_track_ids": tf.string}
    assert inputs["exclude_track_ids"].shape.as_list() == [None, CONFIG.serving_max_exclusions]
    assert {name: spec.dtype for name, spec in signature.structured_outputs.items()} == {
        "track_ids": tf.string, "scores": tf.float32}
    assert all(spec.shape.as_list() == [None, CONFIG.serving_top_k] for spec in signature.structured_outputs.values())
    assert "query_embedding" in loaded.signatures


def test_top_k_distinct_known_tracks_with_descending_scores(served, exported):
    _, loaded = served
    tracks = exported.vocabularies.tracks
    ids, scores = recommend(loaded, [(tracks[10], "like"), (tracks[20], "listen"), ("never-seen-track", "like")],
                            station="never-seen-station")
    assert len(ids) == CONFIG.serving_top_k == len(set(ids))
    assert set(ids) <= set(tracks)
    assert np.all(np.diff(scores) <= 1e-6)


def test_dislikes_and_exclusions_never_come_back(served, exported):
    _, loaded = served
    tracks = exported.vocabularies.tracks
    history = [(tracks[3], "like"), (tracks[4], "listen")]
    before, _ = recommend(loaded, history)
    disliked, excluded = before[0], before[1:4]
    after, _ = recommend(loaded, history + [(disliked, "dislike")], exclude=excluded)
    assert disliked not in after and not set(excluded) & set(after)
    assert len(after) == CONFIG.serving_top_k == len(set(after))


def test_brute_force_scores_are_the_exact_dot_products(trained_pipeline, exported):
    loaded = tf.saved_model.load(str(pushed_dir(trained_pipeline, serving_export.BRUTE_FORCE)))
    tracks = list(exported.vocabularies.tracks)
    history = [(tracks[7], "like"), (tracks[8], "skip")]
    ids, scores = recommend(loaded, history)
    query = loaded.signatures["query_embedding"](
        history_track_ids=tf.constant([[t for t, _ in history]]), history_feedback=tf.constant([[label for _, label in history]]),
        station_id=tf.constant([""]))["query_embedding"].numpy()[0]
    exact = exported.candidate_embeddings[: len(tracks)] @ query
    if exported.memory_weights is not None:  # the history memory term: the skipped track 8 scores lower
        labels = np.array([[contract.LABEL_IDS[label] for _, label in history]])
        exact = exact + memory.dense_offsets(exported.memory_weights, np.array([[7, 8]]), labels,
                                             np.ones((1, 2), bool), len(tracks))[0]
    expected = [tracks[i] for i in np.argsort(-exact)[: CONFIG.serving_top_k]]
    assert ids[:10] == expected[:10]
    np.testing.assert_allclose(scores, np.sort(exact)[::-1][: CONFIG.serving_top_k], rtol=1e-4, atol=1e-5)


def test_warmup_requests_ship_with_each_version(served, trained_pipeline):
    from tensorflow_serving.apis import prediction_log_pb2

    kind, _ = served
    path = pushed_dir(trained_pipeline, kind) / serving_export.WARMUP_FILE
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
    assert logs and set(logs[0].predict_log.request.inputs) == {
        "history_track_ids", "history_feedback", "station_id", "exclude_track_ids"}


OP_CHECK = r"""
import json, pathlib, sys
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

path = pathlib.Path(sys.argv[1])
proto = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
ops = set()
for meta_graph in proto.meta_graphs:
    ops |= {node.op for node in meta_graph.graph_def.node}
    for function in meta_graph.graph_def.library.function:
        ops |= {node.op for node in function.node_def}
unknown = sorted(op for op in ops if op_def_registry.get(op) is None)
loaded = tf.saved_model.load(str(path))
out = loaded.signatures["serving_default"](
    history_track_ids=tf.constant([["x"]]), history_feedback=tf.constant([["like"]]),
    station_id=tf.constant([""]), exclude_track_ids=tf.constant([[""] * int(sys.argv[2])]))
print(json.dumps({"unknown_ops": unknown, "scann_imported": any(m.startswith("scann") for m in sys.modules),
                  "k": int(out["track_ids"].shape[1]), "ops": len(ops)}))
"""


def op_report(path: pathlib.Path) -> dict:
    completed = subprocess.run([sys.executable, "-c", OP_CHECK, str(path), str(CONFIG.serving_max_exclusions)],
                               capture_output=True, text=True, timeout=300)
    if completed.returncode:
        return {"error": completed.stderr[-3000:]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_brute_force_export_loads_without_scann_and_uses_stock_ops_only(trained_pipeline):
    report = op_report(pushed_dir(trained_pipeline, serving_export.BRUTE_FORCE))
    assert "error" not in report, report.get("error")
    assert report["unknown_ops"] == [] and report["scann_imported"] is False
    assert report["k"] == CONFIG.serving_top_k and report["ops"] > 10


def test_scann_export_needs_the_scann_ops(trained_pipeline):
    """The other side of the check above: without ScaNN's ops the ScaNN twin cannot load."""
    report = op_report(pushed_dir(trained_pipeline, serving_export.SCANN))
    assert "error" in report and "Scann" in report["error"]


def test_export_refuses_a_catalog_smaller_than_what_a_request_needs(exported):
    too_big = serving_export.ServingParams(top_k=len(exported.vocabularies.tracks), max_exclusions=1)
    with pytest.raises(ValueError, match="lower serving_top_k"):
        serving_export.RecommenderModule(exported, serving_export.BRUTE_FORCE, too_big, CONFIG.scann_params())


def test_a_scann_search_that_finds_too_few_candidates_searches_every_leaf(exported):
    """Leaves of ~5 tracks and one searched: the query's leaf holds fewer than the top 20 a request asks for
    (and far fewer than the 20 + 5 + max_history candidates it needs), which used to fail the request."""
    num_tracks = len(exported.vocabularies.tracks)
    sparse = dataclasses.replace(CONFIG.scann_params(), scann_min_catalog=1, scann_num_leaves=num_tracks // 5,
                                 scann_num_leaves_to_search=1)
    serving = serving_export.ServingParams(top_k=20, max_exclusions=5)
    module = serving_export.RecommenderModule(exported, serving_export.SCANN, serving, sparse)
    assert isinstance(module.index, tfrs.layers.factorized_top_k.ScaNN)
    history = [(track, "like") for track in exported.vocabularies.tracks[:3]]
    _, few = module.index(module.query_embedding(
        history_track_ids=tf.constant([[t for t, _ in history]]), history_feedback=tf.constant([["like"] * 3]),
        station_id=tf.constant([""]))["query_embedding"], k=20 + 5 + exported.max_history)
    assert few.shape[1] < 20  # the situation this test is about
    excluded = list(exported.vocabularies.tracks[3:5]) + [""] * 3
    out = module.recommend(history_track_ids=tf.constant([[t for t, _ in history]]),
                           history_feedback=tf.constant([["like"] * 3]), station_id=tf.constant([""]),
                           exclude_track_ids=tf.constant([excluded]))
    ids = [t.decode() for t in out["track_ids"].numpy()[0]]
    scores = out["scores"].numpy()[0]
    assert len(set(ids)) == 20 and set(ids) <= set(exported.vocabularies.tracks)
    assert not set(ids) & set(excluded[:2]) and np.all(np.diff(scores) <= 1e-6)


def test_a_catalog_below_scann_min_catalog_gets_an_exact_index():
    embeddings = np.eye(8, dtype=np.float32)
    tiny = dataclasses.replace(CONFIG.scann_params(), scann_min_catalog=9)
    index = serving_export.build_index(serving_export.SCANN, embeddings, [f"t{i}" for i in range(8)], 3, tiny)
    assert isinstance(index, tfrs.layers.factorized_top_k.BruteForce)
    _, ids = index(tf.constant(embeddings[2:3]), k=1)
    assert ids.numpy()[0, 0] == b"t2"


@pytest.mark.parametrize("kind", serving_export.INDEX_KINDS)
def test_history_memory_rescores_retrieved_tracks_and_brings_in_history_tracks(trained_pipeline, kind):
    """With the memory term (models/memory.py) a liked history track the index would never return is served, a
    skipped one that it would return is not, and every score is the dot product plus the track's offset."""
    model = ExportedModel.load(trained_pipeline.result.outputs["Trainer"]["model"][0])
    tracks = list(model.vocabularies.tracks)
    weights = {label: 0.0 for label in contract.LABELS}
    weights.update({contract.LIKE: 5.0, contract.SKIP: -5.0})
    # the memory alone: with the dislike-neighbour rule an exact index would rescore the whole catalog
    model.config = {**model.config, export_format.HISTORY_MEMORY_KEY: weights,
                    "training": {**model.config["training"], "dislike_neighbour_weight": 0.0}}
    module = serving_export.RecommenderModule(model, kind, CONFIG.serving_params(), CONFIG.scann_params())

    def exact_scores(history: list[tuple[str, str]]) -> np.ndarray:
        query = module.query_embedding(history_track_ids=tf.constant([[t for t, _ in history]]),
                                       history_feedback=tf.constant([[label for _, label in history]]),
                                       station_id=tf.constant([""]))["query_embedding"].numpy()[0]
        return model.candidate_embeddings[: len(tracks)] @ query

    plain = exact_scores([(tracks[3], "listen")])
    worst, best = int(np.argmin(plain)), int(np.argmax(plain))
    history = [(tracks[3], "listen"), (tracks[worst], "like"), (tracks[best], "skip")]
    exact = exact_scores(history)
    assert np.sum(exact > exact[worst]) > module._retrieved, "the liked track must be out of the index's reach"
    out = module.recommend(history_track_ids=tf.constant([[t for t, _ in history]]),
                           history_feedback=tf.constant([[label for _, label in history]]), station_id=tf.constant([""]),
                           exclude_track_ids=tf.constant([[""] * CONFIG.serving_max_exclusions]))
    ids = [t.decode() for t in out["track_ids"].numpy()[0]]
    scores = out["scores"].numpy()[0]
    assert ids[0] == tracks[worst], "the liked history track, which the index ranks last, is served first"
    assert tracks[best] not in ids, "the skipped track the index ranks first falls out of the top-k"
    assert len(set(ids)) == len(ids) == CONFIG.serving_top_k
    offsets = {tracks[worst]: 5.0, tracks[best]: -5.0}
    expected = [exact[tracks.index(t)] + offsets.get(t, 0.0) for t in ids]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", serving_export.INDEX_KINDS)
def test_a_dislike_lowers_its_neighbours_in_the_served_top_k_by_the_rule(trained_pipeline, kind):
    """With the dislike-neighbour rule (models/neighbours.py) and no memory: every served score is the exact dot
    product minus the track's penalty, and the top-10 moves away from the disliked track."""
    model = ExportedModel.load(trained_pipeline.result.outputs["Trainer"]["model"][0])
    tracks = list(model.vocabularies.tracks)
    plain_config = {**model.config, export_format.HISTORY_MEMORY_KEY: None,
                    "training": {**model.config["training"], "dislike_neighbour_weight": 0.0}}
    rule = DislikePenalty(weight=2.0, floor=0.5)
    ruled_config = {**plain_config, "training": {**plain_config["training"], "dislike_neighbour_weight": rule.weight,
                                                 "dislike_neighbour_floor": rule.floor}}
    units = neighbours.unit_part(model.candidate_embeddings[: len(tracks)], model.embedding_dim)

    def served(config: dict, history: list[tuple[str, str]]) -> tuple[list[str], np.ndarray]:
        model.config = config
        module = serving_export.RecommenderModule(model, kind, CONFIG.serving_params(), CONFIG.scann_params())
        out = module.recommend(history_track_ids=tf.constant([[t for t, _ in history]]),
                               history_feedback=tf.constant([[label for _, label in history]]),
                               station_id=tf.constant([""]),
                               exclude_track_ids=tf.constant([[""] * CONFIG.serving_max_exclusions]))
        return [t.decode() for t in out["track_ids"].numpy()[0]], out["scores"].numpy()[0]

    listened, _ = served(plain_config, [(tracks[3], "listen")])
    history = [(tracks[3], "listen"), (listened[0], "dislike")]
    plain_ids, _ = served(plain_config, history)
    ruled_ids, ruled_scores = served(ruled_config, history)
    disliked = tracks.index(listened[0])
    closeness = units @ units[disliked]
    penalty = rule.weight * np.maximum(closeness - rule.floor, 0.0) / (1.0 - rule.floor)
    module = serving_export.RecommenderModule(model, kind, CONFIG.serving_params(), CONFIG.scann_params())
    embedding = module.query_embedding(history_track_ids=tf.constant([[t for t, _ in history]]),
                                       history_feedback=tf.constant([[label for _, label in history]]),
                                       station_id=tf.constant([""]))["query_embedding"].numpy()[0]
    exact = model.candidate_embeddings[: len(tracks)] @ embedding
    expected = [exact[tracks.index(t)] - penalty[tracks.index(t)] for t in ruled_ids]
    np.testing.assert_allclose(ruled_scores, expected, rtol=1e-5, atol=1e-5)
    assert np.all(np.diff(ruled_scores) <= 1e-6) and len(set(ruled_ids)) == CONFIG.serving_top_k
    if kind == serving_export.BRUTE_FORCE:  # exact: the whole catalog rescored, however many tracks the rule lowers
        ruled = exact - penalty
        ruled[disliked] = -np.inf
        assert ruled_ids == [tracks[i] for i in np.argsort(-ruled)[: CONFIG.serving_top_k]]
    top = 10
    assert penalty[[tracks.index(t) for t in plain_ids[:top]]].sum() > 0, "the disliked track has no neighbour served"
    assert np.mean(closeness[[tracks.index(t) for t in ruled_ids[:top]]]) < \
        np.mean(closeness[[tracks.index(t) for t in plain_ids[:top]]])
