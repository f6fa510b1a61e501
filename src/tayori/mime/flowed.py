"""format=flowed (RFC 3676): rejoin the soft-wrapped lines a mail program sent.

A line ending in a space continues on the next line at the same quote depth; `delsp=yes`
means that space was added by the wrapping and goes. The signature separator `-- ` is never
joined, and space-stuffing (a leading space protecting `From ` or `>`) is removed.
"""

from __future__ import annotations

__all__ = ["unflow"]


def _split_quote(line: str) -> tuple[int, str]:
    depth = len(line) - len(line.lstrip(">"))
    content = line[depth:]
    if content.startswith(" "):
        content = content[1:]  # space-stuffing
    return depth, content


def unflow(text: str, *, delsp: bool = False) -> str:
    """The text with flowed paragraphs joined; quoted lines keep their `>` prefix."""
    out: list[str] = []
    current: list[str] = []
    current_depth = -1
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        depth, content = _split_quote(line)
        flowed = content.endswith(" ") and content != "-- "
        if current and depth != current_depth:
            out.append(_finish(current_depth, current))
            current = []
        current_depth = depth
        if flowed and delsp:
            content = content[:-1]
        current.append(content)
        if not flowed:
            out.append(_finish(depth, current))
            current = []
    if current:
        out.append(_finish(current_depth, current))
    return "\n".join(out)


def _finish(depth: int, pieces: list[str]) -> str:
    prefix = ">" * depth + (" " if depth else "")
    return prefix + "".join(pieces)
