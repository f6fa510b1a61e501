"""Charset labels to decoders: an alias map first, then a guarded codec lookup.

Mail carries labels that no codec registry knows (`x-sjis`, `Windows-31J`, `shft_jis`,
`3Diso-8859-1` from a mangled quoted-printable header) and labels that are technically known
but decode wrongly (Shift_JIS for what is always cp932). Every label is normalised and mapped
here before Python's codec lookup, and the lookup itself only ever returns text encodings: a
message cannot make us run `rot13`, `zlib` or `unicode_escape` on its body.

Decoding never raises and never drops a byte silently: undecodable bytes become U+FFFD and
the result says so (`lossy`), so the part can be flagged.
"""

from __future__ import annotations

import codecs
import functools
import re
from dataclasses import dataclass

from tayori.mime.japanese import decode_eucjp, decode_iso2022jp, guess_japanese

__all__ = ["Decoded", "decode", "decode_unlabelled", "resolve"]

ISO2022JP = "iso-2022-jp"
EUCJP = "euc-jp"

# Normalised label (lower case, `_` and spaces as `-`) -> the decoder we use.
_ALIASES: dict[str, str] = {
    # Shift_JIS is always written by Windows or its imitators: decode as cp932.
    **dict.fromkeys(
        [
            "shift-jis",
            "shiftjis",
            "sjis",
            "x-sjis",
            "shft-jis",
            "shift-jis-open",
            "ms-kanji",
            "mskanji",
            "csshiftjis",
            "windows-31j",
            "cswindows31j",
            "cp932",
            "ms932",
            "x-ms-cp932",
            "ibm-943",
            "ibm943",
            "sjis-open",
            "sjis-win",
            "x-sjis-jp",
            "shift-jis-ms",
            "sjis-ms",
            "shift-jisx0208",
            "x-shift-jis",
        ],
        "cp932",
    ),
    **dict.fromkeys(
        [
            "iso-2022-jp",
            "csiso2022jp",
            "jis",
            "iso2022jp",
            "cp50220",
            "cp50221",
            "cp50222",
            "iso-2022-jp-ms",
            "iso-2022-jp-1",
            "x-iso-2022-jp",
            "jis7",
            "iso-2022-jp-3",
            "iso-2022-jp-2004",
            "iso-2022-jp-2",
            "csiso2022jp2",
            "iso-2022-jp-ext",
        ],
        ISO2022JP,
    ),
    **dict.fromkeys(
        [
            "euc-jp",
            "eucjp",
            "x-euc-jp",
            "x-eucjp",
            "cseucpkdfmtjapanese",
            "cp51932",
            "eucjp-ms",
            "euc-jp-ms",
            "eucjp-win",
            "eucjpms",
            "ujis",
            "euc-jis-2004",
            "euc-jisx0213",
        ],
        EUCJP,
    ),
    # JIS X 0213 labels: their JIS X 0208 part is shared with cp932, and cp932's extensions
    # are what such labels carry in practice; the JIS X 0213 codecs are never used.
    **dict.fromkeys(["shift-jis-2004", "shift-jisx0213", "sjis-2004"], "cp932"),
    # Korean and Chinese: the Windows supersets read everything the old labels promise.
    **dict.fromkeys(
        [
            "ks-c-5601-1987",
            "ks-c-5601",
            "ksc5601",
            "ksc-5601",
            "euc-kr",
            "korean",
            "cp949",
            "uhc",
            "ks-c-5601-1989",
            "x-windows-949",
            "windows-949",
        ],
        "cp949",
    ),
    **dict.fromkeys(
        [
            "gb2312",
            "gbk",
            "x-gbk",
            "cp936",
            "gb-2312-80",
            "chinese",
            "csgb2312",
            "euc-cn",
            "x-euc-cn",
            "gb18030",
            "windows-936",
            "hz-gb-2312-x",
        ],
        "gb18030",
    ),
    **dict.fromkeys(["big5", "x-big5", "big5-hkscs", "cn-big5", "csbig5", "cp950"], "big5hkscs"),
    # Latin-1 and ASCII labels are read as windows-1252, as browsers do: the C1 range of real
    # mail holds Windows punctuation, not control characters.
    **dict.fromkeys(
        [
            "iso-8859-1",
            "latin1",
            "latin-1",
            "l1",
            "iso8859-1",
            "iso-ir-100",
            "cp819",
            "windows-1252",
            "cp1252",
            "x-cp1252",
            "ansi",
            "iso-8859-1-windows-3.1-latin-1",
        ],
        "cp1252",
    ),
    **dict.fromkeys(["utf8", "utf-8", "x-utf-8", "unicode-1-1-utf-8", "utf-8-sig"], "utf-8"),
    **dict.fromkeys(["tis-620", "iso-8859-11", "windows-874", "cp874"], "cp874"),
    "x-mac-cyrillic": "mac-cyrillic",
    "macintosh": "mac-roman",
    "x-mac-roman": "mac-roman",
    "utf-7": "utf-7",
    "unicode-1-1-utf-7": "utf-7",
}
# Labels that promise nothing: the bytes decide (strict UTF-8, then a Japanese guess).
_UNKNOWN = frozenset(
    [
        "",
        "us-ascii",
        "ascii",
        "ansi-x3.4-1968",
        "iso646-us",
        "unknown-8bit",
        "unknown",
        "x-unknown",
        "default",
        "charset",
        "none",
        "x-user-defined",
        "8bit",
        "7bit",
    ]
)
# Python codecs that are text encodings but must never decode mail.
_REFUSED = frozenset(
    [
        "unicode_escape",
        "raw_unicode_escape",
        "idna",
        "punycode",
        "undefined",
        "mbcs",
        "oem",
        "palmos",
        "charmap",
    ]
)
_JIS_X0213 = re.compile(r"2004|x0213|jis_3|2022_jp_3")
_LABEL_JUNK = re.compile(r"^(?:3d)+|[\"'\s;]+$|^[\"'\s]+")


