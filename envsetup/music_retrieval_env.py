"""Runs at every interpreter start of the project's environment (loaded by music_retrieval_env.pth).

Two facts of this lock (docs/design.md §8) that must hold in every process, including Beam worker processes that
never import project code before TensorFlow:
1. TensorFlow Recommenders needs Keras 2, so TF_USE_LEGACY_KERAS=1 before TensorFlow is imported.
2. TFDV 1.16 imports `tfx_bsl.arrow.sql_util`, which tfx-bsl 1.21 removed. `import tfx` patches that in the
   driver only, so StatisticsGen fails in worker processes. A finder placed last on `sys.meta_path`
   provides a stand-in only when no real module exists; its one class fails loudly if SQL slicing is used.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import types

os.environ["TF_USE_LEGACY_KERAS"] = "1"

SQL_UTIL_MODULE = "tfx_bsl.arrow.sql_util"


class RecordBatchSQLSliceQuery:
    """Stand-in for tfx-bsl's removed SQL slicer: constructing it is an error, never a silent no-op."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError(
            "SQL-based slicing (tfx_bsl.arrow.sql_util) is not available with tfx-bsl 1.21; "
            "remove slice_sqls from the TFDV/TFMA configuration."
        )


class _SqlUtilStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: object, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != SQL_UTIL_MODULE:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        module.RecordBatchSQLSliceQuery = RecordBatchSQLSliceQuery
        module.IS_PROJECT_STAND_IN = True


if not any(isinstance(finder, _SqlUtilStandIn) for finder in sys.meta_path):
    sys.meta_path.append(_SqlUtilStandIn())
