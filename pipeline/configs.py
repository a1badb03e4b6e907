"""Every knob of the pipeline, with its default, in one place; runners override them with `--set key=value`."""
from __future__ import annotations

import argparse
import dataclasses
import typing
from importlib import metadata
from typing import Any, Iterable

from components.feedback_labeler.sequences import LabelingParams
from components.retrieval_evaluator.blessing import EvaluationParams
from models.params import DEFAULT_STRATEGY, LAZY_ADAM, MULTI_WORKER_STRATEGY, SUM_WITH_FLOORS, TrainingParams
from models.serving_params import BRUTE_FORCE, SCANN, ScannParams, ServingParams
from schema import contract

PIPELINE_NAME = "music_retrieval"
KUBEFLOW_PIPELINE_NAME = "music-retrieval"
"""KFP pipeline names must match [a-z0-9][a-z0-9-]{0,127} (no underscores)."""
SERVED_MODEL_NAMES = {SCANN: "music_retrieval", BRUTE_FORCE: "music_retrieval_brute_force"}
"""TF Serving model names of the two exports (docs/design.md §7): `<serving base>/<name>/<version>/`."""
SERVING_DIR = "serving"
"""The local runner's serving base, under its --root."""
METADATA_FILE = "metadata.sqlite"
PIPELINE_ROOT_DIR = "pipeline"
LATEST_SPAN = "latest"
ALL_SPANS = "all"
ALL_SPANS_WINDOW = 100_000
"""The rolling window that stands for 'every span up to the newest' (273 years of daily spans; only the span
folders that exist are read)."""
INPUT_FORMATS = ("csv", "parquet")
BEAM_RUNNING_MODES = ("in_memory", "multi_threading", "multi_processing")
BEAM_VERSION = metadata.version("apache-beam")
IN_PROCESS_WORKER_ARGS = ("--sdk_container_image=none", f"--update_compatibility_version={BEAM_VERSION}")
"""Given to DirectRunner runs.

`--sdk_container_image=none`: without a worker image or package flag, TFX builds an 'ephemeral' sdist of itself
in a subprocess for every Beam executor (3-7 s each, 4 executors a run) for remote workers to install.
DirectRunner's workers are this process or its children (the FnApiRunner's), which import the installed TFX and
never read the image flag.

`--update_compatibility_version=<the installed Beam>`: Beam's DirectRunner otherwise first tries its Prism runner
in every Beam stage, which downloads a Prism binary from the internet at run time (this project fetches nothing
at run time; offline the download fails and Beam falls back to the FnApiRunner after converting the pipeline
twice: ~2.3 s a run, 1.4 s of it in Transform). DirectRunner skips Prism when this option is set, and every
compatibility switch in Beam asks whether the version is *before* the one that changed a behaviour, so naming
the installed version changes nothing else. The FnApiRunner then runs the stage as it did after the fallback,
with the pipeline options handed to its workers (`--runner=FnApiRunner` would not hand them to worker
processes)."""
IMAGE_PROJECT_DIR = "/pipeline"
"""Where the container image (Dockerfile) puts the project; compiled Kubeflow specs point into it."""


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """The pipeline's settings. Field names are the `--set` keys."""

    spans: str = ALL_SPANS
    """Which daily spans ExampleGen reads: 'all' (every span up to the newest), 'latest', one span 'N', or an
    inclusive range 'A-B'. Scheduled runs use 'latest' with a window_spans window."""
    window_spans: int = 1
    """Training window with 'latest' or 'N': that span and the window_spans - 1 before it (those that exist)."""
    input_format: str = "auto"
    """'csv', 'parquet', or 'auto' (decided by the files in the span folders)."""
    fail_on_anomalies: bool = False
    """Anomalies are always reported; with True the runner exits non-zero when ExampleValidator found any."""
    enable_cache: bool = True
    """TFX caching: a re-run with the same inputs and settings reuses finished steps."""
    beam_direct_running_mode: str = "in_memory"
    """DirectRunner mode when no other Beam runner is given: in_memory, multi_threading or multi_processing."""
    beam_direct_num_workers: int = 1
    """DirectRunner workers (processes in multi_processing mode)."""

    # --- FeedbackLabeler (docs/design.md §4) ---
    skip_ms: int = contract.DEFAULT_SKIP_MS
    """A play without thumbs shorter than this is a skip."""
    skip_fraction: float = contract.DEFAULT_SKIP_FRACTION
    """...or shorter than this fraction of the track's duration."""
    positive_policy: str = "like"
    """Targets: 'like' (thumbs up, the paper's Pandora set-up) or 'like+listen' (implicit positives too)."""
    input_policy: str = "all"
    """History tokens: 'positives', 'positives+skips' or 'all' (skips and dislikes too)."""
    negative_policy: str = "dislikes+skips"
    """Hard negatives: 'dislikes', 'skips', 'dislikes+skips' or 'none'."""
    max_history: int = 20
    """History length per example (most recent plays, same station first)."""
    max_hard_negatives: int = 5
    """Hard negatives per example (same station first, nearest in time)."""
    hard_negative_window_ms: int = 3_600_000
    """Only skips/dislikes within this time of the target are its hard negatives."""
    eval_cutoff: str = "0.7"
    """Targets at or after this are eval: a fraction of the log's time range or an epoch-ms timestamp."""
    test_cutoff: str = "0.85"
    """Targets at or after this are test (same forms as eval_cutoff)."""
    max_events_per_user: int = 5000
    """Only a listener's most recent plays are kept (bounds memory per listener; the rest are counted)."""

    # --- Trainer (docs/design.md §5); max_history and max_hard_negatives above apply too ---
    num_random_negatives: int = 64
    """Catalog tracks sampled per batch as extra negatives (shared by the batch, logQ-corrected)."""
    sampler: str = "popularity"
    """How random negatives are drawn: 'uniform' or 'popularity' (count ** sampler_alpha)."""
    sampler_alpha: float = 0.75
    """Exponent of the popularity sampler (0 is uniform)."""
    hard_negatives_in_loss: bool = True
    """Use each row's own skips/dislikes as negatives in the softmax (False: random + in-batch only)."""
    hard_negative_weight: float = 1.0
    """Multiplies each hard negative's share of the softmax denominator."""
    negative_loss: str = "pairwise"
    """How real negatives enter the loss next to the softmax: 'softmax' (only in its denominator), 'pairwise'
    (softplus of negative minus positive score, per real negative) or 'not_to_recommend' (-log(1 - p(neg)))."""
    negative_loss_weight: float = 1.0
    """Weight of the pairwise or not-to-recommend term against the softmax."""
    item_bias: bool = True
    """A learned per-track bias in every score, started from the log-popularity: lets the model keep the
    popularity prior that logQ correction takes out of the softmax (an extra embedding column, so ScaNN and
    every scorer see it)."""
    item_bias_prior_scale: float = 1.0
    """Where the item bias starts, as a multiple of the log-popularity prior (0: at zero). A full prior lets
    popularity outvote a listener's taste in the first epochs; docs/model-and-loss.md section 6 has the one-seed probe."""
    history_pooling: str = "all"
    """Which history tokens the query tower averages after the transformer: 'all', or 'positives' (likes and
    listens; skips and dislikes then act through attention only; a history without a positive uses all)."""
    history_gains: str = "off"
    """A learned per-feedback-type gain on each history token's track embedding: 'off' (none), or where the
    gain of skips and dislikes starts: 'signed' (-1: a rejection pulls the query away from the track), 'zero'
    (0: it says only that something was rejected), 'learned' (+1); likes and listens start at +1
    (docs/model-and-loss.md)."""
    direct_feedback: str = "all"
    """Feedback types whose history tracks also move the query directly, bypassing the transformer: 'off',
    'rejections' (skips and dislikes) or 'all'. Per type, a learned scalar (starting at 0) times the mean of those
    tracks' candidate vectors is added to the query, so a score falls (weight < 0) with a candidate's similarity
    to what the listener just rejected: a thumbs-down acts on the next request (docs/model-and-loss.md)."""
    direct_feedback_scale: float = 10.0
    """The direct feedback weights are this times their variables, so Adam moves them this many times faster than
    the other weights. At 1 the rejection weights were still moving when training ended; at 10 (3 seeds, both
    presets) the model is more accurate, reaches random-only's best sooner and ranks the top-10 better, for
    0.014-0.019 of recall@100 (docs/model-and-loss.md section 8)."""
    history_memory: str = "rejections"
    """A learned score offset, per feedback type, for a candidate that is itself in the listener's history, on top
    of the dot product: 'off', 'rejections' (a track skipped or disliked in the history scores lower; the offsets
    are held at or below 0) or 'all' (likes and listens too). It acts on that track alone, where the direct
    feedback weights move its whole neighbourhood; the served top-k rescores the retrieved tracks and the
    history's own tracks with it (models/memory.py). 'rejections' with negative_loss_on_query 'dislikes' (3 seeds,
    both 200k presets): recall@100 0.485 against 0.448 without it on the default preset for 0.015 less pairwise
    accuracy, and better on both on the realistic one (docs/model-and-loss.md section 11)."""
    negative_loss_on_bias: bool = False
    """Whether the pairwise / not-to-recommend term also moves the item bias (False: only the personal part
    of the score, the cosine; one listener's skip then says 'not for me', not 'worse for everyone')."""
    negative_loss_on_candidates: str = "all"
    """Which candidate embeddings the pairwise / not-to-recommend term may move: 'all', 'new' (all but the real
    negatives already in the listener's history: their repeats are the history memory's) or 'none' (the term then
    trains only the history memory offsets and what negative_loss_on_query lets it move of the query; the softmax
    still has the real negatives in its denominator). 3 seeds, both 200k presets, with the defaults around it:
    'none' is as accurate and retrieves as well on the default preset and better on the realistic one (recall@100
    0.591 against 0.569), but no longer lowers the held-out negative hit rate@10 (0.154 against random-only's
    0.152; 'all': 0.145); 'new' lost 0.05-0.09 of recall@100 (docs/model-and-loss.md section 12)."""
    negative_loss_on_query: str = "none"
    """What of the query tower the pairwise / not-to-recommend term may move: 'all', 'direct' (only the direct
    feedback weights, not the transformer), 'dislikes' (only the dislikes' direct weight, which then only the
    term trains) or 'none' (only the candidate embeddings and the history memory offsets: a rejection then lowers
    the rejected track itself, not the query's whole neighbourhood). 'none' with the dislike-neighbour rule
    (3 seeds, default 200k preset): recall@100 0.013 below random-only's, against 0.063 for 'dislikes', whose
    thumbs-down answer the rule now gives (docs/model-and-loss.md sections 11 and 12)."""
    dislike_neighbour_weight: float = 0.3
    """How much a track disliked in the history lowers the tracks most like it, everywhere a score is made: each
    candidate loses this times max(0, cosine - dislike_neighbour_floor) / (1 - dislike_neighbour_floor) per
    disliked history track (models/neighbours.py). A fixed rule, not trained; 0 turns it off. At 0.3 (a grid of
    0.1-0.5 and floors 0.3-0.7 on seed 42's models, then 3 seeds on both 200k presets) a dislike moves the next
    top-10 away from the disliked track's neighbours twice as much as the query's dislike weight did
    (neighbour-share drop 0.100 against 0.057), for 0.015-0.020 of recall@100 (docs/model-and-loss.md section 12)."""
    dislike_neighbour_floor: float = 0.5
    """The cosine to a disliked history track at or below which a candidate loses nothing (within [0, 1))."""
    temperature: float = 0.05
    """Softmax temperature on cosine scores."""
    embedding_dim: int = 64
    """Width of the track, feedback-type, position and station embeddings and of both towers' output."""
    num_layers: int = 2
    """Transformer encoder blocks over the history."""
    num_heads: int = 2
    """Attention heads per transformer block."""
    dropout: float = 0.1
    """Dropout rate inside the transformer blocks."""
    learning_rate: float = 0.002
    """The optimizer's learning rate."""
    optimizer: str = LAZY_ADAM
    """The Trainer's optimizer: 'lazy_adam' (row-wise: an embedding table's step touches only the rows the batch
    looked up, so its cost does not grow with the catalog; models/optimizer.py) or 'adam' (tf_keras' Adam: every
    step decays the moments of every row of the track table: +28% CPU per step at 3x the 1M run's catalog, 2.1x
    at 9x). Over 5 seeds on both 200k presets lazy_adam's pairwise accuracy is within one sd of adam's (0.002-0.004
    lower) and its recall@100 0.014-0.017 higher (docs/model-and-loss.md section 10)."""
    batch_size: int = 256
    """Training batch (its rows are each other's in-batch negatives; per replica when distributed)."""
    epochs: int = 10
    """Most training epochs (early stopping may end sooner; the best epoch's weights are kept)."""
    patience: int = 3
    """Early stopping: epochs without a better early_stopping value before training stops."""
    early_stopping: str = SUM_WITH_FLOORS
    """What early stopping maximises on the eval split: 'pairwise_accuracy', 'recall_at_100', their sum
    ('pairwise_accuracy+recall_at_100'), the best accuracy among the epochs whose recall@100 reaches most-popular's
    ('pairwise_accuracy_with_recall_floor'), or (the default) the best sum among the epochs that reach
    most-popular's pairwise accuracy and recall@100 both: the blessing's beats_most_popular rule applied while
    training. With the pairwise term accuracy peaks an epoch or two before recall stops rising; keeping the most
    accurate epoch gave up 0.03-0.05 of recall@100 for 0.005 of accuracy, and the sum alone kept models under
    most-popular's accuracy on the realistic preset (docs/model-and-loss.md sections 5 and 13)."""
    seed: int = 42
    """Seed of weight initialisation, shuffling and negative sampling, and of the evaluator's test sample."""
    warm_start: bool = False
    """Start the Trainer from the latest blessed model's weights (tracks and stations matched by raw id)."""
    distribution_strategy: str = DEFAULT_STRATEGY
    """tf.distribute strategy of the Trainer: 'default', 'mirrored' or 'multi_worker_mirrored' (TF_CONFIG)."""

    # --- RetrievalEvaluator (docs/design.md §6) ---
    min_pairwise_accuracy: float = 0.5
    """Blessing floor on test pairwise accuracy (0.5 is a coin flip between a target and a real negative)."""
    min_recall_at_100: float = 0.0
    """Blessing floor on test recall@100."""
    max_regression: float = 0.01
    """Blessing: pairwise accuracy and recall@100 may fall at most this much below the last blessed model's."""
    cold_max_train_examples: int = 4
    """Slice 'cold users': at most this many training examples."""
    heavy_min_train_examples: int = 50
    """Slice 'heavy users': at least this many training examples ('warm' is in between)."""
    skip_heavy_min_share: float = 0.5
    """Slice 'skip-heavy users': at least this share of their test-history tokens are skips."""
    head_play_share: float = 0.5
    """Slice 'head tracks': the most played tracks that together hold this share of plays."""
    min_ann_recall: float = 0.95
    """Blessing floor on ScaNN's recall@ann_recall_k against the exact top-k, on test queries."""
    ann_recall_k: int = 10
    """The k of the ANN recall floor (recall at 10, 50 and 100 is reported too)."""
    most_popular_tolerance: float = 0.0
    """Blessing: test pairwise accuracy and recall@100 must reach the most-popular baseline's minus this."""
    max_test_queries: int = 10_000
    """The evaluator's test metrics (model, most-popular and last blessed model alike) score at most this many
    test examples: a seeded uniform sample, exact per example against the whole catalog, so their cost grows
    with the catalog, not with catalog x test split. A split at or below the cap is scored whole (the 200k-play
    presets hold 1,799-6,051 test examples); evaluation.json's test_sample says which and the sampling error."""

    # --- Serving export and Pusher (docs/design.md §7) ---
    serving_top_k: int = 100
    """K: recommendations per request."""
    serving_max_exclusions: int = 50
    """E: the fixed width of the `exclude_track_ids` input."""
    scann_num_leaves: int = 0
    """ScaNN tree leaves (0: about the square root of the catalog size)."""
    scann_num_leaves_to_search: int = 0
    """Leaves searched per query (0: the evaluator picks the smallest share that reaches min_ann_recall)."""
    scann_training_iterations: int = 12
    """Training iterations of ScaNN's partitioning tree."""
    scann_dimensions_per_block: int = 2
    """Asymmetric hashing: dimensions per 4-bit block (lower is more exact and bigger)."""
    scann_num_reordering_candidates: int = 200
    """Exact re-scoring of this many ScaNN candidates (0: none)."""
    scann_min_catalog: int = 1000
    """Catalogs smaller than this get an exact index in the 'scann' export too (ScaNN cannot train on them)."""

    def __post_init__(self) -> None:
        bounds = parse_spans(self.spans)
        if self.spans == ALL_SPANS and self.window_spans != 1:
            raise ValueError("spans=all already reads every span; window_spans goes with spans=latest or spans=N")
        if self.window_spans < 1:
            raise ValueError(f"window_spans must be >= 1, got {self.window_spans}")
        if bounds is not None and bounds[0] != bounds[1] and self.window_spans != 1:
            raise ValueError(f"spans={self.spans!r} already is the window; leave window_spans at 1 "
                             "(window_spans goes with spans=latest or spans=N)")
        if self.input_format not in ("auto",) + INPUT_FORMATS:
            raise ValueError(f"input_format must be auto, csv or parquet, got {self.input_format!r}")
        if self.beam_direct_running_mode not in BEAM_RUNNING_MODES:
            raise ValueError(f"beam_direct_running_mode must be one of {BEAM_RUNNING_MODES}")
        if self.beam_direct_num_workers < 1:
            raise ValueError("beam_direct_num_workers must be >= 1")
        self.labeling_params()
        self.training_params()
        self.evaluation_params()
        self.scann_params()
        self.serving_params()

    def labeling_params(self) -> LabelingParams:
        """FeedbackLabeler's parameters (validated on construction)."""
        return LabelingParams(**{f.name: getattr(self, f.name) for f in dataclasses.fields(LabelingParams)})

    def training_params(self) -> TrainingParams:
        """The Trainer's parameters (validated on construction)."""
        return TrainingParams(**{f.name: getattr(self, f.name) for f in dataclasses.fields(TrainingParams)})

    def evaluation_params(self) -> EvaluationParams:
        """RetrievalEvaluator's parameters (validated on construction)."""
        return EvaluationParams(**{f.name: getattr(self, f.name) for f in dataclasses.fields(EvaluationParams)})

    def scann_params(self) -> ScannParams:
        return ScannParams(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ScannParams)})

    def serving_params(self) -> ServingParams:
        return ServingParams(top_k=self.serving_top_k, max_exclusions=self.serving_max_exclusions)

    def beam_pipeline_args(self, extra: Iterable[str] = ()) -> list[str]:
        """DirectRunner settings from this config, then `extra` (which may name another runner entirely; then
        TFX's own dependency handling stays as it is)."""
        extra = list(extra)
        in_process = not any(arg.split("=", 1)[0] == "--runner" for arg in extra)
        return [
            f"--direct_running_mode={self.beam_direct_running_mode}",
            f"--direct_num_workers={self.beam_direct_num_workers}",
            *(IN_PROCESS_WORKER_ARGS if in_process else ()),
            *extra,
        ]


