"""Expected wall time of each section from its sizes, printed before a run starts.

Constants measured on this 2-core machine (idle where possible); another engineer's load makes runs longer.
The pipeline and training costs are harness.estimates' (shared with experiments.reproduce); the ones here are
the benchmark sections' own.
"""
from __future__ import annotations

from benchmarks.pipeline_runs import RunSpec
from benchmarks.settings import Profile
from harness import estimates

LABELLING_PREP_S_PER_EVENT = 6e-5
"""Simulating and writing the log as TFRecords and Parquet."""
BEAM_S_PER_EVENT = 2.5e-4
BEAM_FIXED_S = 8.0
PORTABLE_FIXED_S = 30.0
"""The portable cluster's start and its SDK worker's start (it imports TensorFlow) in the labelling section."""
PANDAS_S_PER_EVENT = 4e-6
TRAIN_EXAMPLES_PER_EVENT = {"like": 0.05, "like+listen": 0.45}
"""Training examples per simulated play (train split) by positive policy."""
RETRIEVAL_WORKER_FIXED_S = 12.0
SCANN_BUILD_S_PER_POINT = 4e-5
EXACT_PASS_S_PER_POINT = 4e-6
"""One recall pass of all queries (per 1000 queries) through an exact method."""
SERVER_START_S = 15.0
SWAP_S = 8.0


def _settings(spec: RunSpec) -> dict[str, str]:
    return dict(setting.split("=", 1) for setting in spec.settings)


def train_examples(spec: RunSpec) -> float:
    return spec.events * TRAIN_EXAMPLES_PER_EVENT.get(_settings(spec).get("positive_policy", "like"), 0.05)


def training_s(examples: float, epochs: int) -> float:
    return estimates.training_seconds(examples, epochs)


def pipeline_s(spec: RunSpec) -> float:
    """One run in a fresh child process (benchmarks.pipeline_runs): its start, the pipeline, its Trainer."""
    epochs = int(_settings(spec).get("epochs", 10))
    return estimates.PROCESS_START_S + estimates.pipeline_seconds(spec.events, training_s(train_examples(spec), epochs))


def section_seconds(profile: Profile, sections: tuple[str, ...], model_given: bool = False,
                    run_given: bool = False) -> dict[str, float]:
    """Seconds per selected section; a shared pipeline run is charged to the first section that needs it (the
    serving section needs none when a model folder is given, and no section when --pipeline-root gives the run;
    the trainings are then still estimated from the profile's model log)."""
    charged: set[RunSpec] = set()

    def run_once(spec: RunSpec) -> float:
        if run_given or spec in charged:
            return 0.0
        charged.add(spec)
        return pipeline_s(spec)

    model = RunSpec.of(profile, "model")
    found: dict[str, float] = {}
    for section in sections:
        if section == "labelling":
            events = profile.labelling_events
            found[section] = (LABELLING_PREP_S_PER_EVENT * events + PANDAS_S_PER_EVENT * events
                              + sum(BEAM_FIXED_S * w + BEAM_S_PER_EVENT * events for w in profile.workers)
                              + (PORTABLE_FIXED_S + BEAM_S_PER_EVENT * events
                                 if profile.labelling_cluster == "portable" else 0.0))
        elif section == "training":
            epochs = int(dict(s.split("=", 1) for s in profile.settings("training")).get("epochs", 10))
            found[section] = run_once(model) + (1 + len(profile.hard_weights)) * profile.training_seeds * training_s(
                train_examples(model), epochs)
        elif section == "retrieval":
            total = 0.0
            for n in profile.catalogs:
                configs = len(profile.leaf_fractions) * len(profile.reorder)
                per_worker = (RETRIEVAL_WORKER_FIXED_S + 2 * SCANN_BUILD_S_PER_POINT * n
                              + (2 + 2 * configs) * 2 * profile.retrieval_loop_s
                              + 2 * EXACT_PASS_S_PER_POINT * n * profile.retrieval_queries / 1000)
                total += per_worker * len(profile.threads)
            found[section] = total
        elif section == "serving":
            found[section] = ((0.0 if model_given else run_once(model)) + 2 * SERVER_START_S
                              + (len(profile.clients) + 1) * profile.serving_loop_s + 2 * profile.serving_swap_s + SWAP_S)
        elif section == "pipeline":
            found[section] = sum(run_once(RunSpec.of(profile, "pipeline", scale)) for scale in profile.scales)
    return found