@dataclass(frozen=True, slots=True)
class Decoded:
    """Text from bytes, with the charset actually used and whether bytes were lost."""

    text: str
    charset: str
    lossy: bool = False
    label_known: bool = True


def _normalise(label: str) -> str:
    label = _LABEL_JUNK.sub("", label.strip().lower())
    return re.sub(r"[_\s]+", "-", label)


@functools.lru_cache(maxsize=512)
def resolve(label: str | None) -> str | None:
    """The decoder name for a label, or None when the label promises nothing usable.

    Known aliases first; then Python's lookup, accepted only for text encodings that are
    not on the refused list and not JIS X 0213.
    """
    if label is None:
        return None
    name = _normalise(label)
    if name in _UNKNOWN:
        return None
    if name in _ALIASES:
        return _ALIASES[name]
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    codec = info.name.replace("-", "_")
    if not getattr(info, "_is_text_encoding", True) or codec in _REFUSED:
        return None
    if codec.startswith("iso2022_jp"):
        return ISO2022JP
    if codec.startswith("euc_j"):
        return EUCJP
    if codec.startswith("shift_jis") or _JIS_X0213.search(codec):
        return "cp932"
    return info.name


# Lone surrogates are not characters: UTF-7 decodes `+2D0-` to one, and such a string cannot
# be encoded again (the HTML sanitiser, the database, JSON output all raise on it).
_SURROGATES = re.compile("[\ud800-\udfff]")


def _decode_with(data: bytes, charset: str) -> tuple[str, bool]:
    if charset == ISO2022JP:
        text = decode_iso2022jp(data)
        return text, "\ufffd" in text
    if charset == EUCJP:
        text = decode_eucjp(data)
        return text, "\ufffd" in text
    try:
        text, lossy = data.decode(charset), False
    except UnicodeDecodeError:
        text, lossy = data.decode(charset, "replace"), True
    except LookupError:  # pragma: no cover - resolve() only returns names that look up
        return data.decode("utf-8", "replace"), True
    if _SURROGATES.search(text) is not None:
        return _SURROGATES.sub("\ufffd", text), True
    return text, lossy


def decode_unlabelled(data: bytes) -> Decoded:
    """Bytes with no usable label: ASCII, ISO-2022-JP by its escapes, strict UTF-8, a
    Japanese guess (cp932 or EUC-JP), else UTF-8 with U+FFFD for what does not decode."""
    if data.isascii():
        # One-byte search first: a two-byte `in` costs ~6 us per 5 KB, ESC alone ~0.3.
        if b"\x1b" in data and (b"\x1b$" in data or b"\x1b(" in data):
            text = decode_iso2022jp(data)
            return Decoded(text, ISO2022JP, "\ufffd" in text)
        return Decoded(data.decode("ascii"), "us-ascii")
    try:
        return Decoded(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        pass
    guessed = guess_japanese(data)
    if guessed is not None:
        return Decoded(guessed[0], guessed[1])
    return Decoded(data.decode("utf-8", "replace"), "utf-8", lossy=True)


def decode(data: bytes, label: str | None) -> Decoded:
    """Decode body or header bytes declared as `label`; never raises.

    A missing or meaningless label (us-ascii on 8-bit bytes included) falls back to
    `decode_unlabelled`; an unknown label does too, and says so with `label_known=False`.
    """
    charset = resolve(label)
    if charset is None:
        decoded = decode_unlabelled(data)
        known = label is None or _normalise(label) in _UNKNOWN
        return Decoded(decoded.text, decoded.charset, decoded.lossy, known)
    if charset in {"utf-8", "cp1252"} and data.isascii():
        return Decoded(data.decode("ascii"), charset)
    text, lossy = _decode_with(data, charset)
    return Decoded(text, charset, lossy)
