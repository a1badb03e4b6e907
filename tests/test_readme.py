"""The README is the front door: short, and every link and `python -m` command in it (and in docs/) leads somewhere.

It once grew into a 600-line manual whose numbers went stale; the depth now lives in docs/ and the measured
numbers in benchmarks/RESULTS.md, and these checks keep the front door short and its signposts honest.
"""
from __future__ import annotations

import pathlib
import re

import pytest

from tests.conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
MAX_README_LINES = 300
"""Issue 16: a newcomer reads the README in one sitting."""
DOCUMENTS = sorted([README, *(REPO_ROOT / "docs").glob("*.md"), REPO_ROOT / "benchmarks" / "README.md",
                    REPO_ROOT / "benchmarks" / "RESULTS.md"])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
MODULE = re.compile(r"python -m ([a-z_][a-z0-9_.]*)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(document: pathlib.Path) -> set[str]:
    text = FENCE.sub("", document.read_text(encoding="utf-8"))
    return {anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def relative_links(document: pathlib.Path) -> list[str]:
    text = FENCE.sub("", document.read_text(encoding="utf-8"))
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def test_the_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_README_LINES}); move the detail into docs/")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.relative_to(REPO_ROOT).as_posix())
def test_relative_links_resolve(document: pathlib.Path) -> None:
    broken = []
    for target in relative_links(document):
        path_part, _, fragment = target.partition("#")
        resolved = (document.parent / path_part).resolve() if path_part else document
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            broken.append(f"{target}: no heading with anchor #{fragment}")
    assert not broken, f"{document.relative_to(REPO_ROOT)} has broken links:\n" + "\n".join(broken)


def test_the_link_check_sees_links() -> None:
    """Guards the check above against passing by finding nothing."""
    targets = relative_links(README)
    assert "docs/pipeline.md" in targets and any("#" in target for target in targets)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.relative_to(REPO_ROOT).as_posix())
def test_every_python_m_command_names_a_module_of_the_project(document: pathlib.Path) -> None:
    missing = []
    for module in set(MODULE.findall(document.read_text(encoding="utf-8"))):
        parts = module.split(".")
        if parts[0] in {"pip", "pytest", "venv", "ruff"}:
            continue
        base = REPO_ROOT.joinpath(*parts)
        if not (base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()):
            missing.append(module)
    assert not missing, f"{document.relative_to(REPO_ROOT)} runs modules that do not exist: {sorted(missing)}"
