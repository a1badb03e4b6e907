"""Imports run one way: no cycle among the project's modules, and the settings load without TensorFlow.

The walk reads every import statement with `ast`, at module level and inside functions alike (a lazy import
that only dodges a cycle is still a cycle), so it needs none of the heavy dependencies installed.
"""
from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

from tests.conftest import heavy_modules_loaded_by

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("models", "components", "pipeline", "listening_logs", "schema", "serving", "experiments", "benchmarks",
            "harness", "reports", "envsetup")


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, pathlib.Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imported_names(path: pathlib.Path, module: str) -> set[str]:
    """Every dotted name an import statement in the file may load: `a.b` and, for `from a.b import c`, `a.b.c`."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports (the most specific one each statement names)."""
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for name in imported_names(path, module):
            if name in modules:
                targets.add(name)
        # `from models import trainer` names both `models` and `models.trainer`: keep the submodule only.
        targets = {name for name in targets if not any(other.startswith(name + ".") for other in targets)}
        targets.discard(module)
        graph[module] = targets
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """The groups of modules that import each other, directly or not (Tarjan's components of size > 1)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan; the graph is small enough for recursion
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def shortest_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest import cycle through the component's first module, as a path back to it."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:  # breadth-first, inside the component, until an edge leads back to start
        next_frontier = []
        for node in frontier:
            targets = sorted(graph[node] & component)
            if start in targets:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            for target in targets:
                if target not in previous:
                    previous[target] = node
                    next_frontier.append(target)
        frontier = next_frontier
    raise AssertionError(f"{sorted(component)} is not strongly connected")


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per group of modules that import each other."""
    return [shortest_cycle(graph, component) for component in strongly_connected(graph)]


def test_the_walk_sees_function_level_and_relative_imports(tmp_path):
    source = tmp_path / "pkg" / "mod.py"
    source.parent.mkdir()
    source.write_text("import os\nfrom . import sibling\n\ndef f():\n    from models import trainer\n")
    names = imported_names(source, "pkg.mod")
    assert {"pkg.sibling", "models.trainer", "os"} <= names


def test_find_cycles_names_the_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b", "c"}, "b": {"c"}, "c": {"a"}}) == [["a", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_project_modules():
    graph = import_graph()
    assert "models.trainer" in graph and "pipeline.configs" in graph
    problems = [f"{' -> '.join(shortest_cycle(graph, component))}   (modules in this knot: "
                f"{', '.join(sorted(component))})" for component in strongly_connected(graph)]
    assert not problems, "import cycles among project modules:\n" + "\n".join(problems)


def test_pipeline_configs_imports_without_tensorflow():
    loaded = heavy_modules_loaded_by("pipeline.configs")
    assert loaded == [], f"import pipeline.configs loaded {loaded}"


FAST_HELP_CLIS = ("pipeline.local_runner", "pipeline.kubeflow_runner", "pipeline.demo", "pipeline.schedule",
                  "pipeline.beam_cluster", "experiments.loss_ablation", "listening_logs.profile", "listening_logs.simulate")
"""Command lines whose `--help` (and argument errors) must answer before any TensorFlow is imported."""


@pytest.mark.parametrize("module", FAST_HELP_CLIS)
def test_help_prints_only_the_help_without_loading_tensorflow(module):
    probe = ("import runpy, sys\n"
             f"sys.argv = [{module!r}, '--help']\n"
             "try:\n"
             f"    runpy.run_module({module!r}, run_name='__main__')\n"
             "except SystemExit as exit:\n"
             "    assert exit.code in (0, None), exit.code\n"
             "print('LOADED:' + ','.join(name for name in ('tensorflow', 'tfx') if name in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: "), result.stdout[:200]
    assert result.stderr == "", f"{module} --help printed to stderr:\n{result.stderr[:2000]}"
    assert result.stdout.rstrip().endswith("LOADED:"), f"{module} --help imported {result.stdout.rsplit('LOADED:', 1)[-1]}"
