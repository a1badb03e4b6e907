"""The serving exports' settings (models/serving_export.py builds them): plain dataclasses, no TensorFlow, so
pipeline/configs.py and the components' specs can name them without loading it."""
from __future__ import annotations

import dataclasses
import math

SCANN, BRUTE_FORCE = "scann", "brute_force"
INDEX_KINDS: tuple[str, ...] = (SCANN, BRUTE_FORCE)
"""The two exports: ScaNN's approximate top-k, and exact top-k with stock TensorFlow ops only."""


@dataclasses.dataclass(frozen=True)
class ScannParams:
    """ScaNN's tree + asymmetric hashing index. 0 leaves means about sqrt(catalog size); 0 leaves to search
    means automatic: the evaluator tunes it against the recall floor, and half the leaves without it."""

    scann_num_leaves: int
    scann_num_leaves_to_search: int
    scann_training_iterations: int
    scann_dimensions_per_block: int
    scann_num_reordering_candidates: int
    scann_min_catalog: int
    """Below this many tracks the 'scann' export holds an exact index: ScaNN's hashing cannot even train on
    a tiny catalog, and exact top-k over it costs less than a tree search."""

    def __post_init__(self) -> None:
        for name in ("scann_training_iterations", "scann_dimensions_per_block"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("scann_num_leaves", "scann_num_leaves_to_search", "scann_num_reordering_candidates",
                     "scann_min_catalog"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def uses_scann(self, num_candidates: int) -> bool:
        return num_candidates >= self.scann_min_catalog

    def leaves(self, num_candidates: int) -> tuple[int, int]:
        """(num_leaves, num_leaves_to_search) fitted to the catalog: never more leaves than candidates."""
        leaves = self.scann_num_leaves or max(1, int(round(math.sqrt(num_candidates))))
        leaves = min(leaves, num_candidates)
        to_search = self.scann_num_leaves_to_search or max(1, (leaves + 1) // 2)
        return leaves, min(to_search, leaves)


@dataclasses.dataclass(frozen=True)
class ServingParams:
    top_k: int
    """K: recommendations per request."""
    max_exclusions: int
    """E: the fixed width of `exclude_track_ids` (TF Serving inputs have no optional parts)."""

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.max_exclusions < 0:
            raise ValueError("top_k must be >= 1 and max_exclusions >= 0")
