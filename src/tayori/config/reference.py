"""The config reference (`docs/config.md`) and the commented `tayori.toml` that init writes.

Both are rendered from the settings dataclasses, so the documentation, the defaults and the
loader cannot disagree; a test fails when the committed `docs/config.md` is stale.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Mapping
from dataclasses import Field
from enum import StrEnum
from typing import Any, get_args, get_type_hints

from tayori.config.loader import (
    CONFIG_ENV,
    Kind,
    field_default,
    field_kind,
    format_value,
    section_fields,
    sections,
)
from tayori.core.sizes import format_size

__all__ = ["render_config_file", "render_config_reference"]

_WIDTH = 96


def _section_doc(cls: type[Any]) -> str:
    doc = cls.__doc__ or ""
    # A dataclass without a docstring gets its signature as __doc__: not documentation.
    if doc.startswith(f"{cls.__name__}("):
        return ""
    return inspect.cleandoc(doc)


def _comment(text: str) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n\n"):
        if lines:
            lines.append("#")
        lines += textwrap.wrap(
            " ".join(paragraph.split()), _WIDTH, initial_indent="# ", subsequent_indent="# "
        )
    return lines


def render_config_file(values: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """A complete `tayori.toml`: every key with its documentation as a comment.

    Keys in `values` are written as set; the others are commented out showing their default,
    except listeners, which are written out because a `[listen]` table starts only the
    listeners it names.
    """
    values = values or {}
    out = [
        "# Tayori configuration. Every key is shown; commented-out keys have their default.",
        "# Reference: docs/config.md. Check this file with `tayori config check`.",
    ]
    for name, cls in sections():
        out += ["", f"[{name}]"]
        out += _comment(_section_doc(cls))
        given = values.get(name, {})
        for item, kind in section_fields(cls):
            out += ["", *_comment(item.metadata["doc"])]
            if item.name in given:
                out.append(f"{item.name} = {format_value(given[item.name])}")
            elif kind is Kind.LISTENER:
                out.append(f"{item.name} = {format_value(field_default(item))}")
            else:
                out.append(f"# {item.name} = {format_value(field_default(item))}")
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default_cell(item: Field[Any], kind: Kind) -> str:
    default = field_default(item)
    shown = f"`{format_value(default)}`"
    if kind is Kind.SIZE:
        shown += f" ({format_size(default)})"
    return shown


def _kind_note(cls: type[Any], item: Field[Any]) -> str:
    """The words a choice takes, or the keys of each table in a list of tables."""
    annotation = get_type_hints(cls)[item.name]
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        return " One of: " + ", ".join(f"`{member.value}`" for member in annotation) + "."
    if field_kind(item.name, annotation) is Kind.TABLE_LIST:
        (table,) = get_args(annotation)
        keys = [
            f"`{entry.name}` ({kind}, default `{format_value(field_default(entry))}`"
            + (", required" if entry.metadata.get("required") else "")
            + f"): {entry.metadata['doc']}{_kind_note(table, entry)}"
            for entry, kind in section_fields(table)
        ]
        return " Keys of each table: " + "; ".join(keys)
    return ""


def render_config_reference() -> str:
    """Markdown for `docs/config.md`."""
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated from src/tayori/config/settings.py by `tayori docs --write docs`. "
        "Do not edit. -->",
        "",
        "Tayori reads one TOML file: the one named by `--config FILE`, else by the environment",
        f"variable `{CONFIG_ENV}`, else `./tayori.toml`. `tayori init` writes one listing every",
        "key. `tayori config check` validates a file and lists every problem as",
        "`KEY = VALUE: REASON`; `tayori serve` refuses to start with the same list.",
        "Unknown sections and keys are errors (with a suggestion when one is close).",
        "",
        "## Value types",
        "",
        "| type | how to write it |",
        "|---|---|",
        f'| {Kind.STRING} | `"text"` |',
        f"| {Kind.INTEGER} | a whole number, at least 1 unless the key says what 0 means: `100` |",
        f'| {Kind.SIZE} | bytes, or a string with a unit: `52428800`, `"500KB"`, `"50MB"`, '
        '`"1GB"`, `"2GiB"`. KB, MB, GB are powers of 1000; KiB, MiB, GiB powers of 1024 |',
        f"| {Kind.SECONDS} | a number of seconds, fractions allowed: `300`, `0.5`; "
        "timeouts must be more than 0 |",
        f"| {Kind.BOOLEAN} | `true` or `false` |",
        f'| {Kind.PATH} | `"path"`; `server.data_dir` is taken from the config file\'s '
        "directory when relative, every other path from the data dir |",
        f'| {Kind.OPTIONAL_PATH} | as path; `""` or absent for the default |',
        f'| {Kind.LISTENER} | `"127.0.0.1:25"`, `"mail.example.jp:25"`, `"[::1]:25"`, '
        '`"0.0.0.0:25"` for every IPv4 address; `""` turns the listener off |',
        f'| {Kind.HOSTPORT_LIST} | `["192.0.2.53:53", "[2001:db8::53]:53"]` |',
        f"| {Kind.NUMBER} | a number, fractions allowed, not negative: `2.5` |",
        f'| {Kind.CHOICE} | one of the words the key lists, in quotes: `"reject"` |',
        f"| {Kind.TABLE_LIST} | inline tables with the keys listed under the key: "
        '`[{ zone = "zen.example.org", weight = 5.0 }]` |',
    ]
    for name, cls in sections():
        out += ["", f"## [{name}]", ""]
        doc = _section_doc(cls)
        if doc:
            out += [doc, ""]
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for item, kind in section_fields(cls):
            out.append(
                f"| `{name}.{item.name}` | {kind} | {_default_cell(item, kind)} "
                f"| {_cell(item.metadata['doc'] + _kind_note(cls, item))} |"
            )
    out += [
        "",
        "## Example",
        "",
        "The file `tayori init` writes, with every default:",
        "",
        "```toml",
        render_config_file().rstrip("\n"),
        "```",
    ]
    return "\n".join(out) + "\n"
