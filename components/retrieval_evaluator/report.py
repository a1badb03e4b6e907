"""evaluation.html: the evaluation of record as a page a person reads before a model is pushed."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from models import metrics
from reports import html

KS = metrics.DEFAULT_KS
HEADLINE_ROWS = ("pairwise_accuracy", "mrr", "coverage")


def _by_k(result: Mapping[str, Any], key: str, k: int) -> Any:
    values = result.get(key) or {}
    return values.get(k, values.get(str(k)))


def _metric_row(name: str, result: Mapping[str, Any]) -> list[Any]:
    return ([name, result.get("pairwise_accuracy"), result.get("pairs")]
            + [_by_k(result, "recall_at_k", k) for k in KS] + [_by_k(result, "ndcg_at_k", k) for k in KS]
            + [result.get("mrr"), _by_k(result, "disliked_in_top_k", 10), result.get("coverage"),
               result.get("examples"), result.get("users")])


METRIC_HEADERS = (["model / slice", "pairwise accuracy", "pairs"] + [f"recall@{k}" for k in KS]
                  + [f"NDCG@{k}" for k in KS] + ["MRR", "disliked in top-10", "coverage", "examples", "users"])


def blessing_section(result: Mapping[str, Any]) -> str:
    verdict = "BLESSED: the Pusher may push this model" if result["blessed"] else \
        f"NOT BLESSED: refused by rule {result['blessing_rule']}"
    rows = [[r["rule"], r["metric"], r["value"], r["threshold"], "pass" if r["passed"] else "FAIL", r["text"]]
            for r in result["blessing_reasons"]]
    return html.section(
        "Blessing",
        html.callout(verdict, "ok" if result["blessed"] else "warn"),
        html.table(["rule", "metric", "value", "threshold", "verdict", "why"], rows),
        html.key_values(result["thresholds"]),
    )


def metrics_section(result: Mapping[str, Any]) -> str:
    rows = [_metric_row("this model", result), _metric_row("most popular", result["most_popular"])]
    if result.get("baseline"):
        rows.insert(1, _metric_row("last blessed model", result["baseline"]))
    compared = {"this model": result, "most popular": result["most_popular"]}
    if result.get("baseline"):
        compared["last blessed"] = result["baseline"]
    chart = html.bar_chart(
        ["pairwise accuracy"] + [f"recall@{k}" for k in KS] + ["MRR"],
        {name: [r.get("pairwise_accuracy")] + [_by_k(r, "recall_at_k", k) for k in KS] + [r.get("mrr")]
         for name, r in compared.items()},
        title="Test split: this model against the baselines", y_label="value")
    sampled = bool((result.get("test_sample") or {}).get("sampled"))
    return html.section("Test metrics", html.callout(sample_text(result.get("test_sample")), "warn" if sampled else "info"),
                        html.table(METRIC_HEADERS, rows), chart,
                        note="Exact scores against the whole catalog; the listener's history tracks are excluded "
                             "from the ranking. Pairwise accuracy pairs each target with the listener's own skips "
                             "and dislikes near it (ties count half).")


def sample_text(sample: Optional[Mapping[str, Any]]) -> str:
    """Whether the test metrics scored every test example or a sample, and the sample's standard errors."""
    if not sample:
        return "Every test example scored."
    if not sample["sampled"]:
        return f"Every test example scored ({sample['examples_scored']}; the cap is {sample['max_test_queries']})."
    errors = sample["standard_error"]
    return (f"A SAMPLE: {sample['examples_scored']} of {sample['examples_in_split']} test examples scored "
            f"(max_test_queries, seed {sample['seed']}), the same ones for every model and baseline; sampling "
            f"standard error: pairwise accuracy {html.fmt(errors['pairwise_accuracy'])}, recall@100 "
            f"{html.fmt(errors['recall_at_100'])}.")


def ann_section(result: Mapping[str, Any]) -> str:
    ann = result.get("ann_recall_at_k")
    if not ann:
        return html.section("Approximate retrieval", html.callout("ANN recall was not measured."))
    return html.section(
        "Approximate retrieval (ScaNN)",
        html.table(["k", "ScaNN recall@k vs exact top-k"], [[k, value] for k, value in ann.items()]),
        html.key_values(result.get("scann") or {}),
        note="Measured on this run's test queries with the index the serving export builds; the blessing "
             "needs recall at ann_recall_k of at least min_ann_recall.")


def slices_section(result: Mapping[str, Any]) -> str:
    slices = result["slices"]
    rows = [_metric_row(name, values) for name, values in slices.items()]
    chart = html.bar_chart(list(slices), {
        "pairwise accuracy": [values.get("pairwise_accuracy") for values in slices.values()],
        "recall@100": [_by_k(values, "recall_at_k", 100) for values in slices.values()],
    }, title="Slices", y_label="value")
    rules = result["thresholds"]
    note = (f"cold: ≤ {rules['cold_max_train_examples']} training examples; heavy: ≥ {rules['heavy_min_train_examples']}; "
            f"skip-heavy: ≥ {rules['skip_heavy_min_share']:.0%} of test-history tokens are skips; head tracks: the most "
            f"played tracks holding {rules['head_play_share']:.0%} of plays. An empty slice shows dashes.")
    return html.section("Slices", html.table(METRIC_HEADERS, rows), chart, note=note)


