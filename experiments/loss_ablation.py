"""Which loss makes the listener's real negatives pay: every formulation against random negatives only.

    python -m experiments.loss_ablation --run ROOT --out DIR [--seeds 3] [--variant NAME:KEY=V;KEY=V ...]
                                        [--set KEY=VALUE ...]

ROOT is a finished `pipeline.local_runner` run (its metadata store names the Transform output). Per seed,
the Trainer's own `run_fn` trains, on that run's transformed examples:
  random_only         in-batch + random negatives (hard_negatives_in_loss=false): the reference;
  <formulation>       + the listener's skips/dislikes, with negative_loss=<formulation> (models.loss),
                      one per formulation unless --variant names the variants (each with its own settings,
                      on top of --set; random_only gets --set only).
Each model is judged on the run's test split by the evaluator's own code: pairwise accuracy, recall@10/100,
NDCG@10, held-out negative hit rate@10, disliked-in-top-10; and the training seconds (after the first
epoch's tracing) until its eval accuracy reaches the random-only run's best of the same seed.
Writes OUT/ablation.json and OUT/ablation.md (the table the docs quote); progress on the console, the
Trainer's output in OUT/trainings.log.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import statistics
import sys
import time
from typing import Any, Optional, Sequence

RANDOM_ONLY = "random_only"
ABLATION_JSON, ABLATION_MD = "ablation.json", "ablation.md"
METRICS: tuple[tuple[str, str], ...] = (
    ("pairwise_accuracy", "pairwise acc."),
    ("recall_at_10", "recall@10"),
    ("recall_at_100", "recall@100"),
    ("ndcg_at_10", "NDCG@10"),
    ("held_out_negative_hit_rate_at_10", "held-out neg. hit@10"),
    ("disliked_in_top_10", "disliked in top-10"),
)


def test_metrics(result: dict[str, Any]) -> dict[str, Optional[float]]:
    """The table's test numbers from an evaluator result."""

    def at(name: str, k: int) -> Optional[float]:
        values = result.get(name) or {}
        value = values.get(k, values.get(str(k)))
        return None if value is None else float(value)

    return {
        "pairwise_accuracy": float(result["pairwise_accuracy"]),
        "recall_at_10": at("recall_at_k", 10),
        "recall_at_100": at("recall_at_k", 100),
        "ndcg_at_10": at("ndcg_at_k", 10),
        "held_out_negative_hit_rate_at_10": at("held_out_negative_hit_rate_at_k", 10),
        "disliked_in_top_10": at("disliked_in_top_k", 10),
    }


def mean_and_spread(values: Sequence[Optional[float]]) -> tuple[Optional[float], Optional[float]]:
    """(mean, sample standard deviation) of the finite values; None where there are too few."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None, None
    return statistics.fmean(finite), (statistics.stdev(finite) if len(finite) > 1 else None)


def summarize(rows: list[dict[str, Any]], variants: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per variant: the mean and spread over seeds of each metric, its relative accuracy gain over random-only
    (mean of per-seed gains), and the time ratio (mean of per-seed ratios; None unless every seed reached)."""
    summary = {}
    for variant in variants:
        per_seed = [row["variants"][variant] for row in rows]
        entry: dict[str, Any] = {}
        for metric, _ in METRICS:
            entry[metric], entry[f"{metric}_sd"] = mean_and_spread([run["test"][metric] for run in per_seed])
        gains = [run["test"]["pairwise_accuracy"] / row["variants"][RANDOM_ONLY]["test"]["pairwise_accuracy"] - 1
                 for row, run in zip(rows, per_seed)]
        entry["relative_gain"], entry["relative_gain_sd"] = mean_and_spread(gains)
        ratios = [run["time_ratio"] for run in per_seed]
        entry["reached_target_seeds"] = sum(run["reached_target"] for run in per_seed)
        entry["time_ratio"] = statistics.fmean(ratios) if all(r is not None for r in ratios) else None
        entry["train_seconds"] = mean_and_spread([run["train_seconds"] for run in per_seed])[0]
        summary[variant] = entry
    return summary


