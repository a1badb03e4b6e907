"""Section 2, training: examples per second, and time to target for random negatives only vs random + the
listener's real hard negatives (skips, dislikes), per seed.

The target is the random-only run's best eval pairwise accuracy; the time is the Trainer's cumulative
training seconds (its per-epoch evaluation excluded) until an epoch reaches it (experiments.training).
The paper (arXiv 2406.04488) reports a ratio of about 0.4. Both variants call the Trainer's own `run_fn` in
this process on one pipeline run's Transform output, as experiments.reproduce does.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
import shutil
from typing import Any, Callable, Optional, Sequence

from benchmarks.measure import ratio
from benchmarks.pipeline_runs import PipelineRun, PipelineRuns, RunSpec
from benchmarks.settings import PAPER_TIME_RATIO, Profile

VARIANTS = ("random_only", "with_hard")


def mean(values: Sequence[Optional[float]]) -> Optional[float]:
    """Mean of the values; None when any is missing (a partial mean would mislead)."""
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return None
    return sum(values) / len(values)


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


def seed_row(seed: int, plain: Any, hard: Any) -> dict[str, Any]:
    """One seed's comparison (experiments.training's TrainedVariant for each variant)."""
    from experiments import training

    target = training.best_accuracy(plain.history)
    own = training.time_to_target(plain.history, target)
    reached = training.time_to_target(hard.history, target)
    return {
        "seed": seed,
        "target_eval_accuracy": target,
        "time_to_target_random_only_s": own.seconds,
        "time_to_target_with_hard_s": reached.seconds,
        "epochs_to_target_random_only": own.epochs,
        "epochs_to_target_with_hard": reached.epochs,
        "with_hard_reached_target": reached.reached,
        "time_ratio": ratio(reached.seconds, own.seconds),
        "best_eval_accuracy_random_only": target,
        "best_eval_accuracy_with_hard": training.best_accuracy(hard.history),
        "examples_per_s_random_only": examples_per_second(plain.history),
        "examples_per_s_with_hard": examples_per_second(hard.history),
        "epochs_random_only": len(plain.history),
        "epochs_with_hard": len(hard.history),
        "train_seconds_random_only": plain.history[-1]["train_seconds_cumulative"],
        "train_seconds_with_hard": hard.history[-1]["train_seconds_cumulative"],
        "wall_s_random_only": plain.seconds,
        "wall_s_with_hard": hard.seconds,
        "history_random_only": training.curve(plain.history),
        "history_with_hard": training.curve(hard.history),
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
        trained = {}
        for variant in VARIANTS:
            params = dataclasses.replace(base, seed=seed, hard_negatives_in_loss=variant == "with_hard")
            folder = out / f"seed-{seed}" / variant
            if folder.exists():
                shutil.rmtree(folder)
            say(f"training: seed {seed}, {variant.replace('_', ' ')} ({base.epochs} epochs max, patience "
                f"{base.patience}, {stats['examples']['train']:,} training examples; log {out / 'trainings.log'})")
            with training.output_to(out / "trainings.log"):
                trained[variant] = training.train_variant(data, params, folder)
        row = seed_row(seed, trained["random_only"], trained["with_hard"])
        say(f"training: seed {seed}: target {row['target_eval_accuracy']}, random-only "
            f"{row['time_to_target_random_only_s']} s, with hard {row['time_to_target_with_hard_s']} s "
            f"(ratio {row['time_ratio']})")
        rows.append(row)
    reached = sum(bool(row["with_hard_reached_target"]) for row in rows)
    time_plain = mean([row["time_to_target_random_only_s"] for row in rows])
    time_hard = mean([row["time_to_target_with_hard_s"] for row in rows])
    return {
        "model_run": str(model_run.root),
        "train_examples": int(stats["examples"]["train"]),
        "eval_examples": int(stats["examples"]["eval"]),
        "training_params": dataclasses.asdict(base),
        "seeds": [row["seed"] for row in rows],
        "per_seed": rows,
        "examples_per_s_random_only": mean([row["examples_per_s_random_only"] for row in rows]),
        "examples_per_s_with_hard": mean([row["examples_per_s_with_hard"] for row in rows]),
        "time_to_target_random_only_s": time_plain,
        "time_to_target_with_hard_s": time_hard,
        "with_hard_reached_target_seeds": reached,
        "time_ratio": ratio(time_hard, time_plain),
        "time_ratio_note": "mean time with hard / mean time random-only over seeds; null unless the with-hard "
                           "run reached the target in every seed",
        "examples_per_s_ratio": ratio(mean([row["examples_per_s_with_hard"] for row in rows]),
                                      mean([row["examples_per_s_random_only"] for row in rows])),
        "paper_time_ratio": PAPER_TIME_RATIO,
    }
