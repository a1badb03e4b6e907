"""Adapters from public listening logs to the contract (`schema.contract`).

Each adapter knows one source format: its delimiter, the source columns it needs and how one source row
becomes a contract row. `listening_logs.convert` runs them; `reading` holds what they share.
"""
from __future__ import annotations

import pathlib
from typing import Optional

from listening_logs.adapters import mapped, mssd, piki, reading

FORMATS: tuple[str, ...] = (mssd.NAME, piki.NAME, mapped.NAME)


def make_adapter(fmt: str, mapping_path: Optional[pathlib.Path]) -> reading.Adapter:
    """The adapter for a format; only `mapped` takes (and needs) a mapping file."""
    if fmt == mapped.NAME:
        if mapping_path is None:
            raise reading.InputError("--format mapped needs --mapping FILE.yaml naming the source columns")
        return mapped.MappedAdapter(mapped.load_mapping(mapping_path))
    if mapping_path is not None:
        raise reading.InputError(f"--mapping only applies to --format {mapped.NAME}; drop it for --format {fmt}")
    if fmt == mssd.NAME:
        return mssd.MssdAdapter()
    if fmt == piki.NAME:
        return piki.PikiAdapter()
    raise reading.InputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
