"""The Dockerfile cannot be built here (no docker), so its promises are checked by reading it against the repo."""
from __future__ import annotations

import ast
import fnmatch
import json
import pathlib
import re
import shlex
from typing import NamedTuple

import pytest

from pipeline.configs import IMAGE_PROJECT_DIR

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
RUNTIME_ROOTS = ("pipeline", "components", "models")
"""Where run-time code starts; everything they import from the repo must be in the image."""


class Instruction(NamedTuple):
    keyword: str
    args: str


def instructions(path: pathlib.Path = DOCKERFILE) -> list[Instruction]:
    """Dockerfile instructions with line continuations joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a line continuation"
    return [Instruction(*(text.strip().split(None, 1) + [""])[:2]) for text in logical]


def by_keyword(keyword: str) -> list[str]:
    return [i.args for i in instructions() if i.keyword.upper() == keyword]


def copies() -> list[tuple[list[str], list[str], str]]:
    """(flags, sources, destination) of every COPY."""
    result = []
    for args in by_keyword("COPY"):
        words = shlex.split(args)
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        result.append((flags, paths[:-1], paths[-1]))
    return result


def env() -> dict[str, str]:
    values: dict[str, str] = {}
    for args in by_keyword("ENV"):
        for word in shlex.split(args):
            key, _, value = word.partition("=")
            values[key] = value
    return values


def pinned(package: str) -> str:
    match = re.search(rf"^{re.escape(package)}==(\S+)$", (REPO_ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert match, f"{package} is not pinned in requirements.txt"
    return match.group(1)


def local_copies() -> list[str]:
    return [src.rstrip("/") for flags, sources, _ in copies() if not any(f.startswith("--from") for f in flags)
            for src in sources]


def ignore_patterns() -> list[str]:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    return [line.strip("/") for line in lines if line and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule for the patterns used here: a match on the path or any parent excludes it."""
    parts = pathlib.PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        for candidate in candidates:
            if fnmatch.fnmatchcase(candidate, pattern):
                return True
            if pattern.startswith("**/") and fnmatch.fnmatchcase(pathlib.PurePosixPath(candidate).name, pattern[3:]):
                return True
    return False


def imported_repo_packages(roots: tuple[str, ...]) -> set[str]:
    """Top-level repo packages imported by modules under `roots`, followed transitively."""
    repo_dirs = {p.name for p in REPO_ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")}
    found, todo = set(), list(roots)
    while todo:
        package = todo.pop()
        if package in found:
            continue
        found.add(package)
        for module in (REPO_ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(module.read_text(), str(module))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                todo += [n.split(".")[0] for n in names if n.split(".")[0] in repo_dirs]
    return found


def run_commands() -> list[str]:
    return [cmd.strip() for args in by_keyword("RUN") for cmd in args.split("&&")]


def test_base_image_is_debian_12_python_3_11() -> None:
    assert by_keyword("FROM") == ["python:3.11-slim-bookworm"]


def test_beam_boot_comes_from_the_sdk_image_of_the_pinned_beam() -> None:
    from_copies = [(flags, sources, dest) for flags, sources, dest in copies()
                   if any(f.startswith("--from") for f in flags)]
    beam_sdk = f"--from=apache/beam_python3.11_sdk:{pinned('apache-beam')}"
    assert from_copies == [([beam_sdk], ["/opt/apache/beam"], "/opt/apache/beam")]
    assert [json.loads(args) for args in by_keyword("ENTRYPOINT")] == [["/opt/apache/beam/boot"]]


def test_every_local_copy_source_exists_and_is_in_the_build_context() -> None:
    patterns = ignore_patterns()
    for source in local_copies():
        assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repo"
        assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"


def test_requirements_installed_like_the_makefile() -> None:
    commands = run_commands()
    pip = [c for c in commands if c.startswith("pip install")]
    assert len(pip) == 1
    words = pip[0].split()
    assert "--no-deps" in words and "--no-cache-dir" in words
    assert words[words.index("-r") + 1] == "requirements.txt"
    assert re.search(r"uv pip install .*--no-deps .*-r requirements\.txt", (REPO_ROOT / "Makefile").read_text())
    assert "requirements.txt" in local_copies()
    hook = commands.index("python envsetup/install_hook.py")
    assert commands.index(pip[0]) < hook
    assert "envsetup" in local_copies() and (REPO_ROOT / "envsetup" / "install_hook.py").is_file()


def test_the_image_runs_the_makefiles_import_check_after_the_hook() -> None:
    """Same check as `make setup`, before ENV TF_USE_LEGACY_KERAS, so it proves the hook sets the variable."""
    makefile_check = re.search(r'\$\(PY\) -c "([^"]+)"', (REPO_ROOT / "Makefile").read_text())
    assert makefile_check
    commands = run_commands()
    check = f'python -c "{makefile_check.group(1)}"'
    assert check in commands
    assert commands.index("python envsetup/install_hook.py") < commands.index(check)
    keys = [i for i, ins in enumerate(instructions()) if ins.keyword == "ENV" and "TF_USE_LEGACY_KERAS" in ins.args]
    last_run = max(i for i, ins in enumerate(instructions()) if ins.keyword == "RUN")
    assert keys and min(keys) > last_run


def test_workdir_and_pythonpath_are_the_image_project_dir() -> None:
    assert by_keyword("WORKDIR") == [IMAGE_PROJECT_DIR]
    values = env()
    assert values["PYTHONPATH"] == IMAGE_PROJECT_DIR
    assert values["TF_USE_LEGACY_KERAS"] == "1" and values["PYTHONUNBUFFERED"] == "1"


def test_every_repo_package_the_runtime_code_imports_is_copied() -> None:
    needed = imported_repo_packages(RUNTIME_ROOTS)
    assert {"pipeline", "components", "models", "schema"} <= needed  # the walk itself works
    copied = {pathlib.PurePosixPath(s).parts[0] for s in local_copies()}
    assert needed <= copied, f"not copied into the image: {sorted(needed - copied)}"
    assert "tests" not in copied
    for _flags, sources, dest in copies():
        for source in sources:
            if source.rstrip("/") in needed:
                assert dest.rstrip("/") == source.rstrip("/"), f"COPY {source} must land at {IMAGE_PROJECT_DIR}/{source}"


def test_dependencies_layer_comes_before_code_layers() -> None:
    order = instructions()
    pip = next(i for i, ins in enumerate(order) if ins.keyword == "RUN" and "pip install" in ins.args)
    code = [i for i, ins in enumerate(order) if ins.keyword == "COPY" and ins.args.split()[0].rstrip("/") in RUNTIME_ROOTS]
    assert code and pip < min(code)


@pytest.mark.parametrize("path", [".venv", ".git", "demo-output", "models/__pycache__", "pipeline/configs.pyc"])
def test_dockerignore_keeps_environment_history_and_caches_out(path: str) -> None:
    assert ignored(path, ignore_patterns())
