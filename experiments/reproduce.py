"""Reproduce the four experiments of "Negative Feedback for Music Personalization" (arXiv 2406.04488).

    python -m experiments.reproduce --data DIR --out DIR [--quick] [--seeds N] [--set KEY=VALUE ...]

Every variant is this project's own pipeline with other settings (never a copy of the model):
  base run        the TFX pipeline over --data with the settings given (OUT/runs/base), only its Trainer and
                  what the Trainer reads (every run here: the models are judged in this process); the models below
                  are judged on THIS run's test split, so the numbers compare.
  1 hard negatives   Trainer variants on the base run's Transform output, per seed: random negatives only
                  vs random + the listener's real skips/dislikes; test accuracy and time to the
                  random-only run's best eval accuracy.
  2 skips as inputs  pipeline runs with input_policy positives / positives+skips / all (same root as the
                  base run, so ExampleGen and the other unchanged steps come from TFX's cache); each
                  model reads its own policy's histories of the same test targets and negatives.
  3 random negatives Trainer variants without hard negatives and 1 .. 1024 random negatives; on a
                  simulated log also the share of those negatives the listener truly likes.
  4 feedback proportions  copies of the log keeping a fraction of each listener's skips and dislikes,
                  each through the whole pipeline (OUT/runs/feedback-<f>).
Writes OUT/report.json (the record) and OUT/report.html (self-contained, opens offline). Each step's
TFX/TensorFlow output goes to OUT/logs/; the console shows progress.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import math
import os
import pathlib
import shutil
import sys
import threading
import time
from typing import Any, Iterator, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # before TensorFlow loads: its C++ INFO lines stay off the console

from components.retrieval_evaluator.evaluate import RunData  # noqa: E402
from experiments import false_negatives, loss_ablation, report, subsample, training  # noqa: E402
from harness import estimates  # noqa: E402
from pipeline.library_logs import output_to  # noqa: E402
from harness.numbers import cli_type, float_list, int_list, mean, ratio  # noqa: E402
from harness.pipeline_jobs import PipelineJob, run_pipeline_job, spawn_pool  # noqa: E402
from harness.progress import Progress  # noqa: E402
from harness.versions import versions  # noqa: E402
from models.params import NEGATIVE_LOSSES  # noqa: E402
from pipeline import configs, run_outputs  # noqa: E402
from pipeline.pipeline import TRAINER_ID  # noqa: E402
from reports.json_safe import json_safe  # noqa: E402
from schema import contract, span_folders  # noqa: E402

QUICK_MAX_EPOCHS = 4
FULL_SWEEP = (1, 4, 16, 64, 256, 1024)
QUICK_SWEEP = (1, 16, 256)
FULL_FRACTIONS = (0.0, 0.25, 0.5, 1.0)
QUICK_FRACTIONS = (0.0, 0.5, 1.0)
FULL_SEEDS, QUICK_SEEDS = 3, 1
FEW_TRAIN_EXAMPLES = 500
BASE = "base"
REPORT_JSON, REPORT_HTML = "report.json", "report.html"
VERSIONED = ("tensorflow", "tfx")
"""Distributions whose versions the report records (besides Python's)."""

PAPER = {
    "source": "M. J. Mei, O. Bembom, A. F. Ehmann, Negative Feedback for Music Personalization, UMAP 2024, "
              "arXiv 2406.04488",
    "hard_negatives": {
        "accuracy_relative_gain": 0.06,
        "time_ratio": 0.4,
        "claim": "Explicit negative feedback as hard negatives in training improves test accuracy by ~6% and "
                 "cuts training time by ~60% (time ratio ~0.4).",
    },
    "input_policies": {
        "coverage_gain_pandora": 0.50,
        "coverage_gain_spotify": 0.37,
        "claim": "Adding skips to the input sequence raises user coverage considerably (+50% Pandora, +37% "
                 "Spotify) and improves accuracy slightly.",
    },
    "random_negatives_sweep": {
        "claim": "Test accuracy rises with more random negatives, but only to a point: too many random "
                 "negatives bring false negatives, and the lift stays below that of real negative feedback.",
    },
    "feedback_proportions": {
        "claim": "Test accuracy is fairly robust to the proportion of the different feedback types.",
    },
}


# --- Settings ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything decided before the first step: settings, variants, sizes."""

    data: pathlib.Path
    out: pathlib.Path
    config: configs.PipelineConfig
    quick: bool
    seeds: int
    hard_negative_weight: float
    jobs: int
    spans: list[int]
    events: int
    labels: dict[str, int]
    has_ground_truth: bool
    policies: list[str]
    sweep: list[int]
    fractions: list[float]

    @property
    def sweep_to_train(self) -> list[int]:
        """Sweep points that need a training of their own (one equals the seed-0 random-only run)."""
        return [n for n in self.sweep if n != self.config.num_random_negatives]

    @property
    def policy_runs(self) -> list[str]:
        return [policy for policy in self.policies if policy != self.config.input_policy]

    @property
    def fraction_runs(self) -> list[float]:
        return [fraction for fraction in self.fractions if fraction < 1.0]

    @property
    def pipeline_runs(self) -> int:
        return 1 + len(self.policy_runs) + len(self.fraction_runs)

    @property
    def loss_trainings(self) -> int:
        """Loss-formulation trainings per seed beyond the two hard-negative ones: random-only repeats one, and so
        does the config's own formulation when the comparison uses the config's weight (both are reused)."""
        repeats = 1 + (self.config.negative_loss in NEGATIVE_LOSSES
                       and self.hard_negative_weight == self.config.hard_negative_weight)
        return 1 + len(NEGATIVE_LOSSES) - repeats

    @property
    def trainings(self) -> int:
        """In-process trainings, plus the Trainer of every pipeline run."""
        return (2 + self.loss_trainings) * self.seeds + len(self.sweep_to_train) + self.pipeline_runs


def selected_spans(spec: str, found: Sequence[int]) -> list[int]:
    """The span numbers a spans setting reads; a range over a missing folder is refused up front."""
    if spec == configs.ALL_SPANS:
        return list(found)
    bounds = configs.parse_spans(spec)
    chosen = [max(found)] if bounds is None else list(range(bounds[0], bounds[1] + 1))
    missing = [span for span in chosen if span not in found]
    if missing:
        raise ValueError(f"spans {spec} include missing span folders {missing}; pick a gap-free range with "
                         "--set spans=A-B")
    return chosen


def count_events(data: pathlib.Path, spans: Sequence[int], config: configs.PipelineConfig) -> dict[str, int]:
    """Label counts of the plays the pipeline will read (by the contract's rule)."""
    thresholds = contract.LabelThresholds(config.skip_ms, config.skip_fraction)
    return subsample.describe(data, spans, thresholds).labels


def experiment_config(settings: Sequence[str], quick: bool, spans: Sequence[int]) -> configs.PipelineConfig:
    """Defaults + --set; spans default to every span found; --quick caps epochs unless --set says otherwise."""
    config = configs.with_overrides(configs.PipelineConfig(), settings)
    given = {setting.partition("=")[0].strip() for setting in settings}
    changes: dict[str, Any] = {}
    if "spans" not in given:
        changes["spans"] = f"{spans[0]}-{spans[-1]}" if len(spans) > 1 else str(spans[0])
    if quick and "epochs" not in given:
        changes["epochs"] = min(config.epochs, QUICK_MAX_EPOCHS)
    epochs = changes.get("epochs", config.epochs)
    if quick and "patience" not in given:
        changes["patience"] = max(config.patience, epochs)
    return dataclasses.replace(config, **changes)


def make_plan(args: argparse.Namespace) -> Plan:
    data: pathlib.Path = args.data
    if not data.is_dir():
        raise ValueError(f"--data {data} is not a directory")
    found = span_folders.numbers(data)
    if not found:
        raise ValueError(f"--data {data} holds no span-N folders; write a log with `python -m listening_logs.simulate` "
                         "or `python -m listening_logs.convert`")
    default_spans = list(range(1, found[-1] + 1))
    config = experiment_config(args.settings, args.quick, default_spans)
    spans = selected_spans(config.spans, found)
    labels = count_events(data, spans, config)
    seeds = args.seeds if args.seeds is not None else (QUICK_SEEDS if args.quick else FULL_SEEDS)
    if seeds < 1:
        raise ValueError("--seeds must be >= 1")
    weight = config.hard_negative_weight if args.hard_negative_weight is None else args.hard_negative_weight
    dataclasses.replace(config.training_params(), hard_negative_weight=weight)  # validates the weight
    return Plan(
        data=data, out=args.out, config=config, quick=args.quick, seeds=seeds, hard_negative_weight=weight,
        jobs=args.jobs, spans=spans, events=sum(labels.values()), labels=labels,
        has_ground_truth=false_negatives.has_ground_truth(data), policies=list(contract.INPUT_POLICIES),
        sweep=args.sweep or list(QUICK_SWEEP if args.quick else FULL_SWEEP),
        fractions=sorted(set(args.keep_fractions or (QUICK_FRACTIONS if args.quick else FULL_FRACTIONS)) | {1.0}),
    )


# --- Duration estimate (the measured costs are harness.estimates'; see estimate_seconds) ---------------------
EVALUATION_S = 6.0
"""One in-process evaluation of an exported model on the base run's test split."""
TWO_LANE_OVERLAP = 0.6
"""With two lanes on two cores, the shorter lane adds about this share of its time (CPU contention)."""
SWEEP_CONTENTION = 0.5
"""Share of the sweep's training time that adds to the wall time when it runs beside the pipeline lanes."""


def training_seconds(plan: Plan, train_examples: float, random_negatives: int) -> float:
    return estimates.training_seconds(train_examples, plan.config.epochs, random_negatives)


def cutoff_fraction(cutoff: str, default: float = 0.7) -> float:
    """The eval cut-off as a share of the log's time (an epoch-ms cut-off counts as the default share)."""
    value = float(cutoff)
    return value if value <= 1.0 else default


def expected_train_examples(plan: Plan) -> float:
    """The log's target plays (positive policy) before the eval cut-off: about the base run's train split."""
    config = plan.config
    targets = plan.labels[contract.LIKE] + (plan.labels[contract.LISTEN] if "listen" in config.positive_policy else 0)
    return targets * cutoff_fraction(config.eval_cutoff)


def estimate_seconds(plan: Plan) -> float:
    """Expected wall time from the log's size: pipeline runs, trainings and evaluations.

    The costs are harness.estimates', measured on this 2-core machine with 30k- and 200k-play simulated logs.
    """
    config = plan.config
    train_examples = expected_train_examples(plan)
    trainer = training_seconds(plan, train_examples, config.num_random_negatives)
    fresh = estimates.pipeline_seconds(plan.events, trainer) + EVALUATION_S
    cached = estimates.pipeline_seconds(plan.events, trainer, cached=True) + EVALUATION_S
    lane_a = fresh + cached * len(plan.policy_runs)
    lane_b = fresh * len(plan.fraction_runs)
    pipelines = max(lane_a, lane_b) + TWO_LANE_OVERLAP * min(lane_a, lane_b) if plan.jobs > 1 else lane_a + lane_b
    sweep = sum(training_seconds(plan, train_examples, n) for n in plan.sweep_to_train)
    beside = pipelines - fresh  # the sweep trains while the lanes still run, slowing them by about half its time
    pipelines_and_sweep = pipelines + SWEEP_CONTENTION * min(sweep, beside) + max(0.0, sweep - beside)
    hard = (2 + plan.loss_trainings) * plan.seeds * training_seconds(plan, train_examples, config.num_random_negatives)
    evaluations = ((2 + plan.loss_trainings) * plan.seeds + len(plan.sweep) + plan.pipeline_runs
                   + len(plan.policy_runs)) * EVALUATION_S
    return pipelines_and_sweep + hard + evaluations


# --- Progress (harness.progress.Progress; the durations per report section are this command's) ---------------
class Durations:
    """Seconds spent per report section (pipeline lanes overlap, so the sections can sum past the total)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, section: str, seconds: float) -> None:
        with self._lock:
            self.seconds[section] = round(self.seconds.get(section, 0.0) + seconds, 1)


@contextlib.contextmanager
def timed(progress: Progress, durations: Durations, section: str, name: str) -> Iterator[None]:
    started = time.perf_counter()
    with progress.step(name):
        yield
    durations.add(section, time.perf_counter() - started)


# --- Pipeline runs ------------------------------------------------------------------------------------------
def fraction_name(fraction: float) -> str:
    return f"feedback-{fraction:g}"


LAST_COMPONENT = TRAINER_ID
"""Each experiment run is TFX's partial run to the Trainer: the Trainer and the components it reads from. The
experiments judge every model here, on the base run's test split, and read only FeedbackLabeler's stats, so
StatisticsGen, ExampleValidator, the RetrievalEvaluator, ServingExporter and Pushers would be work for nothing."""


def pipeline_jobs(plan: Plan) -> tuple[list[tuple[str, PipelineJob]], list[tuple[str, PipelineJob]]]:
    """Two lanes of (section, job): the base root's runs in order, and the feedback copies' runs; each up to
    LAST_COMPONENT."""
    runs, logs = plan.out / "runs", plan.out / "logs"
    base_root = runs / BASE
    stop = (LAST_COMPONENT,)
    lane_a = [("base_run", PipelineJob(BASE, plan.data, base_root, plan.config, logs / f"{BASE}.log", stop))]
    for policy in plan.policy_runs:
        name = f"input-{policy}"
        config = dataclasses.replace(plan.config, input_policy=policy)
        lane_a.append(("input_policies", PipelineJob(name, plan.data, base_root, config, logs / f"{name}.log", stop)))
    lane_b = []
    for fraction in plan.fraction_runs:
        name = fraction_name(fraction)
        lane_b.append(("feedback_proportions", PipelineJob(
            name, plan.out / "data" / name, runs / name, plan.config, logs / f"{name}.log", stop)))
    return lane_a, lane_b


class PipelineLanes:
    """Runs lanes of pipeline jobs side by side in worker processes; each job's result can be awaited.

    Jobs of one lane run in order (a shared root must not be written by two runs at once). A failed job
    keeps the lanes from starting new jobs; its error is raised to whoever awaits it (or any later job).
    """

    def __init__(self, plan: Plan, lanes: Sequence[Sequence[tuple[str, PipelineJob]]], progress: Progress,
                 durations: Durations) -> None:
        lanes = [list(lane) for lane in lanes if lane]
        self._lanes = [[job for lane in lanes for job in lane]] if plan.jobs == 1 else lanes
        self._progress, self._durations = progress, durations
        self._done = {job.name: threading.Event() for lane in self._lanes for _, job in lane}
        self._results: dict[str, Any] = {}
        self._errors: dict[str, BaseException] = {}
        self._stop = threading.Event()

    def __enter__(self) -> "PipelineLanes":
        workers = len(self._lanes)
        self._pool = spawn_pool(workers)
        self._threads = concurrent.futures.ThreadPoolExecutor(workers)
        for lane in self._lanes:
            self._threads.submit(self._run_lane, lane)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if exc_info[0] is not None:
            self._stop.set()  # finish the running jobs, start no more
        self._threads.shutdown(wait=True)
        self._pool.shutdown(wait=True)

    def _run_lane(self, lane: Sequence[tuple[str, PipelineJob]]) -> None:
        for section, job in lane:
            if self._stop.is_set():
                self._errors[job.name] = RuntimeError(f"pipeline run {job.name} not started: an earlier run failed")
            else:
                try:
                    with timed(self._progress, self._durations, section, f"pipeline run {job.name} (log {job.log_path})"):
                        self._results[job.name] = self._pool.submit(run_pipeline_job, job).result()
                except BaseException as error:  # handed to the main thread by result(), which raises it
                    self._errors[job.name] = error
                    self._stop.set()
            self._done[job.name].set()

    def result(self, name: str) -> Any:
        """The RunResult of one job, once it has finished; raises the job's error if it failed."""
        self._done[name].wait()
        if name in self._errors:
            raise self._errors[name]
        return self._results[name]

    def results(self) -> dict[str, Any]:
        return {name: self.result(name) for name in self._done}


def write_subsamples(plan: Plan, progress: Progress, durations: Durations) -> dict[float, subsample.SubsampleResult]:
    """The feedback-proportion copies of the log (reused when the same copy is already there)."""
    thresholds = contract.LabelThresholds(plan.config.skip_ms, plan.config.skip_fraction)
    written = {}
    for fraction in plan.fraction_runs:
        target = plan.out / "data" / fraction_name(fraction)
        marker = target / "subsample.json"
        wanted = {"source": str(plan.data.resolve()), "spans": plan.spans, "keep_fraction": fraction,
                  "seed": plan.config.seed, "skip_ms": plan.config.skip_ms, "skip_fraction": plan.config.skip_fraction}
        if marker.is_file() and json.loads(marker.read_text())["settings"] == wanted:
            written[fraction] = subsample.SubsampleResult(**json.loads(marker.read_text())["result"])
            continue
        with timed(progress, durations, "feedback_proportions", f"subsample skips/dislikes to {fraction:g} -> {target}"):
            if target.exists():
                shutil.rmtree(target)
            result = subsample.subsample_log(plan.data, target, plan.spans, fraction, plan.config.seed, thresholds)
            marker.write_text(json.dumps({"settings": wanted, "result": dataclasses.asdict(result)}, indent=2))
        written[fraction] = result
    return written


# --- Base run facts -----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RunFacts:
    """What the experiments need from one finished pipeline run."""

    data: RunData
    model_uri: str
    history: list[dict[str, Any]]
    stats: dict[str, Any]

    @classmethod
    def of(cls, result: Any) -> "RunFacts":
        outputs = result.outputs
        return cls(
            data=RunData(outputs["Transform"]["transform_graph"][0], outputs["Transform"]["transformed_examples"][0]),
            model_uri=outputs["Trainer"]["model"][0],
            history=training.read_history(outputs["Trainer"]["model_run"][0]),
            stats=run_outputs.read_feedback_stats(outputs["FeedbackLabeler"]["feedback_stats"][0]),
        )

    def coverage(self, policy: str) -> float:
        return float(self.stats["coverage_by_input_policy"][policy]["share"])


# --- Experiments ----------------------------------------------------------------------------------------------
def headline(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The two numbers every experiment compares."""
    return {"pairwise_accuracy": evaluation["pairwise_accuracy"],
            "recall_at_100": evaluation["recall_at_k"][100], "pairs": evaluation["pairs"]}


class Experiments:
    """Runs the in-process trainings and evaluations against the base run's test split."""

    def __init__(self, plan: Plan, base: RunFacts, progress: Progress, durations: Durations) -> None:
        self.plan, self.base, self.progress, self.durations = plan, base, progress, durations
        self.eval_params = plan.config.evaluation_params()
        self.logs = plan.out / "logs"
        self._random_only_seed0: Optional[tuple[training.TrainedVariant, dict[str, Any]]] = None
        self._hard_negative_trainings: list[tuple[Any, training.TrainedVariant, dict[str, Any]]] = []
        """(params, training, whole evaluator result) of hard_negatives(): loss_formulations() reuses them."""

    def train_and_evaluate(self, section: str, name: str, params: Any, out_dir: pathlib.Path,
                           keep: Optional[list[tuple[Any, training.TrainedVariant, dict[str, Any]]]] = None,
                           ) -> tuple[training.TrainedVariant, dict[str, Any]]:
        """Trains and judges one variant; appends (params, training, whole evaluator result) to `keep`."""
        with timed(self.progress, self.durations, section, f"train {name}"):
            if out_dir.exists():
                shutil.rmtree(out_dir)
            with output_to(self.logs / "trainings.log"):
                trained = training.train_variant(self.base.data, params, out_dir)
                evaluation = training.evaluate_on(trained.model_dir, self.base.data, self.eval_params)
        if keep is not None:
            keep.append((params, trained, evaluation))
        return trained, headline(evaluation)

    def evaluate_run(self, section: str, name: str, facts: RunFacts, own_split: bool = False) -> dict[str, Any]:
        """A pipeline run's model on the base run's test split, or on its own run's (`own_split`)."""
        where = "its own test split" if own_split else "the base test split"
        with timed(self.progress, self.durations, section, f"evaluate {name} on {where}"):
            with output_to(self.logs / "evaluations.log"):
                evaluation = training.evaluate_on(facts.model_uri, facts.data if own_split else self.base.data,
                                                  self.eval_params)
        return evaluation

    def hard_negatives(self) -> dict[str, Any]:
        rows = []
        base_params = self.plan.config.training_params()
        for index in range(self.plan.seeds):
            seed = self.plan.config.seed + index
            folder = self.plan.out / "trainings" / "hard-negatives" / f"seed-{seed}"
            random_only = dataclasses.replace(base_params, hard_negatives_in_loss=False, seed=seed)
            with_hard = dataclasses.replace(base_params, hard_negatives_in_loss=True, seed=seed,
                                            hard_negative_weight=self.plan.hard_negative_weight)
            plain = self.train_and_evaluate("hard_negatives", f"seed {seed}: random negatives only", random_only,
                                            folder / "random-only", keep=self._hard_negative_trainings)
            hard = self.train_and_evaluate("hard_negatives", f"seed {seed}: random + hard negatives", with_hard,
                                           folder / "with-hard", keep=self._hard_negative_trainings)
            if index == 0:
                self._random_only_seed0 = plain
            rows.append(seed_row(seed, plain, hard))
        return summarize_hard_negatives(rows, self.plan.hard_negative_weight)

    def loss_formulations(self) -> dict[str, Any]:
        """Every way real negatives can enter the loss, against random-only, per seed (experiments.loss_ablation)."""
        seeds = [self.plan.config.seed + index for index in range(self.plan.seeds)]
        variants = [loss_ablation.parse_variant(name) for name in NEGATIVE_LOSSES]
        with timed(self.progress, self.durations, "loss_formulations",
                   f"train {len(seeds)} seed(s) x {1 + len(variants)} loss variants"):
            record = loss_ablation.ablate(self.base.data, self.plan.config, seeds, variants,
                                          self.plan.out / "trainings" / "loss-formulations",
                                          say=lambda message: self.progress.say(message.strip()),
                                          done=self._hard_negative_trainings)
        record["table_markdown"] = loss_ablation.markdown(record["summary"], seeds, "Loss formulations",
                                                          record["most_popular"])
        return record

    def train_sweep(self) -> dict[int, tuple[training.TrainedVariant, dict[str, Any]]]:
        """The sweep's own trainings (accuracy only, no timing: they may run beside pipeline runs)."""
        base_params = self.plan.config.training_params()
        trained = {}
        for n in self.plan.sweep_to_train:
            params = dataclasses.replace(base_params, hard_negatives_in_loss=False, num_random_negatives=n)
            trained[n] = self.train_and_evaluate("random_negatives_sweep", f"{n} random negatives, no hard negatives",
                                                 params, self.plan.out / "trainings" / "random-negatives" / f"n-{n}")
        return trained

    def random_negatives_sweep(self, trained_sweep: dict[int, tuple[training.TrainedVariant, dict[str, Any]]],
                               shares: Optional[dict[int, float]]) -> list[dict[str, Any]]:
        """One row per sweep point; the config's own number reuses the seed-0 random-only training."""
        rows = []
        for n in self.plan.sweep:
            if n in trained_sweep:
                trained, numbers = trained_sweep[n]
            elif self._random_only_seed0 is not None:
                trained, numbers = self._random_only_seed0
            else:
                raise RuntimeError(f"no training for {n} random negatives; run hard_negatives() first")
            share = None if shares is None else shares[n]
            rows.append({
                "num_random_negatives": n,
                "pairwise_accuracy": numbers["pairwise_accuracy"],
                "recall_at_100": numbers["recall_at_100"],
                "false_negative_share": share,
                "false_negatives_per_query": None if share is None or not math.isfinite(share) else n * share,
                "epochs": len(trained.history),
                "best_eval_pairwise_accuracy": training.best_accuracy(trained.history),
            })
        return rows

    def false_negative_shares(self) -> Optional[dict[int, float]]:
        if not self.plan.has_ground_truth:
            self.progress.say("no ground_truth/ in --data: false-negative shares are not measurable (null)")
            return None
        with timed(self.progress, self.durations, "random_negatives_sweep",
                   "count false negatives among sampled random negatives (ground truth)"):
            return false_negatives.false_negative_shares(
                self.plan.data, self.base.data, self.plan.config.training_params(), self.plan.sweep)


def seed_row(seed: int, plain: tuple[training.TrainedVariant, dict[str, Any]],
             hard: tuple[training.TrainedVariant, dict[str, Any]]) -> dict[str, Any]:
    """One seed's comparison: test numbers, and time to the random-only run's best eval accuracy."""
    (plain_run, plain_numbers), (hard_run, hard_numbers) = plain, hard
    target = training.best_accuracy(plain_run.history)
    own = training.time_to_target(plain_run.history, target)
    reached = training.time_to_target(hard_run.history, target)
    return {
        "seed": seed,
        "accuracy_random_only": plain_numbers["pairwise_accuracy"],
        "accuracy_with_hard": hard_numbers["pairwise_accuracy"],
        "recall_at_100_random_only": plain_numbers["recall_at_100"],
        "recall_at_100_with_hard": hard_numbers["recall_at_100"],
        "target_eval_accuracy": target,
        "time_to_target_random_s": own.seconds,
        "epochs_to_target_random": own.epochs,
        "time_to_target_hard_s": reached.seconds,
        "epochs_to_target_hard": reached.epochs,
        "hard_reached_target": reached.reached,
        "best_eval_accuracy_with_hard": training.best_accuracy(hard_run.history),
        "history_random_only": training.curve(plain_run.history),
        "history_with_hard": training.curve(hard_run.history),
    }


def summarize_hard_negatives(rows: Sequence[dict[str, Any]], weight: float) -> dict[str, Any]:
    """Means over seeds; the hard run's time is null unless it reached the target in every seed."""
    accuracy_plain = mean([row["accuracy_random_only"] for row in rows])
    accuracy_hard = mean([row["accuracy_with_hard"] for row in rows])
    time_plain = mean([row["time_to_target_random_s"] for row in rows])
    time_hard = mean([row["time_to_target_hard_s"] for row in rows])
    reached = sum(bool(row["hard_reached_target"]) for row in rows)
    return {
        "accuracy_random_only": accuracy_plain,
        "accuracy_with_hard": accuracy_hard,
        "relative_gain": (None if accuracy_plain is None or accuracy_hard is None
                          else ratio(accuracy_hard - accuracy_plain, accuracy_plain)),
        "recall_at_100_random_only": mean([row["recall_at_100_random_only"] for row in rows]),
        "recall_at_100_with_hard": mean([row["recall_at_100_with_hard"] for row in rows]),
        "time_to_target_random_s": time_plain,
        "time_to_target_hard_s": time_hard,
        "time_ratio": ratio(time_hard, time_plain),
        "epochs_to_target_random": mean([row["epochs_to_target_random"] for row in rows]),
        "epochs_to_target_hard": mean([row["epochs_to_target_hard"] for row in rows]),
        "hard_reached_target": reached == len(rows),
        "hard_reached_target_seeds": reached,
        "hard_negative_weight": weight,
        "seeds": list(rows),
    }


def input_policies(plan: Plan, base: RunFacts, runs: dict[str, RunFacts], on_base: dict[str, dict[str, Any]],
                   on_own: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per input policy: coverage from that run's labeler; accuracy of its model on its own run's test split.

    The input policy only changes the histories: every run has the same test targets and real negatives
    (the time split and the negative policy are the same), so the own-split numbers compare the policies
    as the paper does, each model reading the histories it was trained on. On the base split a model
    trained without skip tokens meets them at test time; those numbers are kept as *_on_base_split.
    """
    table = {}
    for policy in plan.policies:
        name = BASE if policy == plan.config.input_policy else f"input-{policy}"
        facts = base if name == BASE else runs[name]
        own, on_reference = headline(on_own.get(name, on_base[name])), headline(on_base[name])
        table[policy] = {"coverage": facts.coverage(policy), **own,
                         "pairwise_accuracy_on_base_split": on_reference["pairwise_accuracy"],
                         "recall_at_100_on_base_split": on_reference["recall_at_100"],
                         "test_examples": int(facts.stats["examples"][contract.TEST]), "run": name}
    return table


def feedback_proportions(plan: Plan, base: RunFacts, runs: dict[str, RunFacts],
                         evaluations: dict[str, dict[str, Any]],
                         copies: dict[float, subsample.SubsampleResult]) -> list[dict[str, Any]]:
    thresholds = contract.LabelThresholds(plan.config.skip_ms, plan.config.skip_fraction)
    rows = []
    for fraction in plan.fractions:
        name = BASE if fraction >= 1.0 else fraction_name(fraction)
        facts = base if name == BASE else runs[name]
        log = copies[fraction] if fraction < 1.0 else subsample.describe(plan.data, plan.spans, thresholds)
        rows.append({"keep_fraction": fraction, "negative_share": log.negative_share,
                     **headline(evaluations[name]), "coverage": facts.coverage(plan.config.input_policy),
                     "plays": log.rows_out, "labels": log.labels, "run": name})
    return rows


def accuracy_noise(pairs: int) -> Optional[float]:
    """95% half-width of a pairwise accuracy near 0.5 measured on `pairs` pairs (a guide: pairs share users)."""
    return 1.96 * math.sqrt(0.25 / pairs) if pairs else None


# --- Main -------------------------------------------------------------------------------------------------------
def print_plan(plan: Plan, progress: Progress) -> None:
    expected = estimate_seconds(plan)
    in_process = plan.trainings - plan.pipeline_runs
    progress.say(f"data {plan.data}: spans {plan.spans[0]}-{plan.spans[-1]}, {plan.events} plays "
                 f"({', '.join(f'{k} {v}' for k, v in plan.labels.items())}), ground truth: "
                 f"{'yes' if plan.has_ground_truth else 'no'}")
    progress.say(f"plan: {plan.pipeline_runs} pipeline runs (base, input policies {plan.policy_runs}, keep fractions "
                 f"{plan.fraction_runs}) and {plan.trainings} trainings ({in_process} in-process: {plan.seeds} seed(s) x (2 "
                 f"hard-negative variants + {plan.loss_trainings} other loss formulations) + "
                 f"{len(plan.sweep_to_train)} sweep points; {plan.pipeline_runs} by the "
                 f"pipelines' Trainer), {plan.config.epochs} epochs max, {plan.jobs} pipeline lane(s)")
    progress.say(f"expected duration: ~{expected / 60:.0f} min ({expected:.0f} s) on a 2-core machine "
                 f"{'(--quick)' if plan.quick else '(full run)'}; other load on the machine makes it longer")
    if expected_train_examples(plan) < FEW_TRAIN_EXAMPLES:
        progress.say(f"WARNING: about {expected_train_examples(plan):.0f} training examples expected "
                     f"(< {FEW_TRAIN_EXAMPLES}): the numbers will be mostly noise")


def run(plan: Plan, progress: Progress) -> dict[str, Any]:
    """Every step in order; returns the report's JSON object."""
    durations = Durations()
    began = time.perf_counter()
    plan.out.mkdir(parents=True, exist_ok=True)
    copies = write_subsamples(plan, progress, durations)
    lane_a, lane_b = pipeline_jobs(plan)
    warnings: list[str] = []
    with PipelineLanes(plan, [lane_a, lane_b], progress, durations) as lanes:
        base = RunFacts.of(lanes.result(BASE))
        train_examples = int(base.stats["examples"][contract.TRAIN])
        if train_examples < FEW_TRAIN_EXAMPLES:
            warnings.append(f"the base run has only {train_examples} training examples (< {FEW_TRAIN_EXAMPLES}): "
                            "the differences below are mostly noise")
            progress.say(f"WARNING: {warnings[-1]}")
        experiments = Experiments(plan, base, progress, durations)
        trained_sweep = experiments.train_sweep()  # beside the remaining pipeline runs: no timing is taken here
        facts = {name: RunFacts.of(result) for name, result in lanes.results().items()}
    evaluations = {name: experiments.evaluate_run(section_of(name), name, facts[name]) for name in facts}
    own_split = {name: experiments.evaluate_run("input_policies", name, facts[name], own_split=True)
                 for name in facts if name.startswith("input-")}
    hard = experiments.hard_negatives()  # alone: its training times are compared
    formulations = experiments.loss_formulations()
    shares = experiments.false_negative_shares()
    sweep = experiments.random_negatives_sweep(trained_sweep, shares)
    base_evaluation = evaluations[BASE]
    durations.add("total", time.perf_counter() - began)
    return json_safe({
        "paper": PAPER,
        "quick": plan.quick,
        "seeds": plan.seeds,
        "config": dataclasses.asdict(plan.config),
        "data": {"path": str(plan.data.resolve()), "spans": plan.config.spans, "has_ground_truth": plan.has_ground_truth,
                 "events": plan.events, "labels": plan.labels, "train_examples": train_examples,
                 "test_examples": int(base.stats["examples"][contract.TEST]),
                 "test_pairs": base_evaluation["pairs"], "accuracy_noise_95": accuracy_noise(base_evaluation["pairs"])},
        "versions": versions(VERSIONED),
        "durations": durations.seconds,
        "hard_negatives": hard,
        "loss_formulations": formulations,
        "responsiveness": base_evaluation.get("responsiveness"),
        "input_policies": input_policies(plan, base, facts, evaluations, own_split),
        "random_negatives_sweep": sweep,
        "feedback_proportions": feedback_proportions(plan, base, facts, evaluations, copies),
        "feedback_type_similarity": base_evaluation["feedback_type_similarity"],
        "base_evaluation": {key: base_evaluation[key] for key in (
            "pairwise_accuracy", "pairs", "recall_at_k", "ndcg_at_k", "mrr", "coverage", "examples", "users")
            if key in base_evaluation} | {"most_popular": headline(base_evaluation["most_popular"])},
        "base_training_history": training.curve(base.history),
        "runs": {job.name: str(job.root) for _, job in lane_a + lane_b},
        "warnings": warnings,
    })


def section_of(run_name: str) -> str:
    if run_name == BASE:
        return "base_run"
    return "input_policies" if run_name.startswith("input-") else "feedback_proportions"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.reproduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=pathlib.Path, required=True,
                        help="log folder with span-N/ folders (listening_logs.simulate or .convert output); "
                             "a ground_truth/ folder there enables the false-negative counts")
    parser.add_argument("--out", type=pathlib.Path, required=True,
                        help="output folder (created): report.json, report.html, runs/, trainings/, data/, logs/")
    parser.add_argument("--quick", action="store_true",
                        help=f"small run: epochs <= {QUICK_MAX_EPOCHS} (patience >= epochs) unless --set says "
                             f"otherwise, sweep {list(QUICK_SWEEP)}, keep fractions {list(QUICK_FRACTIONS)}, "
                             f"{QUICK_SEEDS} seed")
    parser.add_argument("--seeds", type=int, default=None,
                        help=f"seeds of the hard-negative comparison (default {FULL_SEEDS}, --quick {QUICK_SEEDS})")
    parser.add_argument("--hard-negative-weight", type=float, default=None, metavar="W",
                        help="weight of the real negatives in the 'with hard' variant (default: the config's "
                             "hard_negative_weight)")
    parser.add_argument("--jobs", type=int, default=2, choices=(1, 2),
                        help="pipeline runs side by side (2: the base root's runs and the feedback copies' runs "
                             "in two worker processes; default 2)")
    parser.add_argument("--sweep", type=cli_type(int_list, "--sweep"), default=None, metavar="N,N,...",
                        help=f"numbers of random negatives to sweep (default {','.join(map(str, FULL_SWEEP))}; "
                             f"--quick {','.join(map(str, QUICK_SWEEP))})")
    fractions = functools.partial(float_list, low=0.0, high=1.0)
    parser.add_argument("--keep-fractions", type=cli_type(fractions, "--keep-fractions"), default=None,
                        metavar="F,F,...",
                        help=f"shares of each listener's skips/dislikes to keep (default "
                             f"{','.join(f'{f:g}' for f in FULL_FRACTIONS)}; --quick "
                             f"{','.join(f'{f:g}' for f in QUICK_FRACTIONS)}); 1 (the base run) is always included")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan and the expected duration, then stop")
    configs.add_settings_argument(parser, note="; spans default to 1-<last span found>")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    progress = Progress(stream=sys.stdout)
    try:
        plan = make_plan(args)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    print_plan(plan, progress)
    if args.dry_run:
        return 0
    result = run(plan, progress)
    json_path = plan.out / REPORT_JSON
    json_path.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    html_path = report.write_report(result, plan.out / REPORT_HTML)
    progress.say(f"finished in {progress.elapsed():.0f} s")
    print(f"report.json: {json_path.resolve()}")
    print(f"report.html: {html_path.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
