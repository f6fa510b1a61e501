"""Attachment names: which parameter to believe, and a safe form for saving to disk.

The name is reported exactly as the sender meant it (decoded, even when hostile), because
that is what the member expects to see and what support needs to compare. Only when the
file is saved or offered for download does `safe_filename` remove what could hurt: path
separators, control and bidirectional-override characters, Windows device names.
"""

from __future__ import annotations

import re
import unicodedata

from tayori.mime.part import Part

__all__ = ["attachment_filename", "safe_filename"]

_RESERVED = re.compile(r"^(?:con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(?:\..*)?$", re.IGNORECASE)
_UNSAFE = re.compile(r'[\\/:*?"<>|]')
_MAX_BYTES = 200
_FALLBACK = "attachment"


def attachment_filename(part: Part) -> str | None:
    """The name of a part: Content-Disposition `filename` (RFC 2231 or not) first, then
    Content-Type `name`, as mail programs have always ranked them."""
    for name in (part.disposition_params.get("filename"), part.params.get("name")):
        if name and name.strip():
            return name.strip()
    return None


def _drop_unsafe_characters(name: str) -> str:
    kept = []
    for char in name:
        category = unicodedata.category(char)
        if category in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}:
            continue  # controls, bidi overrides (U+202E), surrogates, private use
        kept.append(char)
    return "".join(kept)


def _truncate(name: str) -> str:
    if len(name.encode("utf-8")) <= _MAX_BYTES:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or len(extension) > 16:
        stem, extension, dot = name, "", ""
    budget = _MAX_BYTES - len(extension.encode("utf-8")) - len(dot)
    while stem and len(stem.encode("utf-8")) > budget:
        stem = stem[:-1]
    return f"{stem}{dot}{extension}"


def safe_filename(name: str | None, fallback: str = _FALLBACK) -> str:
    """A name fit to save under on any system: last path component only, no control or
    bidi characters, no characters Windows forbids, no device names, at most 200 bytes."""
    if not name:
        return fallback
    name = unicodedata.normalize("NFC", name)
    name = re.split(r"[\\/]", name)[-1]
    name = _drop_unsafe_characters(name)
    name = _UNSAFE.sub("_", name).strip(" .")
    if not name:
        return fallback
    if _RESERVED.match(name):
        name = f"_{name}"
    return _truncate(name)
