"""Where the evaluation's slices are cut (models/evaluation.py applies them): a plain dataclass, no TensorFlow,
so the evaluator's settings (components/retrieval_evaluator/blessing.py) and pipeline/configs.py load light."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class SliceRules:
    """Where the slices of docs/design.md §6 are cut; defaults live in pipeline/configs.py."""

    cold_max_train_examples: int
    """Listeners with at most this many training examples are 'cold'."""
    heavy_min_train_examples: int
    """Listeners with at least this many training examples are 'heavy'; between the two, 'warm'."""
    skip_heavy_min_share: float
    """Listeners whose test histories are at least this share skips are 'skip-heavy'."""
    head_play_share: float
    """'Head' tracks: the most played tracks that together hold this share of all plays; the rest are 'tail'."""

    def __post_init__(self) -> None:
        if not 0 <= self.cold_max_train_examples < self.heavy_min_train_examples:
            raise ValueError("need 0 <= cold_max_train_examples < heavy_min_train_examples")
        for name in ("skip_heavy_min_share", "head_play_share"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within (0, 1], got {getattr(self, name)}")
