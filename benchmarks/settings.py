"""Every size, duration and grid of the benchmarks, per profile, in one place.

Three profiles: `full` (the sizes issue 8 asks for; refreshes benchmarks/RESULTS.md), `quick` (under 10
minutes on an idle 2-core machine) and `tiny` (the smoke test's: seconds per section, numbers meaningless).
A profile is flat so that any field can be overridden from the command line (`--size key=value`).
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Iterable

from harness.numbers import float_list, int_list

SECTIONS: tuple[str, ...] = ("labelling", "training", "retrieval", "serving", "pipeline")
"""Run order: the pipeline section last, so a shared pipeline run is usually made by the training section."""

LABELLING_CLUSTERS = ("portable", "none")
RESULTS_JSON = "results.json"
RESULTS_MD = "RESULTS.md"
RECALL_TARGETS: tuple[float, ...] = (0.90, 0.95, 0.99)
RECALL_K = 10
BATCH_SIZE = 64
PAPER_TIME_RATIO = 0.4
"""arXiv 2406.04488: random + real hard negatives reach the random-only accuracy in ~40% of the time."""


@dataclasses.dataclass(frozen=True)
class Profile:
    """Sizes of one benchmark run. Field names are the `--size` keys."""

    name: str

    # --- 1 labelling: FeedbackLabeler (Beam, in-process and N workers) vs the pandas reference ---
    labelling_events: int
    labelling_users: int
    labelling_tracks: int
    labelling_days: int
    labelling_workers: str = "1,2"
    labelling_shards: int = 4
    labelling_cluster: str = "portable"
    """'portable' adds a run on `pipeline.beam_cluster` (a job service and an external SDK worker pool on
    127.0.0.1, the stand-in for Flink: docs/running-at-scale.md); 'none' leaves it out."""

    # --- the simulated log the training and serving sections' model comes from (one pipeline run) ---
    model_events: int = 40_000
    model_users: int = 400
    model_tracks: int = 3_000
    model_days: int = 7
    model_settings: str = ""
    """`--set` overrides of that pipeline run, ';'-separated (e.g. 'epochs=4;patience=4')."""
    model_preset: str = "default"
    """Simulator preset of that log (`listening_logs.presets`): 'default', or 'realistic' (rejected tracks
    are unpopular, as on real logs); run the training section once per preset to judge a choice on both."""

    # --- 2 training: random-only vs random + hard negatives, in-process run_fn on that run's Transform output ---
    training_seeds: int = 3
    training_settings: str = ""
    """Trainer overrides for the in-process trainings (';'-separated key=value)."""
    training_hard_weights: str = "1"
    """hard_negative_weight of each random + hard run (1 is the product default; every run uses the default
    negative_loss, so the section measures real negatives at the default settings; the formulations are
    compared by `python -m experiments.loss_ablation`, docs/model-and-loss.md)."""

    # --- 3 retrieval: exact (numpy, TF) vs ScaNN (TF op, native) on synthetic embeddings ---
    retrieval_catalogs: str = "100000,1000000"
    retrieval_dim: int = 64
    retrieval_embeddings: str = "clustered"
    """'clustered' (points around sqrt(N) unit centres) or 'random' (uniform on the sphere: ANN's worst case)."""
    retrieval_queries: int = 1_000
    retrieval_threads: str = "1,2"
    retrieval_leaf_fractions: str = "0.005,0.01,0.02,0.05,0.1,0.2"
    """Leaves searched per query as fractions of the tree's leaves (about sqrt(N) leaves)."""
    retrieval_reorder: str = "10,100,500"
    """Candidates re-scored exactly (10 = k: no reordering beyond the final top 10)."""
    retrieval_loop_s: float = 2.0
    """Upper bound of each timed query loop."""
    roofline_copy_mb: int = 512
    roofline_matmul_n: int = 2048

    # --- 4 serving: the gRPC server vs the same model in-process ---
    serving_clients: str = "1,2,4,8"
    serving_loop_s: float = 8.0
    serving_swap_s: float = 10.0
    """Load before and after the new version serves (the swap itself is waited for, up to serving_timeout_s)."""
    serving_timeout_s: float = 120.0

    # --- 5 pipeline: pipeline.local_runner end to end, per component (MLMD) ---
    pipeline_events: int = 1_000_000
    pipeline_users: int = 20_000
    pipeline_tracks: int = 50_000
    pipeline_days: int = 7
    pipeline_settings: str = ""
    pipeline_scales: str = "0.1,1,3"
    """The cost curve: one run per multiplier of the pipeline log (plays, listeners and catalog scaled together,
    days and settings unchanged), with the growth exponent between consecutive sizes. 1 (the log above) must be
    among them: its run gives the section's component table and headline."""

    seed: int = 0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and field.name != "seed" and value <= 0:
                raise ValueError(f"size {field.name} must be > 0, got {value}")
        for name in ("labelling_workers", "retrieval_catalogs", "retrieval_threads", "retrieval_reorder",
                     "serving_clients"):
            int_list(getattr(self, name), name)
        if not all(scale > 0 for scale in self.scales) or 1.0 not in self.scales:
            raise ValueError(f"pipeline_scales must be > 0 and include 1, got {self.pipeline_scales!r}")
        if not all(weight > 0 for weight in self.hard_weights):
            raise ValueError("training_hard_weights must be > 0")
        from listening_logs import presets

        presets.overrides(self.model_preset)  # an unknown preset fails here, naming the valid ones
        fractions = float_list(self.retrieval_leaf_fractions, "retrieval_leaf_fractions")
        if not all(0 < f <= 1 for f in fractions):
            raise ValueError("retrieval_leaf_fractions must lie in (0, 1]")
        if self.labelling_cluster not in LABELLING_CLUSTERS:
            raise ValueError(f"labelling_cluster must be one of {LABELLING_CLUSTERS}")
        if self.retrieval_embeddings not in ("clustered", "random"):
            raise ValueError("retrieval_embeddings must be 'clustered' or 'random'")
        if min(int_list(self.retrieval_reorder, "retrieval_reorder")) < RECALL_K:
            raise ValueError(f"retrieval_reorder values must be >= k = {RECALL_K}")

    # Parsed views of the list-valued fields.
    @property
    def workers(self) -> list[int]:
        return int_list(self.labelling_workers, "labelling_workers")

    @property
    def hard_weights(self) -> list[float]:
        return float_list(self.training_hard_weights, "training_hard_weights")

    @property
    def catalogs(self) -> list[int]:
        return int_list(self.retrieval_catalogs, "retrieval_catalogs")

    @property
    def threads(self) -> list[int]:
        return int_list(self.retrieval_threads, "retrieval_threads")

    @property
    def leaf_fractions(self) -> list[float]:
        return float_list(self.retrieval_leaf_fractions, "retrieval_leaf_fractions")

    @property
    def reorder(self) -> list[int]:
        return int_list(self.retrieval_reorder, "retrieval_reorder")

    @property
    def scales(self) -> list[float]:
        """pipeline_scales, ascending and without repeats."""
        return sorted(set(float_list(self.pipeline_scales, "pipeline_scales")))

    @property
    def clients(self) -> list[int]:
        return int_list(self.serving_clients, "serving_clients")

    def log(self, prefix: str) -> dict[str, int]:
        """The simulator sizes of one log ('labelling', 'model' or 'pipeline')."""
        return {key: getattr(self, f"{prefix}_{key}") for key in ("users", "tracks", "events", "days")} | {
            "seed": self.seed}

    def settings(self, name: str) -> list[str]:
        """'a=1;b=2' -> ['a=1', 'b=2'] for model_settings, training_settings, pipeline_settings."""
        return [part.strip() for part in getattr(self, f"{name}_settings").split(";") if part.strip()]


FULL = Profile(
    name="full",
    labelling_events=1_000_000, labelling_users=20_000, labelling_tracks=50_000, labelling_days=7,
    model_events=200_000, model_users=4_000, model_tracks=10_000, model_days=7,
)
"""Issue 8's sizes. The trainings use a 200k-play log (not the 1M one): 3 seeds x 2 variants of up to 10 epochs.
The pipeline section's cost curve runs 100k, 1M and 3M plays (issue 14)."""

QUICK = Profile(
    name="quick",
    labelling_events=100_000, labelling_users=2_000, labelling_tracks=10_000, labelling_days=7,
    model_settings="epochs=4;patience=4",
    training_seeds=1, training_settings="epochs=4;patience=4",
    retrieval_catalogs="20000", retrieval_queries=300, retrieval_loop_s=0.5,
    retrieval_leaf_fractions="0.01,0.03,0.1,0.3", retrieval_reorder="10,100",
    roofline_copy_mb=256, roofline_matmul_n=1024,
    serving_loop_s=3.0, serving_swap_s=4.0,
    pipeline_events=40_000, pipeline_users=400, pipeline_tracks=3_000, pipeline_days=7,
    pipeline_settings="epochs=4;patience=4", pipeline_scales="1",
)
"""The model log and the pipeline log are the same (the demo's sizes), so one pipeline run serves three sections.
One size only: a second run (`--size pipeline_scales=1,2.5` adds 100k plays, ~3 min) would take the profile
past its 10 minutes (estimate.section_seconds)."""

TINY = Profile(
    name="tiny",
    labelling_events=3_000, labelling_users=60, labelling_tracks=400, labelling_days=3, labelling_shards=2,
    labelling_cluster="none",
    model_events=6_000, model_users=100, model_tracks=1_200, model_days=3,
    model_settings="epochs=1;patience=1;positive_policy=like+listen",
    training_seeds=1, training_settings="epochs=2;patience=2", training_hard_weights="100",
    retrieval_catalogs="3000", retrieval_queries=64, retrieval_loop_s=0.1,
    retrieval_leaf_fractions="0.05,0.3", retrieval_reorder="10,50",
    roofline_copy_mb=32, roofline_matmul_n=256,
    serving_clients="1,2,4,8", serving_loop_s=0.4, serving_swap_s=0.5,
    pipeline_events=6_000, pipeline_users=100, pipeline_tracks=1_200, pipeline_days=3,
    pipeline_settings="epochs=1;patience=1;positive_policy=like+listen", pipeline_scales="1",
)
"""Smoke-test sizes: every section runs for real, the numbers mean nothing."""

PROFILES: dict[str, Profile] = {profile.name: profile for profile in (FULL, QUICK, TINY)}


def with_overrides(profile: Profile, assignments: Iterable[str]) -> Profile:
    """Applies 'key=value' strings; unknown keys and wrong types fail with the valid keys."""
    hints = typing.get_type_hints(Profile)
    changes: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        key = key.strip()
        if not sep or key not in hints or key == "name":
            valid = ", ".join(f.name for f in dataclasses.fields(Profile) if f.name != "name")
            raise ValueError(f"--size expects KEY=VALUE with KEY one of: {valid}; got {assignment!r}")
        kind = hints[key]
        try:
            changes[key] = kind(value.strip())
        except ValueError:
            raise ValueError(f"--size {key}: expected {kind.__name__}, got {value!r}") from None
    return dataclasses.replace(profile, **changes)
