"""The one owner of the span folder name: a log folder holds one `span-N/` folder per day (N = 1, 2, ...).

Writers (simulate, convert), readers (ExampleGen's pattern, the span window, profile, the experiments) and the
tests all build and parse that name here, so it cannot drift between them. Plain Python: no TensorFlow, no
pandas, so `pipeline.configs` and the CLIs' `--help` stay light.
"""
from __future__ import annotations

import pathlib
import re
from typing import Optional, Union

PREFIX = "span-"
GLOB = f"{PREFIX}*"
"""Matches every span folder (and, being a glob, anything else named span-...; `number_of` tells them apart)."""
_NAME = re.compile(rf"^{re.escape(PREFIX)}(\d+)$")


def folder_name(span: Union[int, str]) -> str:
    """'span-3' for span 3; a placeholder such as TFX's '{SPAN}' gives the ExampleGen pattern 'span-{SPAN}'."""
    if isinstance(span, bool) or (isinstance(span, int) and span < 0):
        raise ValueError(f"a span number is an integer >= 0, got {span!r}")
    return f"{PREFIX}{span}"


def folder(root: pathlib.Path, span: int) -> pathlib.Path:
    """`root/span-N`."""
    return pathlib.Path(root) / folder_name(span)


def number_of(name: str) -> Optional[int]:
    """3 for 'span-3'; None for any other name ('span-x', 'span-', 'catalog')."""
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def is_span_folder_name(name: str) -> bool:
    return number_of(name) is not None


def folders(root: pathlib.Path) -> dict[int, pathlib.Path]:
    """The span folders directly under `root` by span number, ascending (empty when there are none)."""
    found = {}
    for path in pathlib.Path(root).iterdir():
        number = number_of(path.name)
        if number is not None and path.is_dir():
            found[number] = path
    return dict(sorted(found.items()))


def numbers(root: pathlib.Path) -> list[int]:
    """The span numbers of the `span-N` folders under `root`, ascending."""
    return list(folders(root))
