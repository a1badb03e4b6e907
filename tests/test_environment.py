"""The environment is the lock, and the project's start-up hook holds in every fresh process."""
from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys

from tests.conftest import REPO_ROOT

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s#]+)$")


def lock_lines() -> list[str]:
    return [line.strip() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()]


def pins() -> dict[str, str]:
    found = {}
    for line in lock_lines():
        if line and not line.startswith("#"):
            match = PIN.match(line)
            assert match, f"requirements.txt line is not name==version: {line!r}"
            found[match.group(1)] = match.group(2)
    return found


def fresh_python(code: str, **env_changes: str | None) -> subprocess.CompletedProcess:
    """Runs code in a new interpreter of this environment, as a Beam worker process would start."""
    env = dict(os.environ)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/", timeout=300)


def test_lock_starts_with_why_it_is_installed_without_resolver():
    assert lock_lines()[0].startswith("#") and "--no-deps" in lock_lines()[0]


VERIFIED_CORE = {
    "tensorflow": "2.20.0",
    "tf-keras": "2.20.1",
    "tfx": "1.21.0",
    "ml-pipelines-sdk": "1.21.0",
    "ml-metadata": "1.17.1",
    "tensorflow-data-validation": "1.16.1",
    "tfx-bsl": "1.21.0",
    "tensorflow-transform": "1.21.0",
    "tensorflow-model-analysis": "0.52.0",
    "tensorflow-serving-api": "2.19.1",
    "tensorflow-recommenders": "0.7.7",
    "scann": "1.4.2",
    "apache-beam": "2.77.0",
    "kfp": "2.16.0",
    "protobuf": "6.33.6",
}
"""The core versions verified to work together (docs/design.md §8). Bumping one needs the whole stack
re-verified (pip's resolver cannot check it), so a change here must be deliberate, with the doc updated."""


def normalized(name: str) -> str:
    """PEP 503 name: the lock spells some packages with `_` (tf_keras), pip and the docs with `-`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def test_lock_pins_the_verified_core_stack():
    lock = {normalized(name): version for name, version in pins().items()}
    for name, version in VERIFIED_CORE.items():
        assert lock.get(name) == version, f"{name} in requirements.txt is not the verified {version} (docs/design.md §8)"


def test_installed_packages_are_exactly_the_lock():
    for name, version in pins().items():
        assert importlib.metadata.version(name) == version, f"{name} installed is not the locked {version}"


def test_legacy_keras_is_forced_before_tensorflow_loads():
    result = fresh_python(
        "import os, tensorflow as tf; print(os.environ['TF_USE_LEGACY_KERAS'], tf.keras.Model.__module__)",
        TF_USE_LEGACY_KERAS="0",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    flag, model_module = result.stdout.split()
    assert flag == "1" and model_module.startswith("tf_keras."), result.stdout


def test_tfdv_imports_in_a_fresh_process_without_tfx():
    """A Beam worker imports TFDV without `import tfx` first; the stand-in must make that work."""
    result = fresh_python(
        "import tensorflow_data_validation as tfdv\n"
        "from tfx_bsl.arrow import sql_util\n"
        "try:\n"
        "    sql_util.RecordBatchSQLSliceQuery('q', None)\n"
        "except NotImplementedError as error:\n"
        "    print('refused:', error)\n",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "refused: SQL-based slicing" in result.stdout
