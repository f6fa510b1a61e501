"""Header values as people should see them: RFC 2047 words, raw 8-bit bytes, no controls.

Encoded words next to each other in the same charset are joined as bytes before decoding,
because encoders split words wherever the length limit falls: inside a UTF-8 sequence, between
a Shift_JIS lead and trail byte, or in the middle of ISO-2022-JP's JIS X 0208 mode. Words are
also found where RFC 2047 forbids them (inside quotes, glued to `Re:`), as mail programs do.
Text outside encoded words that has 8-bit bytes is guessed by `charsets.decode_unlabelled`.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field

from tayori.mime.charsets import decode, decode_unlabelled, resolve

__all__ = ["DecodedHeader", "decode_header", "decode_header_text", "unfold"]

_WORD = re.compile(rb"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_LINE_BREAK = re.compile(rb"[\r\n]+")
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SPACES = re.compile("[\t\r\n]")
_Q_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/]*=*")
_MAX_LENGTH = 1024 * 1024
_NOT_ESCAPES = re.compile("[\ud800-\udc7f\udd00-\udfff]")


@dataclass(slots=True)
class DecodedHeader:
    """A decoded header value and what went wrong while decoding it."""

    text: str
    problems: list[str] = field(default_factory=list)
    lossy: bool = False


def unfold(raw: bytes) -> bytes:
    """RFC 5322 unfolding: a line break followed by white space is removed; other stray line
    breaks (bare CR or LF inside a value) become spaces; the ends are trimmed."""
    trimmed = raw.strip(b" \t\r\n")
    if b"\n" not in trimmed and b"\r" not in trimmed:
        # One line (most values, which end with their CRLF): nothing inside to unfold.
        return trimmed
    return _LINE_BREAK.sub(b" ", _FOLD.sub(b"", trimmed)).strip(b" \t\r\n")


def _q_decode(text: bytes) -> bytes:
    return _Q_ESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), text.replace(b"_", b" "))


def _b_decode(text: bytes) -> bytes | None:
    """Base64 of one encoded word; None when it holds characters base64 does not have (the
    word is then shown as written). Missing or extra padding is forgiven."""
    if _BASE64_TEXT.fullmatch(text) is None:
        return None
    stripped = text.rstrip(b"=")
    stripped = stripped[: len(stripped) - 1] if len(stripped) % 4 == 1 else stripped
    return binascii.a2b_base64(stripped + b"=" * (-len(stripped) % 4))


def _clean(text: str) -> str:
    """No control characters: line breaks and tabs become spaces, the rest U+FFFD."""
    if text.isprintable():
        return text
    return _CONTROLS.sub("\ufffd", _SPACES.sub(" ", text))


class _Builder:
    """Collects decoded pieces; runs of encoded words in one charset are decoded together."""

    def __init__(self, result: DecodedHeader) -> None:
        self.result = result
        self.pieces: list[str] = []
        self.run_label: str | None = None
        self.run_key: str | None = None
        self.run_bytes: list[bytes] = []
        self.run_raw: list[bytes] = []

    def flush(self) -> None:
        if self.run_label is None:
            return
        data = b"".join(self.run_bytes)
        if resolve(self.run_label) is None:
            self.result.problems.append(f"unknown charset {self.run_label!r} in encoded word")
            guessed = decode_unlabelled(data)
            if guessed.lossy:
                # Not readable as anything: show the words as they were written.
                self.pieces.append(b" ".join(self.run_raw).decode("ascii", "replace"))
            else:
                self.pieces.append(guessed.text)
        else:
            decoded = decode(data, self.run_label)
            if decoded.lossy:
                self.result.lossy = True
                self.result.problems.append(f"undecodable bytes in {self.run_label} word")
            self.pieces.append(decoded.text)
        self.run_label = self.run_key = None
        self.run_bytes, self.run_raw = [], []

    def word(self, label: str, data: bytes, raw: bytes) -> None:
        key = resolve(label) or label.lower()
        if self.run_key != key:
            self.flush()
            self.run_label, self.run_key = label, key
        self.run_bytes.append(data)
        self.run_raw.append(raw)

    def literal(self, data: bytes) -> None:
        self.flush()
        if not data:
            return
        decoded = decode_unlabelled(data)
        if decoded.lossy:
            self.result.lossy = True
            self.result.problems.append("raw 8-bit bytes that decode as no charset")
        elif not data.isascii():
            self.result.problems.append(f"raw 8-bit header text (read as {decoded.charset})")
        self.pieces.append(decoded.text)


def decode_header(raw: bytes, *, keep_controls: bool = False) -> DecodedHeader:
    """Decode one raw header value (folding included); never raises.

    `keep_controls` leaves control characters in (attachment names are reported exactly and
    made safe only when saved); otherwise they are replaced for display.
    """
    value = unfold(raw[:_MAX_LENGTH])
    if value.isascii() and b"=?" not in value and b"\x1b" not in value:
        # Most header values: no encoded word, no ISO-2022-JP escape, so the text is the
        # bytes as written (what the general path below makes of them, at a third of its
        # cost: every message's Subject, From and To are decoded several times).
        text = value.decode("ascii")
        return DecodedHeader((text if keep_controls else _clean(text)).strip())
    return _decode_unfolded(value, keep_controls)


def _decode_unfolded(value: bytes, keep_controls: bool) -> DecodedHeader:
    """`decode_header`'s general path, for any unfolded value."""
    result = DecodedHeader("")
    builder = _Builder(result)
    position = 0
    previous_word_end = -1
    for match in _WORD.finditer(value):
        between = value[position : match.start()]
        if not (previous_word_end == position and not between.strip(b" \t")):
            builder.literal(between)
        label, encoding, text = match.group(1), match.group(2), match.group(3)
        data = _q_decode(text) if encoding in b"qQ" else _b_decode(text)
        if data is None:
            result.problems.append("encoded word that is not base64")
            builder.literal(match.group())
        else:
            builder.word(label.decode("ascii", "replace"), data, match.group())
        position = previous_word_end = match.end()
    builder.literal(value[position:])
    builder.flush()
    text = "".join(builder.pieces)
    result.text = (text if keep_controls else _clean(text)).strip()
    return result


def decode_header_text(raw: str | bytes) -> str:
    """A header value for display: RFC 2047 decoded (adjacent words joined as bytes), raw
    8-bit text guessed, undecodable bytes as U+FFFD, no control characters. Never raises.

    A `str` may carry raw bytes as surrogate escapes (as the stdlib email parser leaves them).
    """
    if isinstance(raw, str):
        # A surrogate that escapes no byte (only U+DC80-U+DCFF do) is shown as U+FFFD.
        raw = _NOT_ESCAPES.sub("\ufffd", raw).encode("utf-8", "surrogateescape")
    return decode_header(raw).text
