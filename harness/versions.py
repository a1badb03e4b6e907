"""The versions a result was measured with, read from the installed distributions (no heavy import)."""
from __future__ import annotations

import platform
from importlib import metadata
from typing import Iterable

NOT_INSTALLED = "not installed"


def versions(packages: Iterable[str]) -> dict[str, str]:
    """{'python': '3.11.9', '<distribution>': '<version>' or 'not installed', ...}."""
    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = NOT_INSTALLED
    return found
