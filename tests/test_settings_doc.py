"""docs/settings.md is generated from PipelineConfig and must match the code (the hand-written tables drifted)."""
from __future__ import annotations

import dataclasses

import pytest

from pipeline import configs, settings_doc


def test_the_settings_page_is_current() -> None:
    current = settings_doc.SETTINGS_DOC.read_text(encoding="utf-8") if settings_doc.SETTINGS_DOC.exists() else ""
    assert current == settings_doc.render(), (
        f"docs/settings.md is stale (pipeline/configs.py changed); run: {settings_doc.WRITE_COMMAND}")


def test_every_setting_is_on_the_page_with_its_default_and_help() -> None:
    page = settings_doc.render()
    for field in dataclasses.fields(configs.PipelineConfig):
        rows = [line for line in page.splitlines() if line.startswith(f"| `{field.name}` |")]
        assert len(rows) == 1, f"{field.name}: expected one row, found {len(rows)}"
        assert str(field.default).lower() in rows[0].lower(), rows[0]
    assert "scann_min_catalog" in page and "Why: [design.md](design.md) §4." in page


def test_help_text_comes_from_the_field_docstring() -> None:
    by_name = {setting.name: setting for setting in settings_doc.settings()}
    assert by_name["skip_ms"].help == "A play without thumbs shorter than this is a skip."
    assert by_name["skip_ms"].group.startswith("FeedbackLabeler")
    assert by_name["spans"].group == settings_doc.FIRST_GROUP
    assert by_name["temperature"].type_name == "float"


def test_a_field_without_a_docstring_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    source = settings_doc.CONFIGS_SOURCE.read_text(encoding="utf-8")
    undocumented = source.replace('    """A play without thumbs shorter than this is a skip."""\n', "", 1)
    assert undocumented != source
    fake = tmp_path / "configs.py"
    fake.write_text(undocumented, encoding="utf-8")
    monkeypatch.setattr(settings_doc, "CONFIGS_SOURCE", fake)
    with pytest.raises(ValueError, match="skip_ms has no docstring"):
        settings_doc.settings()


def test_check_reports_a_stale_page(monkeypatch: pytest.MonkeyPatch, tmp_path, capsys) -> None:
    stale = tmp_path / "settings.md"
    stale.write_text("# old\n", encoding="utf-8")
    monkeypatch.setattr(settings_doc, "SETTINGS_DOC", stale)
    monkeypatch.setattr(settings_doc, "REPO_ROOT", tmp_path)
    assert settings_doc.main(["--check"]) == 1
    assert settings_doc.WRITE_COMMAND in capsys.readouterr().err
    assert settings_doc.main(["--write"]) == 0
    assert settings_doc.main(["--check"]) == 0
