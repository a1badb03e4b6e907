"""The Trainer's tf.distribute strategy, chosen by name in the config (docs/design.md §2: one code path for both runners).

'default' is the no-op strategy (here). 'multi_worker_mirrored' is for Kubeflow: with TF_CONFIG naming several
workers it trains data-parallel; without TF_CONFIG it is one local worker. It must be created before any other
TensorFlow op in the process, so `run_fn` makes it first.
"""
from __future__ import annotations

import json
import os

import tensorflow as tf

from models.params import DEFAULT_STRATEGY, MIRRORED_STRATEGY, MULTI_WORKER_STRATEGY, STRATEGIES

CHIEF_TASK_TYPES = ("chief", "master")


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == DEFAULT_STRATEGY:
        return tf.distribute.get_strategy()
    if name == MIRRORED_STRATEGY:
        return tf.distribute.MirroredStrategy()
    if name == MULTI_WORKER_STRATEGY:
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"distribution_strategy must be one of {STRATEGIES}, got {name!r}")


def is_chief() -> bool:
    """True unless TF_CONFIG names this process a non-chief worker (worker 0 is chief when there is no chief).

    Only the chief writes the history, TensorBoard logs and exports where the pipeline reads them; the others
    write to scratch, since every worker must take part in a multi-worker save.
    """
    task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task") or {}
    task_type, index = task.get("type"), int(task.get("index", 0))
    if task_type is None or task_type in CHIEF_TASK_TYPES:
        return True
    cluster = json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
    has_chief = any(kind in cluster for kind in CHIEF_TASK_TYPES)
    return task_type == "worker" and index == 0 and not has_chief


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Multi-worker input sharding by example rather than by file (a span may be one file, fewer than workers)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
