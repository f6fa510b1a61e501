"""The documents generated from code: the config reference and the reason-code catalogue.

They are rendered, never hand-edited, so that what admins and the help desk read is what the
code does; `tayori docs --check` and a test fail when the committed copies are stale.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tayori.config.reference import render_config_reference
from tayori.core.reasons import CATALOGUE, ReasonCode

__all__ = ["GENERATED", "render_reason_codes", "stale_docs", "write_docs"]


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _reply(reason: ReasonCode) -> str:
    return f"`{reason.reply}`" if reason.reply is not None else "(none: no SMTP reply)"


def _section(reason: ReasonCode) -> list[str]:
    return [
        "",
        f"## `{reason.code}`",
        "",
        f"- **SMTP reply**: {_reply(reason)}",
        f"- **Private detail** (admins only): {reason.detail}",
        "",
        "| | 日本語 | English |",
        "|---|---|---|",
        f"| what happened | {_cell(reason.summary.ja)} | {_cell(reason.summary.en)} |",
        f"| what to do | {_cell(reason.action.ja)} | {_cell(reason.action.en)} |",
    ]


def render_reason_codes() -> str:
    """Markdown for `docs/reason-codes.md`, in catalogue order."""
    out = [
        "# Reason codes",
        "",
        "<!-- Generated from src/tayori/core/reasons.py by `tayori docs --write docs`. "
        "Do not edit. -->",
        "",
        "Every decision Tayori takes about a message for a recipient is stored as an outcome with",
        "one of these codes. Codes are a stable public contract, like enhanced status codes:",
        "they are never renamed, so scripts, the help desk and members' delivery history can",
        "rely on them. Placeholders such as `{address}` in a reply are filled in per message.",
        "The member-facing texts are what members see in their delivery history; the private",
        "detail is shown to admins only (`tayori outcomes`).",
        "",
        "| code | SMTP reply | what happened |",
        "|---|---|---|",
    ]
    for reason in CATALOGUE.values():
        out.append(
            f"| [`{reason.code}`](#{_anchor(reason.code)}) | {_reply(reason)} "
            f"| {_cell(reason.summary.en)} |"
        )
    for reason in CATALOGUE.values():
        out += _section(reason)
    return "\n".join(out) + "\n"


def _anchor(code: str) -> str:
    """GitHub's heading anchor for "## `code`": lowercase, punctuation but '-' and '_' dropped."""
    return "".join(ch for ch in code.lower() if ch.isalnum() or ch in "-_")


GENERATED: dict[str, Callable[[], str]] = {
    "config.md": render_config_reference,
    "reason-codes.md": render_reason_codes,
}
"""File name in `docs/` to the function that renders it."""


def write_docs(directory: Path) -> list[Path]:
    """Write every generated document into `directory`; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, render in GENERATED.items():
        path = directory / name
        path.write_text(render(), encoding="utf-8")
        written.append(path)
    return written


def stale_docs(directory: Path) -> list[Path]:
    """The generated documents in `directory` that are missing or differ from the code."""
    stale = []
    for name, render in GENERATED.items():
        path = directory / name
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != render():
            stale.append(path)
    return stale
