"""Number helpers of the reports: a ratio and a mean that say None rather than mislead, and strict
comma-separated lists for settings and command-line options."""
from __future__ import annotations

import argparse
import math
from typing import Callable, Optional, Sequence, TypeVar

T = TypeVar("T")


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    """numerator / denominator; None when either is missing or not finite, or the denominator is 0."""
    if numerator is None or denominator is None:
        return None
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator == 0:
        return None
    return numerator / denominator


def mean(values: Sequence[Optional[float]]) -> Optional[float]:
    """Mean of the values; None when there are none or any is missing or not finite (a partial mean would
    mislead: a seed that never reached a target is not a fast seed)."""
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return None
    return sum(values) / len(values)  # type: ignore[arg-type]


def int_list(text: str, name: str) -> list[int]:
    """'1,16,256' -> [1, 16, 256]; each >= 1. ValueError naming `name` otherwise."""
    try:
        values = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{name} must be comma-separated integers >= 1, got {text!r}")
    return values


def float_list(text: str, name: str, low: Optional[float] = None, high: Optional[float] = None) -> list[float]:
    """'0,0.5' -> [0.0, 0.5]; at least one, each within [low, high] where given. ValueError naming `name`."""
    try:
        values = [float(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise ValueError(f"{name} is empty")
    outside = [v for v in values if (low is not None and v < low) or (high is not None and v > high)
               or not math.isfinite(v)]
    if outside:
        bounds = " and ".join(part for part in (f">= {low:g}" if low is not None else "",
                                                f"<= {high:g}" if high is not None else "") if part)
        raise ValueError(f"{name} must be comma-separated finite numbers{' ' + bounds if bounds else ''}, got {text!r}")
    return values


def cli_type(parse: Callable[[str, str], T], option: str) -> Callable[[str], T]:
    """An argparse `type=` from a parser above (`cli_type(int_list, "--sweep")`): its ValueError, which names the
    option, becomes argparse's usage error with that message (argparse would otherwise print a generic one)."""
    def convert(text: str) -> T:
        try:
            return parse(text, option)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = option
    return convert
