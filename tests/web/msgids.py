"""Collect the msgids the web package uses: `_("...")` in templates, `t("...")`,
`member.t("...")` and `_("...")` calls in Python (implicit concatenation included)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "src" / "tayori" / "web"
_TEMPLATE_CALL = re.compile(r"""\b_\(\s*"((?:[^"\\]|\\.)*)"|\b_\(\s*'((?:[^'\\]|\\.)*)'""")
_NAMES = {"t", "_"}


def template_msgids(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    return {a or b for a, b in _TEMPLATE_CALL.findall(text)}


def python_msgids(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = (
            func.id
            if isinstance(func, ast.Name)
            else func.attr
            if isinstance(func, ast.Attribute)
            else ""
        )
        first = node.args[0]
        if name in _NAMES and isinstance(first, ast.Constant) and isinstance(first.value, str):
            found.add(first.value)
    return found


def used_msgids() -> dict[str, set[str]]:
    """msgid -> files using it."""
    used: dict[str, set[str]] = {}
    for path in sorted(WEB.rglob("*.html")):
        for msgid in template_msgids(path):
            used.setdefault(msgid, set()).add(str(path.relative_to(WEB)))
    for path in sorted(WEB.rglob("*.py")):
        for msgid in python_msgids(path):
            used.setdefault(msgid, set()).add(str(path.relative_to(WEB)))
    return used
