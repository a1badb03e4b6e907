"""Named simulator settings: each preset is a dict of `SimulationConfig` field overrides, all in this one place.

Why presets: the same modelling choice can win on one kind of log and lose on another. `default` is the
simulator as it always was (same seed, same bytes), so earlier numbers stay reproducible; `realistic` makes
rejection depend on popularity the way real logs with explicit dislikes do (listeners reject unfamiliar tail
tracks far more often than hits), so the most-popular baseline ranks likes above rejections most of the time.
See docs/data-profiles.md for both presets' profiles next to the Piki and MSSD samples.

Explicit CLI flags override a preset's values (`--preset realistic --exploration-share 0.1`).
"""
from __future__ import annotations

from typing import Any

DEFAULT = "default"
REALISTIC = "realistic"

PRESETS: dict[str, dict[str, Any]] = {
    DEFAULT: {},
    REALISTIC: {
        # Stations reach into the unpopular tail: tracks the listener is unlikely to know...
        "tail_exploration_share": 0.2,
        # ...and an unfamiliar track is rejected far more often, a hit liked more often.
        "dislike_tail_weight": 6.0,
        "skip_tail_weight": 6.0,
        "like_tail_weight": 5.0,
        # Popularity-drawn exploration would put rejected hits among the negatives; the tail share replaces it.
        "exploration_share": 0.0,
        # Skips for reasons unrelated to taste or familiarity carry no popularity signal: fewer of them.
        "context_skip_rate": 0.02,
    },
}
"""Field overrides per preset name; `default` overrides nothing."""

DESCRIPTIONS: dict[str, str] = {
    DEFAULT: "the simulator's original behaviour (byte-identical logs for a seed)",
    REALISTIC: "rejection depends on popularity: tail exploration that is mostly rejected, and a popularity "
               "term in the thumbs-down, skip and thumbs-up logits",
}


def overrides(name: str) -> dict[str, Any]:
    """The field overrides of a named preset (a copy); a clear error naming the valid presets otherwise."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return dict(PRESETS[name])


def describe(name: str) -> str:
    """One line for --help: what the preset is for and every value it sets."""
    values = ", ".join(f"{field}={value}" for field, value in PRESETS[name].items()) or "no overrides"
    return f"{name}: {DESCRIPTIONS[name]} ({values})"