def coverage_section(result: Mapping[str, Any]) -> str:
    by_policy = result.get("coverage_by_input_policy")
    if not by_policy:
        return html.section("Coverage", html.callout("No FeedbackLabeler statistics were given to the evaluator."))
    policies = list(by_policy)
    return html.section(
        "Coverage by input policy",
        html.table(["input policy", "covered users", "users with test targets", "share"],
                   [[p, by_policy[p]["covered_users"], by_policy[p]["users_with_test_targets"], by_policy[p]["share"]]
                    for p in policies]),
        html.bar_chart(policies, {"coverage": [by_policy[p]["share"] for p in policies]},
                       title="Test listeners with a usable history", y_label="share"),
        note="A listener is covered when one of their test targets has a non-empty history under the policy.")


def training_section(result: Mapping[str, Any]) -> str:
    rows = result.get("training_history") or []
    if not rows:
        return html.section("Training", html.callout("No training history was given to the evaluator."))
    curves = {key: [(row["epoch"], row[key]) for row in rows]
              for key in ("eval_pairwise_accuracy", "eval_recall_at_10", "eval_recall_at_100")}
    return html.section(
        "Training curves",
        html.line_chart(curves, title="Eval split after each epoch", x_label="epoch", y_label="value"),
        html.line_chart({"train loss": [(row["epoch"], row["train_loss"]) for row in rows]},
                        title="Mean training loss per epoch", x_label="epoch", y_label="loss"))


def similarity_section(result: Mapping[str, Any]) -> str:
    similarity = result["feedback_type_similarity"]
    return html.section(
        "Feedback-type embeddings",
        html.heatmap(similarity["labels"], similarity["cosine"], title="Cosine similarity of the learned feedback types"),
        note="The paper reports that skips and dislikes end up apart from likes and listens.")


def responsiveness_section(result: Mapping[str, Any]) -> str:
    """Does a thumbs-down change what comes next: shares of the top-k after a listen vs after a dislike."""
    measured = result.get("responsiveness")
    if not measured:
        return html.section("Responsiveness", html.callout("Responsiveness was not measured."))
    k, near = measured.get("k"), measured.get("neighbours")
    rows = [[f"tracks by the probe's artist ({measured.get('artist_queries', 0)} queries)",
             measured.get("listen_artist_share"), measured.get("dislike_artist_share"), measured.get("artist_share_drop")],
            [f"the probe's {near} nearest tracks ({measured.get('queries')} queries)",
             measured.get("listen_neighbour_share"), measured.get("dislike_neighbour_share"),
             measured.get("neighbour_share_drop")]]
    parts = [html.table([f"share of the top-{k}", "after a listen", "after a dislike", "drop"], rows),
             html.key_values({"artist_share_drop": measured.get("artist_share_drop"),
                              "neighbour_share_drop": measured.get("neighbour_share_drop"),
                              f"top-{k} overlap (dislike vs listen)": measured.get("top_k_overlap"),
                              "queries": measured.get("queries"), "probe": measured.get("probe")})]
    if measured.get("artist_note"):
        parts.insert(0, html.callout(f"Artist share not measured: {measured['artist_note']}.", "info"))
    return html.section(
        "Responsiveness", *parts,
        note=f"Per test listener (one query each), the history gets its target track appended as the newest token, "
             f"once labelled dislike and once listen; the catalog is ranked without the history tracks and the probe. "
             f"A positive drop means a thumbs-down steers the top-{k} away from the rejected track's artist and "
             f"neighbourhood (cosine of the candidate embeddings); 0 means the label changes nothing (Wang et al., "
             f"RecSys 2023).")


def data_section(result: Mapping[str, Any]) -> str:
    """What kind of log this is: where rejected tracks sit in popularity, next to the liked targets."""
    data = result.get("data")
    if not data:
        return html.section("Data", html.callout("The data profile was not measured."))
    targets, negatives = data["target_popularity_percentile"], data["real_negative_popularity_percentile"]
    rows = [["test targets", targets["mean"], targets["median"], targets["count"]],
            ["their real negatives", negatives["mean"], negatives["median"], negatives["count"]]]
    counts = [[name, value] for name, value in sorted((data.get("labels") or {}).items())]
    counts += [[f"{split} examples", value] for split, value in sorted((data.get("examples") or {}).items())]
    parts = [html.table(["test split", "popularity percentile, mean", "median", "count"], rows)]
    if counts:
        parts.append(html.table(["labels and examples (FeedbackLabeler)", "count"], counts))
    return html.section(
        "Data", *parts,
        note=f"Popularity percentile: a track's play-count mid-rank among all tracks (as listening_logs.profile). "
             f"When real negatives are far less popular than targets, most-popular alone separates them "
             f"(its pairwise accuracy here: {html.fmt(data.get('most_popular_pairwise_accuracy'))}), and a model "
             f"must keep that prior to beat it (docs/data-profiles.md).")


def render(result: Mapping[str, Any]) -> str:
    verdict = "blessed" if result["blessed"] else "not blessed"
    return html.page(
        "RetrievalEvaluator report",
        blessing_section(result), metrics_section(result), ann_section(result), slices_section(result),
        responsiveness_section(result), data_section(result), coverage_section(result),
        training_section(result), similarity_section(result),
        subtitle=f"model {result.get('model', '')}: {verdict}")
