"""Japanese decoders that the codecs module gets wrong for real mail.

Mail labelled ISO-2022-JP or EUC-JP is usually written by Windows mail programs, which use
Microsoft's tables (CP50220/50221/50222 and CP51932): NEC row 13 (①, Ⅱ, ㈱), the NEC-selected
IBM extensions in rows 89-92 (髙, 﨑) and half-width katakana. Python's strict codecs turn these
into U+FFFD, and the `*_2004` codecs decode them as JIS X 0213, where the same code is another
character (髙 becomes 郄): wrong kanji in people's names. So every two-byte JIS character is
decoded through the cp932 table (JIS and EUC-JP map onto Shift_JIS arithmetically), and no JIS
X 0213 codec is ever used as a fallback.
"""

from __future__ import annotations

import base64
import codecs
import re

__all__ = [
    "MS_TO_JIS",
    "decode_eucjp",
    "decode_iso2022jp",
    "encode_iso2022jp",
    "fits_iso2022jp",
    "guess_japanese",
    "jis_to_sjis",
    "protect_raw_jis",
]

_ERRORS = "tayori-eucjp-via-cp932"

# Where the JIS and Microsoft tables disagree on a JIS X 0208 code, the Microsoft character
# is what Japanese mail programs show (WAVE DASH 0x2141 appears as U+FF5E FULLWIDTH TILDE).
# Computed by comparing the euc_jp and cp932 codecs over every JIS X 0208 code: these six.
_AMBIGUOUS = (
    ("\u301c", "\uff5e"),  # WAVE DASH -> FULLWIDTH TILDE
    ("\u2016", "\u2225"),  # DOUBLE VERTICAL LINE -> PARALLEL TO
    ("\u2212", "\uff0d"),  # MINUS SIGN -> FULLWIDTH HYPHEN-MINUS
    ("\u00a2", "\uffe0"),  # CENT SIGN -> FULLWIDTH CENT SIGN
    ("\u00a3", "\uffe1"),  # POUND SIGN -> FULLWIDTH POUND SIGN
    ("\u00ac", "\uffe2"),  # NOT SIGN -> FULLWIDTH NOT SIGN
)
_JIS_TO_MS = str.maketrans(dict(_AMBIGUOUS))
#: The reverse, applied before encoding to strict ISO-2022-JP (whose table has the JIS ones).
MS_TO_JIS = str.maketrans({ms: jis for jis, ms in _AMBIGUOUS})


def jis_to_sjis(first: int, second: int) -> bytes:
    """One JIS X 0208 code (both bytes 0x21-0x7E) as its Shift_JIS bytes."""
    lead = ((first + 1) >> 1) + (0x70 if first <= 0x5E else 0xB0)
    trail = second + ((0x1F if second <= 0x5F else 0x20) if first & 1 else 0x7E)
    return bytes((lead, trail))