def markdown(summary: dict[str, dict[str, Any]], seeds: list[int], caption: str,
             most_popular: Optional[dict[str, Optional[float]]] = None) -> str:
    """The table: mean ± sd over seeds per variant, and the most-popular baseline on the same test split."""

    def cell(entry: dict[str, Any], key: str, digits: int = 3) -> str:
        value, spread = entry.get(key), entry.get(f"{key}_sd")
        if value is None:
            return "n/a"
        return f"{value:.{digits}f}" + (f" ± {spread:.{digits}f}" if spread is not None else "")

    header = ["variant", *[title for _, title in METRICS], "rel. gain", "time ratio (seeds reached)"]
    lines = [f"{caption} ({len(seeds)} seeds: {', '.join(map(str, seeds))}; mean ± sd)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant, entry in summary.items():
        ratio = "1×" if variant == RANDOM_ONLY else (
            f"{entry['time_ratio']:.2f}× ({entry['reached_target_seeds']}/{len(seeds)})"
            if entry["time_ratio"] is not None else f"n/a ({entry['reached_target_seeds']}/{len(seeds)})")
        gain = "—" if variant == RANDOM_ONLY else (
            f"{entry['relative_gain']:+.1%}" + (f" ± {entry['relative_gain_sd']:.1%}"
                                                if entry["relative_gain_sd"] is not None else ""))
        lines.append("| " + " | ".join([variant, *[cell(entry, key) for key, _ in METRICS], gain, ratio]) + " |")
    if most_popular:
        lines.append("| most_popular (baseline) | " + " | ".join(cell(most_popular, key) for key, _ in METRICS)
                     + " | — | — |")
    return "\n".join(lines) + "\n"


def run_data_of(root: pathlib.Path) -> Any:
    """The Transform output of the newest run in ROOT's metadata store."""
    from components.retrieval_evaluator.evaluate import RunData
    from pipeline import configs, run_outputs

    store_path = root / configs.METADATA_FILE
    if not store_path.is_file():
        raise ValueError(f"--run {root} has no {configs.METADATA_FILE}: run `python -m pipeline.local_runner "
                         f"--data DIR --root {root}` first")
    outputs = run_outputs.latest_run_outputs(run_outputs.sqlite_store(store_path))
    transform = outputs.get("Transform", {})
    if not transform.get("transform_graph") or not transform.get("transformed_examples"):
        raise ValueError(f"the newest run in {root} has no Transform output; did it finish?")
    return RunData(transform["transform_graph"][0], transform["transformed_examples"][0])


def parse_variant(spec: str) -> tuple[str, list[str]]:
    """'NAME:key=v;key=v' -> (NAME, ['key=v', 'key=v']); a bare formulation name means negative_loss=NAME."""
    from models.params import NEGATIVE_LOSSES

    name, _, settings = spec.partition(":")
    name = name.strip()
    if not name or name == RANDOM_ONLY:
        raise argparse.ArgumentTypeError(f"a variant needs a name other than {RANDOM_ONLY!r}: {spec!r}")
    if not settings:
        if name not in NEGATIVE_LOSSES:
            raise argparse.ArgumentTypeError(f"{name!r} is no formulation ({', '.join(NEGATIVE_LOSSES)}); "
                                             "give settings as NAME:key=value;key=value")
        return name, [f"negative_loss={name}"]
    return name, [item.strip() for item in settings.split(";") if item.strip()]


def variant_configs(config: Any, variants: Sequence[tuple[str, list[str]]]) -> dict[str, Any]:
    """Each variant's full config: the reference without hard negatives, the others with them."""
    from pipeline import configs

    chosen = {RANDOM_ONLY: configs.with_overrides(config, ["hard_negatives_in_loss=false"])}
    for name, settings in variants:
        chosen[name] = configs.with_overrides(config, ["hard_negatives_in_loss=true", *settings])
    return chosen


def ablate(data: Any, config: Any, seeds: Sequence[int], variants: Sequence[tuple[str, list[str]]],
           out: pathlib.Path, say=print, done: Sequence[tuple[Any, Any, dict[str, Any]]] = ()) -> dict[str, Any]:
    """Trains and judges every variant per seed; returns the record (per seed and summary).

    `done` holds (TrainingParams, TrainedVariant, evaluator result) of trainings already made on the same data
    and judged with the same evaluation params (experiments.reproduce's hard-negative comparison trains
    random-only and random + hard at the defaults): a variant whose params equal one of them reuses it."""
    from experiments import training
    from pipeline.library_logs import output_to

    chosen = variant_configs(config, variants)
    evaluation_params = config.evaluation_params()
    rows = []
    for seed in seeds:
        trained: dict[str, Any] = {}
        for variant, variant_config in chosen.items():
            began = time.perf_counter()
            params = dataclasses.replace(variant_config.training_params(), seed=seed)
            earlier = [(run, result) for done_params, run, result in done if done_params == params]
            if earlier:
                run, result = earlier[0]
            else:
                with output_to(out / "trainings.log"):
                    run = training.train_variant(data, params, out / f"seed-{seed}" / variant)
                    result = training.evaluate_on(run.model_dir, data, evaluation_params)
            trained[variant] = (run, result)
            say(f"  seed {seed} {variant}: test pairwise accuracy {result['pairwise_accuracy']:.4f}, recall@100 "
                f"{result['recall_at_k'][100]:.4f}, {len(run.history)} epochs, "
                + ("the same training as before (same settings)" if earlier
                   else f"{time.perf_counter() - began:.0f} s"))
        plain_run = trained[RANDOM_ONLY][0]
        target = training.best_accuracy(plain_run.history)
        own = training.time_to_target(plain_run.history, target)
        row: dict[str, Any] = {"seed": seed, "target_eval_accuracy": target, "variants": {}}
        for variant, (run, result) in trained.items():
            reached = training.time_to_target(run.history, target)
            ratio = reached.seconds / own.seconds if reached.reached and own.seconds else None
            row["variants"][variant] = {
                "test": test_metrics(result),
                "most_popular": test_metrics(result["most_popular"]),
                "best_eval_accuracy": training.best_accuracy(run.history),
                "time_to_target_s": reached.seconds, "epochs_to_target": reached.epochs,
                "reached_target": reached.reached, "time_ratio": 1.0 if variant == RANDOM_ONLY else ratio,
                "train_seconds": run.history[-1][training.SECONDS], "epochs": len(run.history),
            }
        rows.append(row)
    return {"seeds": list(seeds), "variants": {name: list(settings) for name, settings in variants},
            "training_params": dataclasses.asdict(config.training_params()), "per_seed": rows,
            "summary": summarize(rows, list(chosen)),
            "most_popular": rows[0]["variants"][RANDOM_ONLY]["most_popular"] if rows else None}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from models.params import NEGATIVE_LOSSES
    from pipeline import configs

    parser = argparse.ArgumentParser(prog="python -m experiments.loss_ablation",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=pathlib.Path, required=True, metavar="ROOT",
                        help="a finished pipeline.local_runner --root (its Transform output is trained on)")
    parser.add_argument("--out", type=pathlib.Path, required=True, metavar="DIR")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per variant, from the config's seed on")
    parser.add_argument("--variant", dest="variants", action="append", type=parse_variant, default=[],
                        metavar="NAME[:KEY=V;KEY=V]",
                        help=f"a variant with real negatives (repeatable; default: one per formulation, "
                             f"{', '.join(NEGATIVE_LOSSES)})")
    parser.add_argument("--caption", default="Loss ablation", help="the table's caption")
    configs.add_settings_argument(parser, " for every variant")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from models.params import NEGATIVE_LOSSES
    from pipeline import configs

    if args.seeds < 1:
        print("error: --seeds must be >= 1", file=sys.stderr)
        return 2
    try:
        config = configs.with_overrides(configs.PipelineConfig(), args.settings)
        data = run_data_of(args.run)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    seeds = [config.seed + index for index in range(args.seeds)]
    variants = args.variants or [parse_variant(name) for name in NEGATIVE_LOSSES]
    try:
        variant_configs(config, variants)
    except ValueError as error:
        print(f"error: --variant: {error}", file=sys.stderr)
        return 2
    print(f"loss ablation on {args.run}: {len(seeds)} seed(s) x {1 + len(variants)} variants -> {args.out}")
    record = ablate(data, config, seeds, variants, args.out)
    record["run"] = str(args.run)
    (args.out / ABLATION_JSON).write_text(json.dumps(record, indent=2, default=str))
    table = markdown(record["summary"], seeds, args.caption, record["most_popular"])
    (args.out / ABLATION_MD).write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
