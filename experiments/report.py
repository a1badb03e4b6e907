"""The experiments' HTML page: per experiment our numbers, a plot, the paper's finding and a plain verdict.

A pure function of report.json (`render`), built only from `reports.html`, so the page opens offline.
Verdicts (`verdict_*`) are small pure functions: they say "agrees" or "differs" and why, and mark a
difference with a warning callout.
"""
from __future__ import annotations

import math
import pathlib
from typing import Any, Mapping, Optional, Sequence

from reports import html

Verdict = tuple[str, str]
"""(text, callout kind): kind 'ok' when ours agrees with the paper, 'warn' when it differs."""
ROBUST_SPREAD = 0.03
"""Feedback proportions: a test accuracy range at most this wide (or within noise) counts as robust."""
STRONG_COVERAGE_GAIN = 0.10
"""Skips as inputs: a coverage gain from this size on is the paper's 'considerable' (theirs: +37% to +50%)."""


def _ok(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _pct(value: Optional[float]) -> str:
    return f"{value:+.1%}" if _ok(value) else "n/a"


def _noise(report: Mapping[str, Any]) -> float:
    noise = report.get("data", {}).get("accuracy_noise_95")
    return float(noise) if _ok(noise) else 0.0


# --- Verdicts ---------------------------------------------------------------------------------------------
def verdict_hard_negatives(section: Mapping[str, Any], noise: float = 0.0) -> Verdict:
    gain, time_ratio = section.get("relative_gain"), section.get("time_ratio")
    if not _ok(gain):
        return "Test accuracy could not be measured (no test pairs), so nothing can be compared.", "warn"
    delta = section["accuracy_with_hard"] - section["accuracy_random_only"]
    within = f" The difference ({delta:+.4f}) is within this test split's noise (±{noise:.3f})." if abs(delta) < noise else ""
    accuracy = (f"Accuracy: ours {_pct(gain)} with hard negatives (paper ~+6%): "
                f"{'agrees in direction' if gain > 0 else 'differs'}.{within}")
    if not section.get("hard_reached_target"):
        seeds = len(section.get("seeds", [])) or 1
        speed = (f"Training time: the hard-negative run reached the random-only run's best eval accuracy in "
                 f"{section.get('hard_reached_target_seeds', 0)} of {seeds} seed(s), so there is no speed-up to report "
                 "(paper: ~60% less time): differs.")
        return f"{accuracy} {speed}", "warn"
    if not _ok(time_ratio):
        return f"{accuracy} Training time could not be compared.", "warn"
    speed = (f"Training time to the random-only run's best: ratio {time_ratio:.2f} "
             f"({section['epochs_to_target_hard']:g} vs {section['epochs_to_target_random']:g} epochs; paper ~0.4): "
             f"{'agrees (faster)' if time_ratio < 1 else 'differs (not faster)'}.")
    return f"{accuracy} {speed}", "ok" if gain > 0 and time_ratio < 1 else "warn"


def verdict_input_policies(section: Mapping[str, Any], noise: float = 0.0) -> Verdict:
    positives, with_skips = section.get("positives"), section.get("positives+skips")
    if not positives or not with_skips or not _ok(positives.get("coverage")) or not positives["coverage"]:
        return "Coverage could not be compared (no test listeners).", "warn"
    gain = with_skips["coverage"] / positives["coverage"] - 1
    accuracy_delta = None
    if _ok(with_skips.get("pairwise_accuracy")) and _ok(positives.get("pairwise_accuracy")):
        accuracy_delta = with_skips["pairwise_accuracy"] - positives["pairwise_accuracy"]
    accuracy = ("accuracy not measurable" if accuracy_delta is None else
                f"accuracy {accuracy_delta:+.4f}" + (f" (within noise ±{noise:.3f})" if abs(accuracy_delta) < noise else ""))
    text = (f"Skips as inputs change test-user coverage by {_pct(gain)} ({positives['coverage']:.1%} -> "
            f"{with_skips['coverage']:.1%}), {accuracy}; paper: +50% (Pandora) / +37% (Spotify) and slightly better accuracy.")
    if gain >= STRONG_COVERAGE_GAIN and (accuracy_delta is None or accuracy_delta >= -noise):
        return f"{text} Agrees.", "ok"
    if gain > 0:
        why = ("positives alone already cover most test listeners here" if positives["coverage"] > 0.9
               else "the gain is much smaller")
        return f"{text} Same direction, but {why}: differs in size.", "warn"
    return f"{text} Differs: skips did not raise coverage.", "warn"


def verdict_sweep(rows: Sequence[Mapping[str, Any]], accuracy_with_hard: Optional[float]) -> Verdict:
    points = [(row["num_random_negatives"], row["pairwise_accuracy"]) for row in rows if _ok(row.get("pairwise_accuracy"))]
    if len(points) < 2:
        return "Too few measurable sweep points to judge the trend.", "warn"
    best_n, best = max(points, key=lambda point: point[1])
    first, last = points[0], points[-1]
    rises = best > first[1]
    below_hard = _ok(accuracy_with_hard) and best < accuracy_with_hard
    shares = [row for row in rows if _ok(row.get("false_negative_share"))]
    fn_text = ""
    if shares:
        top = shares[-1]
        fn_text = (f" False negatives: {top['false_negative_share']:.1%} of sampled random negatives are tracks the "
                   f"listener truly likes, i.e. ~{top['false_negatives_per_query']:.1f} per query at "
                   f"n = {top['num_random_negatives']}.")
    text = (f"Test accuracy peaks at n = {best_n} random negatives ({best:.4f}; n = {first[0]}: {first[1]:.4f}, "
            f"n = {last[0]}: {last[1]:.4f}); best random-only vs with hard negatives: "
            f"{best:.4f} vs {accuracy_with_hard if _ok(accuracy_with_hard) else float('nan'):.4f}.{fn_text}")
    if rises and best_n != last[0] and below_hard:
        return f"{text} Agrees: more random negatives help only up to a point, and stay below real negatives.", "ok"
    problems = []
    if not rises:
        problems.append("accuracy does not rise with more random negatives")
    if best_n == last[0]:
        problems.append("accuracy still rises at the largest sweep point (no turning point seen)")
    if not below_hard:
        problems.append("random negatives alone reach or beat the hard-negative model")
    return f"{text} Differs: {'; '.join(problems)}.", "warn"


def verdict_feedback(rows: Sequence[Mapping[str, Any]], noise: float = 0.0) -> Verdict:
    values = [row["pairwise_accuracy"] for row in rows if _ok(row.get("pairwise_accuracy"))]
    if len(values) < 2:
        return "Too few measurable runs to judge robustness.", "warn"
    spread = max(values) - min(values)
    limit = max(ROBUST_SPREAD, noise)
    text = (f"Test accuracy spans {spread:.4f} across keep fractions {[row['keep_fraction'] for row in rows]} "
            f"(robust means within {limit:.3f} here); paper: fairly robust to the feedback proportions.")
    return (f"{text} Agrees.", "ok") if spread <= limit else (f"{text} Differs: accuracy depends on them.", "warn")


# --- Sections -----------------------------------------------------------------------------------------------
def _paper_vs_ours(paper: str, ours: str) -> str:
    return html.table(["paper (arXiv 2406.04488)", "ours"], [[paper, ours]])


def hard_negatives_section(report: Mapping[str, Any]) -> str:
    section = report["hard_negatives"]
    rows = [
        ["test pairwise accuracy", section["accuracy_random_only"], section["accuracy_with_hard"]],
        ["test recall@100", section["recall_at_100_random_only"], section["recall_at_100_with_hard"]],
        ["training seconds to target", section["time_to_target_random_s"], section["time_to_target_hard_s"]],
        ["epochs to target", section["epochs_to_target_random"], section["epochs_to_target_hard"]],
    ]
    per_seed = [[row["seed"], row["accuracy_random_only"], row["accuracy_with_hard"], row["target_eval_accuracy"],
                 row["time_to_target_random_s"], row["time_to_target_hard_s"], str(row["hard_reached_target"])]
                for row in section["seeds"]]
    series = {}
    for row in section["seeds"]:
        for key, label in (("history_random_only", "random only"), ("history_with_hard", "random + hard")):
            series[f"{label}, seed {row['seed']}"] = [(point["train_seconds_cumulative"], point["eval_pairwise_accuracy"])
                                                      for point in row[key]]
    text, kind = verdict_hard_negatives(section, _noise(report))
    return html.section(
        "1. Hard negatives: real skips and dislikes in the loss",
        html.table(["", "random negatives only", f"random + hard (weight {section['hard_negative_weight']:g})"], rows,
                   caption=f"Means over {len(section['seeds'])} seed(s); relative accuracy gain "
                           f"{_pct(section['relative_gain'])}, time ratio {html.fmt(section['time_ratio'])}"),
        html.table(["seed", "acc. random only", "acc. with hard", "target (best eval acc. random only)",
                    "s to target random", "s to target hard", "hard reached target"], per_seed, caption="Per seed"),
        html.line_chart(series, "Eval pairwise accuracy during training", "training seconds (cumulative)",
                        "eval pairwise accuracy"),
        _paper_vs_ours(report["paper"]["hard_negatives"]["claim"],
                       f"accuracy {_pct(section['relative_gain'])}, time ratio {html.fmt(section['time_ratio'])}"),
        html.callout(text, kind),
        note="Both variants train on the base run's Transform output with the same settings except "
             "hard_negatives_in_loss; the target is the random-only run's best eval accuracy. Training seconds "
             "leave out what the first epoch took beyond a steady epoch (graph tracing).",
    )


def loss_formulations_section(report: Mapping[str, Any]) -> str:
    """The ablation of how real negatives enter the loss (experiments.loss_ablation), when the run has one."""
    section = report.get("loss_formulations")
    if not section:
        return ""
    keys = ("pairwise_accuracy", "recall_at_10", "recall_at_100", "ndcg_at_10", "held_out_negative_hit_rate_at_10",
            "relative_gain", "time_ratio")
    rows = [[variant, *[entry.get(key) for key in keys]] for variant, entry in section["summary"].items()]
    responsiveness = report.get("responsiveness") or {}
    return html.section(
        "1b. Loss formulations for real negatives",
        html.table(["variant", "pairwise acc.", "recall@10", "recall@100", "NDCG@10", "held-out neg. hit@10",
                    "rel. gain", "time ratio"], rows,
                   caption=f"Means over {len(section['seeds'])} seed(s), test split of the base run"),
        html.table(["responsiveness of the base model", "value"],
                   [[key, responsiveness.get(key)] for key in ("artist_share_drop", "neighbour_share_drop", "queries")]),
        note="random_only: in-batch and random negatives only; softmax: real negatives in the softmax denominator; "
             "pairwise: + softplus(negative - positive) per real negative; not_to_recommend: + -log(1 - p(negative)).",
    )


def input_policies_section(report: Mapping[str, Any]) -> str:
    section = report["input_policies"]
    policies = list(section)
    rows = [[policy, section[policy]["coverage"], section[policy]["pairwise_accuracy"], section[policy]["recall_at_100"],
             section[policy].get("pairwise_accuracy_on_base_split"), section[policy].get("recall_at_100_on_base_split"),
             section[policy].get("run", "")] for policy in policies]
    chart = html.bar_chart(policies, {
        "test-user coverage": [section[p]["coverage"] for p in policies],
        "test pairwise accuracy": [section[p]["pairwise_accuracy"] for p in policies],
        "test recall@100": [section[p]["recall_at_100"] for p in policies],
    }, "Coverage and accuracy by input policy", "share")
    text, kind = verdict_input_policies(section, _noise(report))
    return html.section(
        "2. Skips as inputs: which feedback enters the listener's history",
        html.table(["input policy", "coverage", "pairwise accuracy", "recall@100", "pairwise accuracy (base split)",
                    "recall@100 (base split)", "pipeline run"], rows),
        chart,
        _paper_vs_ours(report["paper"]["input_policies"]["claim"], text),
        html.callout(text, kind),
        note="Coverage: share of test listeners with a non-empty history under the policy (that run's "
             "FeedbackLabeler). Accuracy: that run's model on its own test split, which has the base run's test "
             "targets and real negatives with histories under its policy; the base-split columns feed every "
             "model the base policy's histories (a model trained without skip tokens then meets them untrained).",
    )


def sweep_section(report: Mapping[str, Any]) -> str:
    rows = report["random_negatives_sweep"]
    table_rows = [[row["num_random_negatives"], row["pairwise_accuracy"], row["recall_at_100"],
                   row["false_negative_share"], row["false_negatives_per_query"]] for row in rows]
    hard = report["hard_negatives"]["accuracy_with_hard"]
    series = {
        "test pairwise accuracy": [(row["num_random_negatives"], row["pairwise_accuracy"]) for row in rows],
        "test recall@100": [(row["num_random_negatives"], row["recall_at_100"]) for row in rows],
        "false-negative share": [(row["num_random_negatives"], row["false_negative_share"]) for row in rows],
        "accuracy with hard negatives": [(row["num_random_negatives"], hard) for row in rows],
    }
    text, kind = verdict_sweep(rows, hard)
    note = ("No ground truth in this log: false negatives cannot be counted." if not report["data"]["has_ground_truth"]
            else "False negatives: random negatives drawn as the Trainer draws them, for the base test queries, "
                 "whose true affinity to the listener is >= the simulator's like_center.")
    return html.section(
        "3. Number of random negatives (no hard negatives)",
        html.table(["random negatives", "pairwise accuracy", "recall@100", "false-negative share",
                    "false negatives per query"], table_rows),
        html.line_chart(series, "Accuracy and false negatives vs random negatives", "random negatives (log scale)",
                        "share", log_x=True),
        _paper_vs_ours(report["paper"]["random_negatives_sweep"]["claim"], text),
        html.callout(text, kind),
        note=note,
    )


def feedback_section(report: Mapping[str, Any]) -> str:
    rows = report["feedback_proportions"]
    table_rows = [[row["keep_fraction"], row["negative_share"], row["pairwise_accuracy"], row["recall_at_100"],
                   row["coverage"]] for row in rows]
    series = {name: [(row["keep_fraction"], row[key]) for row in rows] for name, key in (
        ("test pairwise accuracy", "pairwise_accuracy"), ("test-user coverage", "coverage"),
        ("negative share of the log", "negative_share"), ("test recall@100", "recall_at_100"))}
    text, kind = verdict_feedback(rows, _noise(report))
    return html.section(
        "4. Feedback proportions: keeping a fraction of each listener's skips and dislikes",
        html.table(["keep fraction", "negative share", "pairwise accuracy", "recall@100", "coverage"], table_rows),
        html.line_chart(series, "Accuracy and coverage vs kept negative feedback", "keep fraction", "share"),
        _paper_vs_ours(report["paper"]["feedback_proportions"]["claim"], text),
        html.callout(text, kind),
        note="Each copy of the log went through the whole pipeline; its model is judged on the base run's test "
             "split (keep fraction 1.0 is the base run).",
    )


def similarity_section(report: Mapping[str, Any]) -> str:
    similarity = report["feedback_type_similarity"]
    return html.section(
        "Feedback-type embeddings",
        html.heatmap(similarity["labels"], similarity["cosine"], "Cosine similarity of learned feedback-type embeddings"),
        note="From the base run's query tower: how alike the model treats like, listen, skip and dislike tokens.",
    )


def overview_section(report: Mapping[str, Any]) -> str:
    data = report["data"]
    facts = {"log": data["path"], "spans": data["spans"], "plays": data["events"],
             "training examples": data["train_examples"], "test examples": data["test_examples"],
             "test pairs": data["test_pairs"], "accuracy noise (95%, ±)": data["accuracy_noise_95"],
             "ground truth": str(data["has_ground_truth"]), "quick": str(report["quick"]), "seeds": report["seeds"]}
    parts = [html.key_values(facts)]
    parts += [html.callout(warning, "warn") for warning in report.get("warnings", [])]
    base = report.get("base_evaluation", {})
    if base:
        parts.append(html.key_values({"base model test pairwise accuracy": base.get("pairwise_accuracy"),
                                      "base model test recall@100": base.get("recall_at_k", {}).get("100"),
                                      "most-popular test pairwise accuracy":
                                          base.get("most_popular", {}).get("pairwise_accuracy"),
                                      "most-popular test recall@100": base.get("most_popular", {}).get("recall_at_100")}))
    return html.section("Data and base run", *parts,
                        note="Every model below is evaluated on the base run's test split, so numbers compare.")


def settings_section(report: Mapping[str, Any]) -> str:
    return html.section(
        "Settings, versions, durations",
        html.key_values({f"duration {key} (s)": value for key, value in report["durations"].items()}),
        html.key_values(report["versions"]),
        html.key_values({key: str(value) for key, value in report["config"].items()}),
    )


def render(report: Mapping[str, Any]) -> str:
    return html.page(
        "Negative feedback for music personalization: reproduction",
        overview_section(report), hard_negatives_section(report), loss_formulations_section(report),
        input_policies_section(report),
        sweep_section(report), feedback_section(report), similarity_section(report), settings_section(report),
        subtitle=f"{report['paper']['source']}. Our pipeline, our data; {'quick' if report['quick'] else 'full'} run.",
    )


def write_report(report: Mapping[str, Any], path: pathlib.Path) -> pathlib.Path:
    return html.write_page(path, render(report))
