"""Measured costs of pipeline runs and trainings, for the run-time estimates printed before a long command.

Measured on this project's 2-core machine with 30k- and 200k-play simulated logs (idle where possible); other
load makes runs longer. experiments.reproduce and benchmarks.estimate build their plans' estimates from these.
"""
from __future__ import annotations

PROCESS_START_S = 15.0
"""Importing TensorFlow, TFX and Beam in a fresh (spawned) process."""
PIPELINE_FIXED_S = 110.0
"""A fresh pipeline run without its Trainer: ExampleGen .. Transform, the evaluator, the serving export."""
PIPELINE_CACHED_FIXED_S = 70.0
"""The same when ExampleGen, StatisticsGen and ExampleValidator come from TFX's cache."""
PIPELINE_PER_EVENT_S = 6.3e-4
"""ExampleGen + FeedbackLabeler + StatisticsGen per play (about half of it is FeedbackLabeler's)."""
CACHED_PER_EVENT_SHARE = 0.5
"""The share of PIPELINE_PER_EVENT_S a cached re-run still pays (FeedbackLabeler reruns, ExampleGen does not)."""
TRAINING_FIXED_S = 22.0
"""Graph tracing, the first epoch's start-up, the export."""
SECONDS_PER_EXAMPLE_EPOCH = 1.4e-3
"""One training example through one epoch, the epoch's eval pass included (tens of random negatives)."""
RANDOM_NEGATIVES_DOUBLING = 2048
"""Random negatives that double the per-example cost (a 1024-negative sweep point costs 1.5x)."""


def training_seconds(train_examples: float, epochs: int, random_negatives: int = 0) -> float:
    """A Trainer's wall time for `epochs` full epochs (early stopping only makes it shorter)."""
    per_example = SECONDS_PER_EXAMPLE_EPOCH * (1.0 + random_negatives / RANDOM_NEGATIVES_DOUBLING)
    return TRAINING_FIXED_S + epochs * train_examples * per_example


def pipeline_seconds(events: float, trainer_s: float, cached: bool = False) -> float:
    """One pipeline run over `events` plays whose Trainer takes `trainer_s` (child-process start not included)."""
    if cached:
        return PIPELINE_CACHED_FIXED_S + CACHED_PER_EVENT_SHARE * PIPELINE_PER_EVENT_S * events + trainer_s
    return PIPELINE_FIXED_S + PIPELINE_PER_EVENT_S * events + trainer_s
