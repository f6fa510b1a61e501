"""Content-Type and Content-Disposition values: the type and its parameters, decoded.

Parameter values come in every form mail programs have invented: RFC 2231 (`name*=`, and
`name*0*=`, `name*1*=` continuations that may split a character, or an ISO-2022-JP escape, in
two: segments are joined as bytes and decoded once), RFC 2047 words inside quotes, and raw
8-bit bytes. A raw Shift_JIS value may hold 0x5C as a trail byte, which a quoted-string parser
would take for a backslash escape and delete; such values are read Shift_JIS-aware.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from tayori.mime.charsets import decode, decode_unlabelled, resolve
from tayori.mime.headers import decode_header, unfold
from tayori.mime.japanese import protect_raw_jis
from tayori.mime.quoting import read_quoted

__all__ = ["ParsedValue", "parse_value"]

# Section numbers are ASCII digits, at most 9 of them: int() refuses over 4,300 digits, and
# no mail program writes a billion continuations.
_SECTION = re.compile(r"^(.*?)\*([0-9]{1,9})(\*?)$|^(.*?)(\*)$")
_TYPE = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:/[!#$%&'*+.^_`|~0-9A-Za-z-]+)?$")
_MAX_PARAMS = 64
_MAIN = re.compile(rb"\s*([^\s;]*)")


@dataclass(slots=True)
class ParsedValue:
    """`value` lower-cased; decoded `params` (first wins); raw bytes of each for boundaries."""

    value: str
    params: dict[str, str] = field(default_factory=dict)
    raw: dict[str, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    lossy: bool = False


def _split(data: bytes) -> tuple[bytes, list[tuple[str, bytes, bool]], bool]:
    """The main value, the (name, raw value, was quoted) parameters in order, and whether a
    semicolon was missing between them (`multipart/mixed boundary=...` is still read)."""
    main_match = _MAIN.match(data)
    main = main_match.group(1) if main_match else b""
    size = len(data)
    position = main_match.end() if main_match else 0
    rest = data[position:].lstrip()
    missing_semicolon = bool(rest) and not rest.startswith(b";")
    params: list[tuple[str, bytes, bool]] = []
    while position < size and len(params) < _MAX_PARAMS:
        while position < size and data[position] in b" \t;":
            position += 1
        if position >= size:
            break
        equals = data.find(b"=", position)
        next_semicolon = data.find(b";", position)
        if equals < 0 or (0 <= next_semicolon < equals):
            position = size if next_semicolon < 0 else next_semicolon + 1
            continue  # a parameter without a value: nothing to keep
        name = data[position:equals].strip().lower().decode("ascii", "replace")
        position = equals + 1
        while position < size and data[position] in b" \t":
            position += 1
        if position < size and data[position] == 0x22:
            value, position = read_quoted(data, position + 1)
            params.append((name, value, True))
        else:
            end = data.find(b";", position)
            end = size if end < 0 else end
            params.append((name, data[position:end].strip(), False))
            position = end
    return main.strip(), params, missing_semicolon


def _rfc2231(segments: dict[int, tuple[bytes, bool]], result: ParsedValue, name: str) -> str:
    joined = bytearray()
    charset: str | None = None
    for index in sorted(segments):
        raw, encoded = segments[index]
        if encoded:
            if index == min(segments) and raw.count(b"'") >= 2:
                label, _, rest = raw.partition(b"'")
                _, _, raw = rest.partition(b"'")
                charset = label.decode("ascii", "replace") or None
            joined += unquote_to_bytes(raw)
        else:
            joined += raw
    if charset is not None and resolve(charset) is None:
        result.problems.append(f"unknown charset {charset!r} in parameter {name}")
    decoded = decode(bytes(joined), charset)
    result.lossy = result.lossy or decoded.lossy
    return decoded.text


def _plain(raw: bytes, result: ParsedValue) -> str:
    if b"=?" in raw:
        decoded = decode_header(raw, keep_controls=True)
        result.problems += decoded.problems
        result.lossy = result.lossy or decoded.lossy
        return decoded.text
    if raw.isascii():
        return raw.decode("ascii")
    guessed = decode_unlabelled(raw)
    result.lossy = result.lossy or guessed.lossy
    return guessed.text


def parse_value(raw: bytes) -> ParsedValue:
    """Parse `type/subtype; a=b; c*=utf-8''%E3...` (or a disposition); never raises."""
    main, params, missing_semicolon = _split(protect_raw_jis(unfold(raw)))
    value = main.lower().decode("ascii", "replace")
    result = ParsedValue(value)
    if (main and _TYPE.match(main) is None) or missing_semicolon:
        result.problems.append("malformed value")
    sections: dict[str, dict[int, tuple[bytes, bool]]] = {}
    for name, data, _quoted_value in params:
        section = _SECTION.match(name)
        if section is None:
            result.raw.setdefault(name, data)
            if name not in result.params:
                result.params[name] = _plain(data, result)
            continue
        if section.group(1) is not None:
            base, index, encoded = section.group(1), int(section.group(2)), bool(section.group(3))
        else:
            base, index, encoded = section.group(4), 0, True
        sections.setdefault(base, {}).setdefault(index, (data, encoded))
    for base, segments in sections.items():
        # RFC 2231 wins over a plain parameter of the same name: it is the exact one.
        result.params[base] = _rfc2231(segments, result, base)
        result.raw.setdefault(base, b"".join(segments[i][0] for i in sorted(segments)))
    return result
