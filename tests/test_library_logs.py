"""Where a CLI's library log lines go: TensorFlow/TFX/Beam/absl output to a file, the CLI's own lines to the terminal."""
from __future__ import annotations

import pathlib
import subprocess
import sys

from tests.conftest import REPO_ROOT

SCRIPT = r"""
import logging, os, subprocess, sys, warnings, pathlib
from pipeline.library_logs import library_output
logging.warning("before the block")
with library_output(pathlib.Path(sys.argv[1]), verbose=sys.argv[2] == "verbose") as terminal:
    os.write(2, b"a C++ notice on fd 2\n")
    logging.getLogger("absl").warning("an absl line")
    warnings.warn("a Python warning")
    subprocess.run([sys.executable, "-c", "import os; os.write(2, b'a child process line\\n')"], check=True)
    print("our own error", file=terminal)
    print("our own progress")
logging.warning("after the block")
"""
LIBRARY_LINES = ("a C++ notice on fd 2", "WARNING:absl:an absl line", "a Python warning", "a child process line")


def run(tmp_path: pathlib.Path, mode: str) -> tuple[subprocess.CompletedProcess, pathlib.Path]:
    log = tmp_path / "out" / "library.log"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(log), mode], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done, log


def test_library_lines_go_to_the_file_and_ours_to_the_terminal(tmp_path):
    done, log = run(tmp_path, "quiet")
    written = log.read_text()
    for line in LIBRARY_LINES:
        assert line in written and line not in done.stderr, line
    assert "our own error" in done.stderr and "our own error" not in written
    assert "our own progress" in done.stdout
    assert "before the block" in done.stderr and "after the block" in done.stderr  # fd 2 is given back


def test_verbose_leaves_everything_on_the_terminal(tmp_path):
    done, log = run(tmp_path, "verbose")
    assert not log.exists()
    for line in (*LIBRARY_LINES, "our own error"):
        assert line in done.stderr, line
