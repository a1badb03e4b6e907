"""The evaluation of record: one model on one run's test split, with slices, baselines and the blessing.

Library code, so the component's executor and `experiments.reproduce` produce the same numbers.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import tensorflow_transform as tft

from components.retrieval_evaluator import blessing
from models import evaluation, features, inputs, metrics, responsiveness, serving_export
from models.exported import ExportedModel, IdMap, Vocabularies
from schema import contract

EVAL_BATCH = 256
ANN_QUERIES = 2000
"""Test queries ANN recall is measured on (more add time, not precision that matters for the floor)."""
LEAVES_TO_SEARCH_SHARES = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
"""Shares of ScaNN's leaves tried, in order, when the number of leaves to search is automatic."""
NO_ARTIST_REASON = ("no artist map was given: the evaluator's inputs (Transform's graph and examples, "
                    "FeedbackLabeler's stats) carry no artist_id; evaluate_model(artist_by_track=...) takes one "
                    "(models.responsiveness.read_artist_by_track reads a log's catalog/tracks.csv or artist_id column)")


@dataclasses.dataclass(frozen=True)
class RunData:
    """One run's Transform output and its transformed examples (split folders `Split-<name>`)."""

    transform_graph_uri: str
    examples_uri: str

    def split_pattern(self, split: str) -> str:
        return os.path.join(self.examples_uri, f"Split-{split}", "*")

    @property
    def transform_output(self) -> tft.TFTransformOutput:
        return tft.TFTransformOutput(self.transform_graph_uri)

    def vocabularies(self) -> Vocabularies:
        return Vocabularies.of_transform(self.transform_output)


def test_sample(data: RunData, params: blessing.EvaluationParams) -> inputs.RecordSample:
    """The test examples the metrics score: all of them up to params.max_test_queries, else a seeded sample."""
    return inputs.sample_records(data.split_pattern(contract.TEST), params.max_test_queries, params.seed)


def describe_sample(sample: inputs.RecordSample, collected: evaluation.Collected,
                    params: blessing.EvaluationParams) -> dict[str, Any]:
    """evaluation.json's test_sample: how many test examples were scored out of how many, and the noise."""
    return {"sampled": sample.sampled, "examples_scored": len(sample.records), "examples_in_split": sample.total,
            "max_test_queries": params.max_test_queries, "seed": params.seed,
            "standard_error": evaluation.sampling_standard_errors(collected, sample.total)}


def collect_for(model: ExportedModel, data: RunData, split: str = contract.TEST,
                max_hard_negatives: Optional[int] = None,
                sample: Optional[inputs.RecordSample] = None) -> evaluation.Collected:
    """Scores `model` on a run's split (only `sample`'s examples when given), translating ids when the model
    came from another run."""
    reference = data.vocabularies()
    same_vocabulary = list(reference.tracks) == list(model.vocabularies.tracks) and \
        list(reference.stations) == list(model.vocabularies.stations)
    id_map = None if same_vocabulary else IdMap.between(reference, model.vocabularies)
    hard = int(model.config["training"]["max_hard_negatives"]) if max_hard_negatives is None else max_hard_negatives
    dataset = inputs.read_transformed(data.split_pattern(split), data.transform_output, EVAL_BATCH,
                                      model.max_history, hard) if sample is None else \
        inputs.parse_records(sample.dataset(), data.transform_output, EVAL_BATCH, model.max_history, hard)
    return evaluation.collect(dataset, model.scorer(id_map), max(metrics.DEFAULT_KS))


