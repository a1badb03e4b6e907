"""The harness experiments/ and benchmarks/ share: one copy of each helper, light to import, behaving as the
reports rely on (None rather than a misleading number, strict lists, progress that survives log redirects)."""
from __future__ import annotations

import argparse
import functools
import io
import math
import os
import re
import sys

import pytest

from harness import estimates
from harness.numbers import cli_type, float_list, int_list, mean, ratio
from harness.progress import Progress
from harness.versions import NOT_INSTALLED, versions
from pipeline.library_logs import output_to
from tests.conftest import heavy_modules_loaded_by
from tests.test_imports import import_graph


@pytest.mark.parametrize("numerator, denominator, expected", [
    (1.0, 4.0, 0.25), (0.0, 2.0, 0.0), (1.0, 0.0, None), (None, 1.0, None), (1.0, None, None),
    (math.nan, 1.0, None), (1.0, math.inf, None)])
def test_ratio_is_none_rather_than_a_misleading_number(numerator, denominator, expected):
    assert ratio(numerator, denominator) == expected


def test_mean_refuses_a_partial_mean():
    assert mean([1.0, 2.0, 6.0]) == 3.0
    assert mean([1.0, None]) is None, "a seed that never reached the target is not averaged away"
    assert mean([1.0, math.nan]) is None
    assert mean([]) is None


def test_lists_parse_strictly_and_name_the_setting():
    assert int_list("1, 16,256", "--sweep") == [1, 16, 256]
    assert float_list("0,0.5", "--keep-fractions", low=0.0, high=1.0) == [0.0, 0.5]
    with pytest.raises(ValueError, match="--sweep must be comma-separated integers >= 1"):
        int_list("4,0", "--sweep")
    with pytest.raises(ValueError, match="--sweep must be comma-separated integers, got 'a'"):
        int_list("a", "--sweep")
    with pytest.raises(ValueError, match="labelling_workers must be comma-separated integers >= 1"):
        int_list(" , ", "labelling_workers")
    with pytest.raises(ValueError, match=r"--keep-fractions must be .*>= 0 and <= 1"):
        float_list("0.5,1.5", "--keep-fractions", low=0.0, high=1.0)
    with pytest.raises(ValueError, match="finite"):
        float_list("nan", "training_hard_weights")
    with pytest.raises(ValueError, match="is empty"):
        float_list("", "retrieval_leaf_fractions")


def test_cli_type_gives_argparse_the_message(capsys):
    parser = argparse.ArgumentParser(prog="x")
    parser.add_argument("--sweep", type=cli_type(int_list, "--sweep"))
    parser.add_argument("--keep", type=cli_type(functools.partial(float_list, low=0.0, high=1.0), "--keep"))
    assert parser.parse_args(["--sweep", "1,4", "--keep", "0.5"]) == argparse.Namespace(sweep=[1, 4], keep=[0.5])
    with pytest.raises(SystemExit):
        parser.parse_args(["--sweep", "1,x"])
    assert "argument --sweep: --sweep must be comma-separated integers, got '1,x'" in capsys.readouterr().err


def test_progress_lines_carry_the_label_and_the_seconds():
    out = io.StringIO()
    say = Progress("bench", stream=out)
    say("one")
    with say.step("two"):
        pass
    with pytest.raises(RuntimeError), say.step("three"):
        raise RuntimeError("boom")
    unlabelled = io.StringIO()
    Progress(stream=unlabelled).say("four")
    lines = out.getvalue().splitlines()
    assert [re.sub(r"\[bench +\d+\.\ds\] ", "[bench Ns] ", line) for line in lines] == [
        "[bench Ns] one", "[bench Ns] start two", "[bench Ns] done  two (0.0 s)",
        "[bench Ns] start three", "[bench Ns] FAILED three after 0.0 s"]
    assert re.fullmatch(r"\[ +\d+\.\ds\] four\n", unlabelled.getvalue())


def test_progress_stays_on_the_console_while_output_goes_to_a_log(tmp_path):
    """In-process trainings point fds 1 and 2 at a log; the command's progress must still reach the console."""
    console_path, log_path = tmp_path / "console.txt", tmp_path / "logs" / "step.log"
    with open(console_path, "w") as console:
        say = Progress("exp", stream=console)
        with output_to(log_path):
            os.write(1, b"chatter on fd 1\n")
            os.write(2, b"chatter on fd 2\n")
            say("still on the console")
        os.write(console.fileno(), b"")  # the console's own fd is untouched
    assert log_path.read_text() == "chatter on fd 1\nchatter on fd 2\n"
    assert "still on the console" in console_path.read_text()
    assert "still on the console" not in log_path.read_text()


def test_versions_read_installed_distributions():
    found = versions(["numpy", "surely-not-an-installed-distribution"])
    assert found["python"] == ".".join(map(str, sys.version_info[:3]))
    assert re.match(r"\d+\.\d+", found["numpy"])
    assert found["surely-not-an-installed-distribution"] == NOT_INSTALLED


def test_estimates_grow_with_size_and_a_cached_run_is_cheaper():
    small, large = estimates.training_seconds(1_000, 4), estimates.training_seconds(10_000, 4)
    assert estimates.TRAINING_FIXED_S < small < large
    assert estimates.training_seconds(1_000, 4, random_negatives=1024) > small
    trainer = estimates.training_seconds(5_000, 10)
    fresh = estimates.pipeline_seconds(100_000, trainer)
    assert estimates.pipeline_seconds(100_000, trainer, cached=True) < fresh
    assert fresh == pytest.approx(estimates.PIPELINE_FIXED_S + estimates.PIPELINE_PER_EVENT_S * 100_000 + trainer)


def test_the_harness_imports_neither_experiments_nor_benchmarks():
    graph = import_graph()
    upward = {f"{module} -> {target}" for module, targets in graph.items() if module.startswith("harness")
              for target in targets if target.split(".")[0] in ("experiments", "benchmarks")}
    assert not upward, f"the harness is below experiments/ and benchmarks/: {sorted(upward)}"
    users = {module.split(".")[0] for module, targets in graph.items()
             if any(target.startswith("harness") for target in targets)}
    assert {"experiments", "benchmarks"} <= users


def test_importing_the_harness_loads_no_tensorflow():
    loaded = heavy_modules_loaded_by("harness.console, harness.estimates, harness.numbers, harness.pipeline_jobs, "
                                     "harness.progress, harness.versions")
    assert loaded == [], f"importing the harness loaded {loaded}"
