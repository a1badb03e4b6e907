"""Dataclass settings <-> TFX execution parameters, so a component's knobs are declared once (in the dataclass)."""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping, TypeVar

from tfx.types.component_spec import ExecutionParameter

Params = TypeVar("Params")


def execution_parameters(params_class: type) -> dict[str, ExecutionParameter]:
    """One typed execution parameter per field of `params_class`."""
    hints = typing.get_type_hints(params_class)
    return {field.name: ExecutionParameter(type=hints[field.name]) for field in dataclasses.fields(params_class)}


def from_exec_properties(params_class: type[Params], exec_properties: Mapping[str, Any]) -> Params:
    """Rebuilds (and so re-validates) the dataclass from an executor's exec_properties."""
    return params_class(**{field.name: exec_properties[field.name] for field in dataclasses.fields(params_class)})
