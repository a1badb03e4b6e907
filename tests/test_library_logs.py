"""Where a CLI's library output goes: TensorFlow/TFX/Beam/Keras/absl output to a file, the CLI's own lines to the
terminal."""
from __future__ import annotations

import pathlib
import subprocess
import sys

from tests.conftest import REPO_ROOT

SCRIPT = r"""
import logging, os, subprocess, sys, warnings, pathlib
from pipeline.library_logs import library_output
logging.warning("before the block")
print("our progress before")
with library_output(pathlib.Path(sys.argv[1]), verbose=sys.argv[2] == "verbose"):
    os.write(2, b"a C++ notice on fd 2\n")
    os.write(1, b"a C++ line on fd 1\n")
    logging.getLogger("absl").warning("an absl line")
    warnings.warn("a Python warning")
    print("Epoch 1/10 - a Keras line")
    subprocess.run([sys.executable, "-c", "import os; os.write(2, b'a child process line\\n')"], check=True)
print("our progress after")
logging.warning("after the block")
"""
LIBRARY_LINES = ("a C++ notice on fd 2", "a C++ line on fd 1", "WARNING:absl:an absl line", "a Python warning",
                 "Epoch 1/10 - a Keras line", "a child process line")


def run(tmp_path: pathlib.Path, mode: str) -> tuple[subprocess.CompletedProcess, pathlib.Path]:
    log = tmp_path / "out" / "library.log"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(log), mode], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done, log


def test_library_output_goes_to_the_file_and_ours_to_the_terminal(tmp_path):
    done, log = run(tmp_path, "quiet")
    written = log.read_text()
    for line in LIBRARY_LINES:
        assert line in written and line not in done.stdout + done.stderr, line
    assert done.stdout.splitlines() == ["our progress before", "our progress after"]  # descriptors given back
    assert "before the block" in done.stderr and "after the block" in done.stderr
    assert "our progress" not in written and "the block" not in written


def test_verbose_leaves_everything_on_the_terminal(tmp_path):
    done, log = run(tmp_path, "verbose")
    assert not log.exists()
    for line in LIBRARY_LINES:
        assert line in done.stdout + done.stderr, line