def cosine_similarities(embeddings: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """Cosine similarity between the feedback-type embeddings (the paper's like/listen/skip/dislike table)."""
    labels = [label for label in contract.LABELS if label in embeddings]
    matrix = np.array([embeddings[label] for label in labels], dtype=np.float64)
    unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    return {"labels": labels, "cosine": np.round(unit @ unit.T, 4).tolist()}


def test_query_embeddings(model: ExportedModel, data: RunData, limit: int = ANN_QUERIES) -> np.ndarray:
    """The model's query embeddings for (up to `limit`) test examples: what ANN recall is measured on."""
    dataset = inputs.read_transformed(data.split_pattern(contract.TEST), data.transform_output, EVAL_BATCH,
                                      model.max_history, 0)
    queries, count = [], 0
    for batch in dataset:
        queries.append(model.query_embeddings(batch).numpy())
        count += len(queries[-1])
        if count >= limit:
            break
    return np.concatenate(queries)[:limit]


def ann_recall_at_k(model: ExportedModel, data: RunData, scann: serving_export.ScannParams,
                    params: blessing.EvaluationParams) -> tuple[dict[int, float], serving_export.ScannParams, list]:
    """ScaNN (as the serving export builds it) against the exact top-k on this run's test queries.

    With `scann_num_leaves_to_search` 0 (auto) the smallest searched share of leaves whose recall@ann_recall_k
    reaches the floor is chosen (how far a query lands from its neighbours' leaves depends on the trained
    towers, so no fixed share fits every model). Returns (recall by k, the parameters used, the sweep).
    """
    num_tracks = len(model.vocabularies.tracks)
    ks = sorted({k for k in (*metrics.DEFAULT_KS, params.ann_recall_k) if k <= num_tracks}) or [num_tracks]
    if not scann.uses_scann(num_tracks):  # an exact index finds the exact top-k at every k
        exact = {"exact_index": True,
                 "reason": f"{num_tracks} tracks is below scann_min_catalog ({scann.scann_min_catalog}): the index is exact"}
        return {k: 1.0 for k in sorted({*metrics.DEFAULT_KS, params.ann_recall_k})}, scann, [exact]
    queries = test_query_embeddings(model, data)
    candidates = model.candidate_embeddings[:num_tracks]
    leaves, _ = scann.leaves(num_tracks)
    fixed = scann.scann_num_leaves_to_search > 0
    shares = [None] if fixed else LEAVES_TO_SEARCH_SHARES
    exact_top = serving_export.exact_top_k(queries, candidates, max(ks))
    sweep = []
    for share in shares:
        chosen = scann if fixed else dataclasses.replace(
            scann, scann_num_leaves=leaves, scann_num_leaves_to_search=max(1, int(np.ceil(share * leaves))))
        recall = serving_export.ann_recall(queries, candidates, model.vocabularies.tracks, ks, chosen, exact_top)
        sweep.append({"num_leaves": leaves, "num_leaves_to_search": chosen.leaves(num_tracks)[1],
                      "recall_at_k": recall})
        if recall.get(params.ann_recall_k, recall[max(ks)]) >= params.min_ann_recall:
            break
    return recall, chosen, sweep


def responsiveness_of(model: ExportedModel, data: RunData, artist_by_track: Optional[Mapping[str, str]] = None,
                      artist_reason: str = NO_ARTIST_REASON,
                      max_queries: int = responsiveness.MAX_QUERIES) -> dict[str, Any]:
    """models.responsiveness on this run's test split: a thumbs-down vs a listen of each query's target track.

    artist_by_track maps raw track ids to artist ids (None: the artist numbers are null, with artist_reason)."""
    reference = data.vocabularies()
    same_vocabulary = list(reference.tracks) == list(model.vocabularies.tracks) and \
        list(reference.stations) == list(model.vocabularies.stations)
    id_map = None if same_vocabulary else IdMap.between(reference, model.vocabularies)
    dataset = inputs.read_transformed(data.split_pattern(contract.TEST), data.transform_output, EVAL_BATCH,
                                      model.max_history, 0)
    queries = responsiveness.select_queries(dataset, max_queries)
    embeddings = model.candidate_embeddings if id_map is None else model.candidate_embeddings[id_map.tracks]
    artists = None if artist_by_track is None else [artist_by_track.get(track, "") for track in reference.tracks]
    return responsiveness.measure(responsiveness.as_tensors(model.scorer(id_map)), queries, embeddings,
                                  num_tracks=len(reference.tracks), artist_by_track=artists,
                                  artist_unavailable_reason=artist_reason)


def evaluate_model(model: ExportedModel, data: RunData, params: blessing.EvaluationParams,
                   scann: Optional[serving_export.ScannParams] = None,
                   baseline: Optional[ExportedModel] = None,
                   coverage_by_input_policy: Optional[Mapping[str, Any]] = None,
                   training_history: Optional[Sequence[Mapping[str, Any]]] = None,
                   artist_by_track: Optional[Mapping[str, str]] = None,
                   artist_reason: str = NO_ARTIST_REASON,
                   log_summary: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Every number evaluation.json holds, and the blessing decision.

    The test metrics of this model, most-popular and the baseline are computed on the same test examples:
    all of them up to params.max_test_queries, else a seeded sample of that many (result["test_sample"]).

    artist_by_track (raw track id -> artist id) feeds responsiveness' artist_share_drop; without it that
    number is null with artist_reason, and the neighbour-based drop is still measured.
    log_summary (FeedbackLabeler's label counts and examples per split) goes into the report's data section."""
    hard = int(model.config["training"]["max_hard_negatives"])
    sample = test_sample(data, params)
    collected = collect_for(model, data, max_hard_negatives=hard, sample=sample)
    if len(collected) == 0:
        raise ValueError(f"no test examples under {data.split_pattern(contract.TEST)}; the time split left the "
                         "test period empty (check test_cutoff and the spans read)")
    counts = features.track_counts_by_id(data.transform_output)
    selections = evaluation.slice_selections(
        collected, params.slice_rules(), inputs.user_example_counts(data.split_pattern(contract.TRAIN), data.transform_output),
        counts)
    result: dict[str, Any] = {"split": contract.TEST, **evaluation.summarize(collected)}
    result["slices"] = {name: evaluation.summarize(collected, selection=selection) for name, selection in selections.items()}
    result["test_sample"] = describe_sample(sample, collected, params)
    popularity = evaluation.collect(
        inputs.parse_records(sample.dataset(), data.transform_output, EVAL_BATCH, model.max_history, hard),
        evaluation.popularity_scorer(counts))
    result["most_popular"] = evaluation.summarize(popularity)
    result["data"] = {**(dict(log_summary) if log_summary else {}),
                      **evaluation.rejection_popularity(collected, counts),
                      "most_popular_pairwise_accuracy": result["most_popular"]["pairwise_accuracy"]}
    result["baseline"] = None
    if baseline is not None:
        result["baseline"] = {"model": baseline.directory,
                              **evaluation.summarize(collect_for(baseline, data, max_hard_negatives=hard, sample=sample))}
    result["coverage_by_input_policy"] = dict(coverage_by_input_policy) if coverage_by_input_policy else None
    result["feedback_type_similarity"] = cosine_similarities(model.feedback_embeddings)
    result["training_history"] = list(training_history) if training_history else None
    result["responsiveness"] = responsiveness_of(model, data, artist_by_track, artist_reason)
    result["ann_recall_at_k"], result["scann"], result["ann_tuning"] = None, None, None
    if scann is not None:
        recall, chosen, sweep = ann_recall_at_k(model, data, scann, params)
        result["ann_recall_at_k"], result["scann"], result["ann_tuning"] = recall, dataclasses.asdict(chosen), sweep
    result["thresholds"] = dataclasses.asdict(params)
    result.update(blessing.decide(result, result["baseline"], params))
    return result
