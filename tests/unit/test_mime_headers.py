"""RFC 2047 decoding, address fields, parameters and attachment names."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tayori.mime.addresses import Mailbox, parse_addresses
from tayori.mime.filenames import safe_filename
from tayori.mime.headers import _decode_unfolded, decode_header, decode_header_text, unfold
from tayori.mime.params import parse_value


def word(data: bytes, charset: str) -> bytes:
    return b"=?" + charset.encode() + b"?B?" + base64.b64encode(data) + b"?="


def test_adjacent_words_are_joined_as_bytes_before_decoding() -> None:
    data = "分割された件名".encode()
    split = b" ".join(word(data[i : i + 4], "UTF-8") for i in range(0, len(data), 4))
    assert decode_header_text(split) == "分割された件名"


def test_shift_jis_split_between_lead_and_trail_byte() -> None:
    data = "シフト".encode("cp932")
    raw = b"=?Shift_JIS?Q?=" + data[:1].hex().encode() + b"?= =?Shift_JIS?Q?="
    raw += "=".join(f"{b:02X}" for b in data[1:]).encode() + b"?="
    assert decode_header_text(raw) == "シフト"


def test_words_in_different_charsets_lose_the_space_between_them() -> None:
    raw = word("前半".encode("iso2022_jp"), "ISO-2022-JP") + b"  " + word(b"UTF", "UTF-8")
    assert decode_header_text(raw) == "前半UTF"


def test_words_glued_to_text_quoted_or_with_a_language_are_decoded() -> None:
    assert decode_header_text(b"Re:" + word("重要".encode(), "utf-8")) == "Re:重要"
    assert decode_header_text(b"=?utf-8*ja?b?" + base64.b64encode("あ".encode()) + b"?=") == "あ"


def test_never_raises_and_shows_no_control_characters() -> None:
    text = decode_header_text(b"a\x00b\r\n\tc \x1b[31m =?utf-8?B?@@@?= =?x-none?B?gqA=?=")
    assert text.isprintable()
    assert "=?utf-8?B?@@@?=" in text


@settings(max_examples=500)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=12).filter(bytes.isascii),
            st.sampled_from(
                [b"=?", b"?=", b"=?utf-8?q?a?=", b"\x1b$B", b"\x1b(B", b"\r\n ", b"\t", b"\x7f"]
            ),
        ),
        max_size=8,
    ),
    st.booleans(),
)
def test_plain_ascii_values_decode_as_the_general_path_does(
    pieces: list[bytes], keep_controls: bool
) -> None:
    """The shortcut for ASCII values without encoded words or escapes gives what the
    general path gives: same text, no problems, not lossy."""
    raw = b"".join(pieces)
    fast = decode_header(raw, keep_controls=keep_controls)
    general = _decode_unfolded(unfold(raw), keep_controls)
    assert (fast.text, fast.problems, fast.lossy) == (general.text, general.problems, general.lossy)


_FOLDING = re.compile(rb"\r?\n(?=[ \t])")
_BREAKS = re.compile(rb"[\r\n]+")


@settings(max_examples=300)
@given(st.lists(st.sampled_from([b"a", b" ", b"\t", b"\r", b"\n", b"\r\n ", b"\xe3"]), max_size=12))
def test_unfold_single_lines_and_folded_ones_alike(pieces: list[bytes]) -> None:
    """The shortcut for values without line breaks gives what the RFC 5322 rule gives."""
    raw = b"".join(pieces)
    assert unfold(raw) == _BREAKS.sub(b" ", _FOLDING.sub(b"", raw)).strip(b" \t\r\n")


def test_surrogate_escaped_strings_from_the_stdlib_are_read_as_bytes() -> None:
    assert decode_header_text("鈴木".encode("cp932").decode("ascii", "surrogateescape")) == "鈴木"


def test_addresses_with_encoded_quoted_raw_and_grouped_names() -> None:
    raw = (
        b'"' + word("佐藤".encode(), "UTF-8") + b'" <sato@example.jp>, bob@example.org (Bob), '
        b"team: c@example.org;, " + "鈴木 花子".encode("cp932") + b" <h@example.jp>"
    )
    assert parse_addresses(raw) == [
        Mailbox("佐藤", "sato@example.jp"),
        Mailbox("Bob", "bob@example.org"),
        Mailbox("", "c@example.org"),
        Mailbox("鈴木 花子", "h@example.jp"),
    ]
    assert parse_addresses(b"Whomever") == [Mailbox("Whomever", "")]


def test_rfc2231_segments_are_joined_as_bytes_then_decoded_once() -> None:
    # 会議 in JIS, split in the middle of the escape sequence that starts it.
    value = b"attachment; filename*0*=iso-2022-jp''%1B%24; filename*1*=B2q5D%1B%28B.txt"
    assert parse_value(value).params["filename"] == "会議.txt"


def test_rfc2047_in_quotes_and_filename_star_win_over_name() -> None:
    parsed = parse_value(b'attachment; filename="' + word("資料.pdf".encode(), "UTF-8") + b'"')
    assert parsed.params["filename"] == "資料.pdf"
    both = parse_value(b"attachment; filename=plain.txt; filename*=UTF-8''%E8%B3%87.txt")
    assert both.params["filename"] == "資.txt"


def test_raw_shift_jis_with_0x5c_trail_bytes_survives_quoting() -> None:
    name = "表示ソフト機能一覧①.txt"
    value = b'attachment; filename="' + name.encode("cp932") + b'"'
    assert parse_value(value).params["filename"] == name


def test_missing_semicolon_before_a_parameter_is_forgiven() -> None:
    parsed = parse_value(b'multipart/mixed\r\n\tboundary="b1"')
    assert parsed.raw["boundary"] == b"b1" and parsed.problems


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../../../etc/passwd", "passwd"),
        ("C:\\Windows\\evil.dll", "evil.dll"),
        ("invoice\u202etxt.exe", "invoicetxt.exe"),
        ("a\x07b\x1bc.txt", "abc.txt"),
        ("CON.txt", "_CON.txt"),
        ("", "attachment"),
        ("会議資料①.txt", "会議資料①.txt"),
    ],
)
def test_safe_filename(name: str, safe: str) -> None:
    assert safe_filename(name) == safe


def test_safe_filename_keeps_the_extension_of_long_names() -> None:
    safe = safe_filename("長" * 300 + ".pdf")
    assert safe.endswith(".pdf") and len(safe.encode()) <= 200
