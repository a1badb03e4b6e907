"""A clone alone must be complete: no tracked file may lean on a folder beside the checkout or on a document
that is not in the repository.

Tests, docs and comments once pointed at the shared folder beside the checkout (data, the environment freeze) and at
"DESIGN §N" of a design document kept outside the repository; a fresh clone had dangling references and failing tests. The
fixtures now live in tests/fixtures/ and the design in docs/design.md, and these checks keep it that way.
"""
from __future__ import annotations

import pathlib
import subprocess


from tests.conftest import REPO_ROOT

THIS_FILE = pathlib.Path(__file__).resolve().relative_to(REPO_ROOT).as_posix()
SHARED = "shared"
OUTSIDE_FOLDER_TEXTS = (f"../{SHARED}", f"{SHARED}/data", f"/work/{SHARED}")
"""Built from parts, so that this file does not itself name the folder it forbids."""
"""Ways of naming the folder beside the checkout (or its data) that a clone does not have."""
OUTSIDE_DESIGN_TEXT = "DESIGN §"
"""References into the old, outside design document; docs/design.md keeps its section numbers."""


def tracked_files() -> list[str]:
    """Paths git tracks (working-tree content), except this file, which has to spell the texts it bans."""
    done = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"this check needs a git checkout; `git ls-files` failed: {done.stderr.strip()}"
    paths = [path for path in done.stdout.split("\0") if path and path != THIS_FILE]
    assert paths, "git ls-files listed no files"
    return paths


def files_containing(texts: tuple[str, ...]) -> dict[str, list[str]]:
    """{path: [line number: text, ...]} for every tracked file with a line containing any of `texts`."""
    found: dict[str, list[str]] = {}
    for path in tracked_files():
        file = REPO_ROOT / path
        if not file.is_file():  # deleted in the working tree but not yet staged
            continue
        lines = file.read_bytes().decode("utf-8", errors="replace").splitlines()
        hits = [f"{number}: {line.strip()}" for number, line in enumerate(lines, 1) if any(t in line for t in texts)]
        if hits:
            found[path] = hits
    return found


def describe(found: dict[str, list[str]]) -> str:
    return "\n".join(f"{path}:{hit}" for path, hits in sorted(found.items()) for hit in hits)


def test_no_tracked_file_names_the_folder_beside_the_checkout() -> None:
    found = files_containing(OUTSIDE_FOLDER_TEXTS)
    assert not found, (
        "these lines depend on a folder a clone does not have; copy what they need into the repository "
        f"(fixtures under tests/fixtures/, with provenance):\n{describe(found)}"
    )


def test_no_tracked_file_cites_the_outside_design_document() -> None:
    found = files_containing((OUTSIDE_DESIGN_TEXT,))
    assert not found, f"cite docs/design.md §N instead (same section numbers):\n{describe(found)}"


def test_the_checks_see_the_repository() -> None:
    """Guards the two checks above against passing by scanning nothing."""
    paths = tracked_files()
    assert "tests/conftest.py" in paths and "requirements.txt" in paths
    assert THIS_FILE not in paths
