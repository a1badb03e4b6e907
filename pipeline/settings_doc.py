"""docs/settings.md from `PipelineConfig`: every `--set` key with its default, type and help text.

Hand-written settings tables drifted from the code and missed keys, so the page is generated from the one source
of truth, pipeline/configs.py: defaults and types from the dataclass, help text from the docstring under each
field, groups from its `# --- Group ---` comments. tests/test_settings_doc.py fails when the page is stale.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import pathlib
import re
import sys
import typing

from pipeline import configs

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SETTINGS_DOC = REPO_ROOT / "docs" / "settings.md"
CONFIGS_SOURCE = pathlib.Path(configs.__file__)
WRITE_COMMAND = ".venv/bin/python -m pipeline.settings_doc --write"
FIRST_GROUP = "Runner, spans and Beam"
GROUP_COMMENT = re.compile(r"^\s*# --- (.+?) ---\s*$")


@dataclasses.dataclass(frozen=True)
class Setting:
    """One `--set` key as the page shows it."""

    name: str
    default: typing.Any
    type_name: str
    help: str
    group: str


def _field_docs(source: str) -> dict[str, tuple[str, str]]:
    """{field: (group, docstring)} for PipelineConfig's fields, read from the source (docstrings of attributes
    and comments are not kept at run time)."""
    tree = ast.parse(source)
    lines = source.splitlines()
    config_class = next(node for node in tree.body
                        if isinstance(node, ast.ClassDef) and node.name == configs.PipelineConfig.__name__)
    found: dict[str, tuple[str, str]] = {}
    body = config_class.body
    for index, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        following = body[index + 1] if index + 1 < len(body) else None
        doc = ""
        if (isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            doc = " ".join(following.value.value.split())
        group = FIRST_GROUP
        for line in reversed(lines[:node.lineno - 1]):
            match = GROUP_COMMENT.match(line)
            if match:
                group = match.group(1)
                break
        found[node.target.id] = (group, doc)
    return found


def settings() -> list[Setting]:
    """Every field of PipelineConfig in source order; a field without a docstring is an error."""
    docs = _field_docs(CONFIGS_SOURCE.read_text(encoding="utf-8"))
    hints = typing.get_type_hints(configs.PipelineConfig)
    result = []
    for field in dataclasses.fields(configs.PipelineConfig):
        group, doc = docs.get(field.name, (FIRST_GROUP, ""))
        if not doc:
            raise ValueError(f"PipelineConfig.{field.name} has no docstring in {CONFIGS_SOURCE.name}; "
                             "add one under the field (it is the setting's help text in docs/settings.md)")
        result.append(Setting(field.name, field.default, hints[field.name].__name__, doc, group))
    return result


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _default(value: typing.Any) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f"`{value}`" if value else "`''`"
    return f"`{value}`"


def _note(comment_rest: str) -> str:
    """The group comment's parenthesis (and anything after it) as a line, with design.md linked."""
    cited, _, after = comment_rest.partition(")")
    text = cited.replace("docs/design.md", "[design.md](design.md)")
    return f"Why: {text}{after}." if after else f"Why: {text}."


def render() -> str:
    """The whole page."""
    out = [
        "# Settings: every `--set` key",
        "",
        f"<!-- Generated from pipeline/configs.py by `{WRITE_COMMAND}`; do not edit by hand. -->",
        "",
        "Every runner (`pipeline.local_runner`, `pipeline.kubeflow_runner`, `pipeline.demo`) takes `--set KEY=VALUE`",
        "(repeatable) for any field of `PipelineConfig` in `pipeline/configs.py`. Booleans take true/false (also",
        "1/0, yes/no, on/off); an unknown key or a wrong type is refused with the list of valid keys.",
    ]
    group = None
    for setting in settings():
        if setting.group != group:
            group = setting.group
            title, _, note = group.partition(" (")
            out += ["", f"## {title}", ""]
            if note:
                out += [_note(note), ""]
            out += ["| key | default | type | meaning |", "|---|---|---|---|"]
        out.append(f"| `{setting.name}` | {_cell(_default(setting.default))} | {setting.type_name} | "
                   f"{_cell(setting.help)} |")
    overrides = ", ".join(f"`{assignment}`" for assignment in configs.KUBEFLOW_OVERRIDES)
    out += ["", "## Scheduled Kubeflow runs", "",
            f"`pipeline.kubeflow_runner` starts from these overrides, then applies `--set`: {overrides}.", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.settings_doc",
        description="Generate docs/settings.md from PipelineConfig in pipeline/configs.py (prints it without flags).")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help=f"write {SETTINGS_DOC.relative_to(REPO_ROOT)}")
    action.add_argument("--check", action="store_true", help="exit 1 when the file differs from what would be written")
    args = parser.parse_args(argv)
    page = render()
    if args.write:
        SETTINGS_DOC.write_text(page, encoding="utf-8")
        print(f"wrote {SETTINGS_DOC.relative_to(REPO_ROOT)} ({len(settings())} settings)")
    elif args.check:
        current = SETTINGS_DOC.read_text(encoding="utf-8") if SETTINGS_DOC.exists() else ""
        if current != page:
            print(f"{SETTINGS_DOC.relative_to(REPO_ROOT)} is stale; run: {WRITE_COMMAND}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
