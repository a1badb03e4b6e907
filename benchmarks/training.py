"""Section 2, training: examples per second, and time to target for random negatives only vs random + the
listener's real hard negatives (skips, dislikes), per seed.

The target is the random-only run's best eval pairwise accuracy; the time is the Trainer's cumulative
training seconds (its per-epoch evaluation excluded) until an epoch reaches it (experiments.training).
The paper (arXiv 2406.04488) reports a ratio of about 0.4. Both variants call the Trainer's own `run_fn` in
this process on one pipeline run's Transform output, as experiments.reproduce does.
"""
from __future__ import annotations

import dataclasses
import pathlib
import shutil
from typing import Any, Callable, Optional, Sequence

from benchmarks.pipeline_runs import PipelineRun, PipelineRuns, RunSpec
from benchmarks.settings import PAPER_TIME_RATIO, Profile
from pipeline.library_logs import output_to
from harness.numbers import mean, ratio

RANDOM_ONLY = "random_only"


def hard_variant(weight: float) -> str:
    """Folder and key name of the random + hard run at one hard_negative_weight (e.g. 'with_hard_w100')."""
    return f"with_hard_w{weight:g}"


def examples_per_second(history: Sequence[dict[str, Any]]) -> Optional[float]:
    """Mean training speed over the epochs after the first (the first pays graph tracing); the first alone
    when there is only one."""
    speeds = [row.get("examples_per_second") for row in history]
    later = [s for s in speeds[1:] if s] or [s for s in speeds if s]
    return sum(later) / len(later) if later else None


def training_config(profile: Profile) -> Any:
    from pipeline import configs

    return configs.with_overrides(configs.PipelineConfig(), [*RunSpec.of(profile, "model").settings,
                                                             *profile.settings("training")])


def hard_row(plain: Any, hard: Any, target: Optional[float]) -> dict[str, Any]:
    """One random + hard run against the random-only run of the same seed."""
    from experiments import training

    own = training.time_to_target(plain.history, target)
    reached = training.time_to_target(hard.history, target)
    return {
        "time_to_target_s": reached.seconds,
        "epochs_to_target": reached.epochs,
        "reached_target": reached.reached,
        "time_ratio": ratio(reached.seconds, own.seconds),
        "best_eval_accuracy": training.best_accuracy(hard.history),
        "examples_per_s": examples_per_second(hard.history),
        "epochs": len(hard.history),
        "train_seconds": hard.history[-1]["train_seconds_cumulative"],
        "wall_s": hard.seconds,
        "history": training.curve(hard.history),
    }


def seed_row(seed: int, plain: Any, hard_by_weight: dict[str, Any]) -> dict[str, Any]:
    """One seed's comparison (experiments.training's TrainedVariant per run); hard runs keyed by weight."""
    from experiments import training

    target = training.best_accuracy(plain.history)
    own = training.time_to_target(plain.history, target)
    return {
        "seed": seed,
        "target_eval_accuracy": target,
        "time_to_target_random_only_s": own.seconds,
        "epochs_to_target_random_only": own.epochs,
        "best_eval_accuracy_random_only": target,
        "examples_per_s_random_only": examples_per_second(plain.history),
        "epochs_random_only": len(plain.history),
        "train_seconds_random_only": plain.history[-1]["train_seconds_cumulative"],
        "wall_s_random_only": plain.seconds,
        "history_random_only": training.curve(plain.history),
        "with_hard": {weight: hard_row(plain, hard, target) for weight, hard in hard_by_weight.items()},
    }


def weight_summary(rows: list[dict[str, Any]], weight: str) -> dict[str, Any]:
    """Means over seeds for one hard_negative_weight; the time ratio only when every seed reached the target."""
    runs = [row["with_hard"][weight] for row in rows]
    time_plain = mean([row["time_to_target_random_only_s"] for row in rows])
    time_hard = mean([run["time_to_target_s"] for run in runs])
    speed = mean([run["examples_per_s"] for run in runs])
    return {
        "hard_negative_weight": float(weight),
        "time_to_target_s": time_hard,
        "reached_target_seeds": sum(bool(run["reached_target"]) for run in runs),
        "time_ratio": ratio(time_hard, time_plain),
        "epochs_to_target": mean([run["epochs_to_target"] for run in runs]),
        "best_eval_accuracy": mean([run["best_eval_accuracy"] for run in runs]),
        "examples_per_s": speed,
        "examples_per_s_ratio": ratio(speed, mean([row["examples_per_s_random_only"] for row in rows])),
    }


def run(profile: Profile, runs: PipelineRuns, out: pathlib.Path, say: Callable[[str], None]) -> dict[str, Any]:
    from components.retrieval_evaluator.evaluate import RunData
    from experiments import training
    from pipeline import run_outputs

    model_run: PipelineRun = runs.get(RunSpec.of(profile, "model"))
    data = RunData(model_run.output("Transform", "transform_graph"),
                   model_run.output("Transform", "transformed_examples"))
    stats = run_outputs.read_feedback_stats(model_run.output("FeedbackLabeler", "feedback_stats"))
    config = training_config(profile)
    base = config.training_params()
    rows = []
    for index in range(profile.training_seeds):
        seed = config.seed + index
        plans = [(RANDOM_ONLY, dataclasses.replace(base, seed=seed, hard_negatives_in_loss=False))] + [
            (hard_variant(weight), dataclasses.replace(base, seed=seed, hard_negatives_in_loss=True,
                                                       hard_negative_weight=weight))
            for weight in profile.hard_weights]
        trained = {}
        for variant, params in plans:
            folder = out / f"seed-{seed}" / variant
            if folder.exists():
                shutil.rmtree(folder)
            say(f"training: seed {seed}, {variant.replace('_', ' ')} ({base.epochs} epochs max, patience "
                f"{base.patience}, {stats['examples']['train']:,} training examples; log {out / 'trainings.log'})")
            with output_to(out / "trainings.log"):
                trained[variant] = training.train_variant(data, params, folder)
        row = seed_row(seed, trained[RANDOM_ONLY], {f"{weight:g}": trained[hard_variant(weight)]
                                                     for weight in profile.hard_weights})
        say(f"training: seed {seed}: target {row['target_eval_accuracy']}, random-only "
            f"{row['time_to_target_random_only_s']} s; with hard " + ", ".join(
                f"weight {weight}: {run['time_to_target_s']} s (ratio {run['time_ratio']})"
                for weight, run in row["with_hard"].items()))
        rows.append(row)
    weights = [f"{weight:g}" for weight in profile.hard_weights]
    return {
        "model_run": str(model_run.root),
        "simulator_preset": model_run.spec.preset if model_run.spec else None,
        "train_examples": int(stats["examples"]["train"]),
        "eval_examples": int(stats["examples"]["eval"]),
        "training_params": dataclasses.asdict(base),
        "seeds": [row["seed"] for row in rows],
        "per_seed": rows,
        "examples_per_s_random_only": mean([row["examples_per_s_random_only"] for row in rows]),
        "time_to_target_random_only_s": mean([row["time_to_target_random_only_s"] for row in rows]),
        "best_eval_accuracy_random_only": mean([row["best_eval_accuracy_random_only"] for row in rows]),
        "with_hard": {weight: weight_summary(rows, weight) for weight in weights},
        "time_ratio_note": "mean time with hard / mean time random-only over seeds, per hard_negative_weight; null "
                           "unless the with-hard run reached the target in every seed",
        "paper_time_ratio": PAPER_TIME_RATIO,
    }