KUBEFLOW_OVERRIDES = (
    f"spans={LATEST_SPAN}",
    "window_spans=7",
    "warm_start=true",
    f"distribution_strategy={MULTI_WORKER_STRATEGY}",
)
"""What a scheduled Kubeflow run changes from the defaults: the newest span and the week before it, warm start from the last
blessed model, and the multi-worker strategy (one worker without TF_CONFIG). `--set` still overrides them."""


def kubeflow_config(assignments: Iterable[str] = ()) -> PipelineConfig:
    """The scheduled runs' settings: KUBEFLOW_OVERRIDES, then the user's `--set` assignments."""
    return with_overrides(PipelineConfig(), [*KUBEFLOW_OVERRIDES, *assignments])


def window(config: PipelineConfig) -> tuple[int | None, int, bool]:
    """(span ExampleGen resolves (None: the newest), spans in the window, whether every one must exist)."""
    if config.spans == ALL_SPANS:
        return None, ALL_SPANS_WINDOW, False
    bounds = parse_spans(config.spans)
    if bounds is None:
        return None, config.window_spans, False
    first, last = bounds
    if first == last:
        return last, config.window_spans, False
    return last, last - first + 1, True


def parse_spans(spec: str) -> tuple[int, int] | None:
    """None for 'latest' and 'all', else the inclusive (first, last) span numbers of 'N' or 'A-B'."""
    if spec in (LATEST_SPAN, ALL_SPANS):
        return None
    first, _, last = spec.partition("-")
    try:
        bounds = (int(first), int(last or first))
    except ValueError:
        raise ValueError(f"spans must be 'all', 'latest', 'N' or 'A-B' with span numbers, got {spec!r}") from None
    if bounds[0] < 1 or bounds[1] < bounds[0]:
        raise ValueError(f"spans range must satisfy 1 <= A <= B, got {spec!r}")
    return bounds


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(key: str, text: str, kind: Any) -> Any:
    if kind is bool:
        lowered = text.lower()
        if lowered not in _TRUE | _FALSE:
            raise ValueError(f"--set {key}: expected true or false, got {text!r}")
        return lowered in _TRUE
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"--set {key}: expected {kind.__name__}, got {text!r}") from None


def with_overrides(config: PipelineConfig, assignments: Iterable[str]) -> PipelineConfig:
    """Applies 'key=value' strings; unknown keys and wrong types fail with the list of valid keys."""
    hints = typing.get_type_hints(PipelineConfig)
    changes: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"--set expects key=value, got {assignment!r}")
        if key not in hints:
            raise ValueError(f"unknown setting {key!r}; valid keys: {', '.join(sorted(hints))}")
        changes[key] = _convert(key, value.strip(), hints[key])
    return dataclasses.replace(config, **changes)


def add_settings_argument(parser: argparse.ArgumentParser, note: str = "") -> None:
    """The `--set KEY=VALUE` option every runner shares; parse its values with `with_overrides`."""
    keys = ", ".join(field.name for field in dataclasses.fields(PipelineConfig))
    parser.add_argument(
        "--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
        help=f"override a setting of pipeline/configs.py (repeatable){note}; keys: {keys}",
    )