def _eucjp_fallback(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: a two-byte EUC-JP code the euc_jp codec lacks goes through cp932.

    This is how NEC row 13, the NEC-selected IBM extensions and user-defined characters
    (CP51932, and ISO-2022-JP after its bytes are shifted into EUC range) decode.
    """
    if not isinstance(error, UnicodeDecodeError):
        raise error
    data, start = error.object, error.start
    if start + 1 < len(data):
        first, second = data[start], data[start + 1]
        if 0xA1 <= first <= 0xFE and 0xA1 <= second <= 0xFE:
            try:
                return jis_to_sjis(first & 0x7F, second & 0x7F).decode("cp932"), start + 2
            except UnicodeDecodeError:
                return "\ufffd", start + 2
    return "\ufffd", start + 1


codecs.register_error(_ERRORS, _eucjp_fallback)


def decode_eucjp(data: bytes) -> str:
    """EUC-JP with the Microsoft extensions (CP51932); undecodable bytes become U+FFFD."""
    return data.decode("euc_jp", _ERRORS).translate(_JIS_TO_MS)


# ISO-2022-JP escape sequences and the shift codes of CP50222's half-width katakana.
_ESCAPES = re.compile(rb"\x1b(?:\([BJHI]|\$[@B]|\$\([DOQP]|&@)|[\x0e\x0f]")
_ASCII, _KANA, _X0208, _X0212 = range(4)
_MODES = {
    b"\x1b(B": _ASCII,
    b"\x1b(J": _ASCII,  # JIS X 0201 Roman: Windows shows it as ASCII, so do we
    b"\x1b(H": _ASCII,
    b"\x1b(I": _KANA,
    b"\x1b$@": _X0208,
    b"\x1b$B": _X0208,
    b"\x1b$(O": _X0208,  # JIS X 0213 plane 1 is a superset of JIS X 0208: read that part
    b"\x1b$(Q": _X0208,
    b"\x1b$(P": _X0212,  # plane 2: no table here; the codes show as U+FFFD
    b"\x1b$(D": _X0212,
}
# JIS X 0208 bytes shifted into EUC-JP range; control bytes (CR, LF) stay as they are.
_TO_EUC = bytes(b | 0x80 if 0x21 <= b <= 0x7E else b for b in range(256))
# Half-width katakana: 0x21-0x5F in ESC ( I or SO mode are 0xA1-0xDF in cp932.
_TO_KANA = bytes(b + 0x80 if 0x21 <= b <= 0x5F else b for b in range(256))
_X0212_PAIR = re.compile(rb"[\xa1-\xfe]{2}")


def _decode_segment(mode: int, segment: bytes) -> str:
    if mode == _ASCII:
        if segment.isascii():
            return segment.decode("ascii")
        # 8-bit bytes in ISO-2022-JP: half-width katakana (0xA1-0xDF) as CP50221 writes them,
        # anything else is not decodable.
        return segment.decode("cp932", "replace")
    if mode == _KANA:
        return segment.translate(_TO_KANA).decode("cp932", "replace")
    euc = segment.translate(_TO_EUC)
    if mode == _X0212:
        euc = _X0212_PAIR.sub(lambda pair: b"\x8f" + pair.group(), euc)
    return decode_eucjp(euc)


def decode_iso2022jp(data: bytes) -> str:
    """ISO-2022-JP as CP50220/50221/50222 write it; undecodable bytes become U+FFFD.

    Every call starts in ASCII, so text after an encoded word that never switched back (a
    common bug) is still read as ASCII.
    """
    if b"\x1b" not in data and b"\x0e" not in data:
        return _decode_segment(_ASCII, data)
    parts: list[str] = []
    mode, shifted_out = _ASCII, False
    position = 0
    for escape in _ESCAPES.finditer(data):
        if escape.start() > position:
            parts.append(
                _decode_segment(_KANA if shifted_out else mode, data[position : escape.start()])
            )
        code = escape.group()
        if code == b"\x0e":
            shifted_out = True
        elif code == b"\x0f":
            shifted_out = False
        else:
            mode, shifted_out = _MODES[code], False
        position = escape.end()
    if position < len(data):
        parts.append(_decode_segment(_KANA if shifted_out else mode, data[position:]))
    text = "".join(parts)
    # An escape we do not know stays in the data: it cannot be shown, so it is lost visibly.
    return text.replace("\x1b", "\ufffd")


_ONE_RUN = rb"\x1b(?:\$[@B]|\(I)[^\x1b]*(?:\x1b\([BJ])?"
# Runs separated only by blanks are one piece of text ("山田 太郎"): kept in one word.
_RAW_JIS_RUN = re.compile(_ONE_RUN + rb"(?:[ \t]+" + _ONE_RUN + rb")*")


def protect_raw_jis(data: bytes) -> bytes:
    """Unencoded ISO-2022-JP in a structured header, turned into RFC 2047 words.

    Its JIS bytes are printable ASCII, including `"`, `<`, `,` and `\\`, which an address or
    parameter parser would take for syntax. As encoded words they pass through any parser
    untouched and decode to the same text.
    """
    if b"\x1b" not in data:
        return data
    return _RAW_JIS_RUN.sub(
        lambda run: b"=?ISO-2022-JP?B?" + base64.b64encode(run.group()) + b"?=", data
    )


# ESC, SO and SI are ISO-2022-JP's own shift codes: text holding them cannot be carried.
_NOT_CARRIED = re.compile("[\x1b\x0e\x0f]")


def encode_iso2022jp(text: str) -> bytes | None:
    """Strict ISO-2022-JP (ASCII + JIS X 0208), or None when the text needs more than that
    or holds the ESC, SO or SI control characters, which would be read as shift codes.

    The Microsoft spellings of the six ambiguous characters are mapped back first, so a
    FULLWIDTH TILDE typed on Windows still fits.
    """
    if _NOT_CARRIED.search(text):
        return None
    try:
        data = text.translate(MS_TO_JIS).encode("iso2022_jp")
    except UnicodeEncodeError:
        return None
    # Python's codec also writes JIS X 0201 Roman (ESC ( J) for the yen sign and overline;
    # mail programs (and our decoder) read that set as ASCII, so it is not strict either.
    return None if b"\x1b(J" in data else data


def fits_iso2022jp(text: str) -> bool:
    """Whether the text goes out in strict ISO-2022-JP and reads back exactly as written.

    Stricter than `encode_iso2022jp` succeeding: the JIS spellings of the six ambiguous
    characters (WAVE DASH U+301C etc.) encode, but read back as the Microsoft characters.
    """
    data = encode_iso2022jp(text)
    return data is not None and decode_iso2022jp(data) == text


def _score(text: str) -> int:
    """How Japanese a decoding looks: kana and kanji count for it, PUA and oddities against."""
    score = 0
    for char in text:
        code = ord(char)
        if code < 0x80:
            continue
        if 0x3041 <= code <= 0x30FF:
            score += 3
        elif 0x4E00 <= code <= 0x9FFF or 0x3000 <= code <= 0x303F or 0xFF01 <= code <= 0xFF5E:
            score += 2
        elif code == 0xFFFD or 0xE000 <= code <= 0xF8FF:
            return -1
        elif 0xFF61 <= code <= 0xFF9F:
            score -= 1  # half-width katakana: rare in headers, common in misreadings
        else:
            score += 0 if 0x2460 <= code <= 0x33FF else -2
    return score


def guess_japanese(data: bytes) -> tuple[str, str] | None:
    """Unlabelled 8-bit bytes read as cp932 or EUC-JP, whichever looks more Japanese.

    Returns (text, charset) or None when neither reading is plausible; the caller then keeps
    the bytes visible as U+FFFD instead of inventing text.
    """
    best: tuple[int, str, str] | None = None
    try:
        sjis = data.decode("cp932")
    except UnicodeDecodeError:
        pass
    else:
        best = (_score(sjis), sjis, "cp932")
    euc = decode_eucjp(data)
    if "\ufffd" not in euc:
        euc_score = _score(euc)
        if best is None or euc_score > best[0]:
            best = (euc_score, euc, "euc-jp")
    if best is None or best[0] <= 0:
        return None
    return best[1], best[2]
