"""The span folder name is built and parsed in one module, and it is the name ExampleGen and existing logs use."""
from __future__ import annotations

import pytest

from listening_logs import spans
from schema import span_folders
from tests.conftest import random_log


def test_the_name_on_disk_is_span_dash_number():
    """Logs already written (and ExampleGen's pattern) depend on this exact spelling: change it knowingly."""
    assert span_folders.folder_name(3) == "span-3"
    assert span_folders.folder_name("{SPAN}") == "span-{SPAN}"
    assert span_folders.GLOB == "span-*"


@pytest.mark.parametrize("name, number", [("span-1", 1), ("span-12", 12), ("span-007", 7), ("span-", None),
                                          ("span-x", None), ("span-1a", None), ("catalog", None), ("spans-1", None)])
def test_number_of_parses_only_span_folders(name, number):
    assert span_folders.number_of(name) == number
    assert span_folders.is_span_folder_name(name) == (number is not None)


def test_bad_span_numbers_are_refused():
    for bad in (-1, True):
        with pytest.raises(ValueError, match="integer >= 0"):
            span_folders.folder_name(bad)


def test_numbers_lists_the_written_spans_and_ignores_the_rest(tmp_path):
    written = spans.write_spans(random_log(60, days=3), tmp_path)
    (tmp_path / "span-notes").mkdir()
    (tmp_path / "catalog").mkdir()
    (tmp_path / "span-9").write_text("a file, not a span folder")
    assert span_folders.numbers(tmp_path) == sorted(written) == [1, 2, 3]
    assert span_folders.folders(tmp_path)[2] == span_folders.folder(tmp_path, 2) == tmp_path / "span-2"
