"""Charset labels and the Japanese decoders (CP50220 family, cp932, EUC-JP, guessing)."""

from __future__ import annotations

import pytest

from tayori.mime.charsets import decode, decode_unlabelled, resolve
from tayori.mime.japanese import (
    decode_eucjp,
    decode_iso2022jp,
    encode_iso2022jp,
    guess_japanese,
    protect_raw_jis,
)

VENDOR = "①Ⅱ㈱髙﨑"


def cp50220(text: str) -> bytes:
    """ISO-2022-JP as Windows writes it: cp932 bytes shifted back to JIS between escapes."""
    out = bytearray()
    for char in text:
        if char.isascii():
            out += b"\x1b(B" + char.encode()
            continue
        lead, trail = char.encode("cp932")
        row = (lead - (0x70 if lead < 0xA0 else 0xB0)) * 2
        if trail < 0x9F:
            first, second = row - 1, trail - (0x1F if trail < 0x80 else 0x20)
        else:
            first, second = row, trail - 0x7E
        out += b"\x1b$B" + bytes((first, second))
    return bytes(out + b"\x1b(B")


@pytest.mark.parametrize(
    "label",
    [
        "Shift_JIS",
        "shift-jis",
        "x-sjis",
        "SJIS",
        "Windows-31J",
        "shft_jis",
        "MS932",
        "cp932",
        "shift_jis_2004",
        "Shift_JISX0213",
    ],
)
def test_every_shift_jis_label_decodes_as_cp932(label: str) -> None:
    assert resolve(label) == "cp932"
    assert decode(VENDOR.encode("cp932"), label).text == VENDOR


def test_cp50220_vendor_characters_decode_and_never_as_jis_x0213() -> None:
    text = decode_iso2022jp(cp50220("議題" + VENDOR))
    assert text == "議題" + VENDOR
    assert "郄" not in text and "\ufffd" not in text


@pytest.mark.parametrize("label", ["iso-2022-jp-2004", "ISO-2022-JP-3", "CP50221", "jis"])
def test_iso2022jp_family_labels_use_our_decoder(label: str) -> None:
    assert decode(cp50220("髙"), label).text == "髙"


def test_halfwidth_katakana_by_escape_and_by_shift_codes() -> None:
    assert decode_iso2022jp(b"\x1b(I6]F\x1b(B") == "ｶﾝﾆ"
    assert decode_iso2022jp(b"\x0e6]F\x0f!") == "ｶﾝﾆ!"


def test_wave_dash_is_shown_as_fullwidth_tilde_like_windows() -> None:
    assert decode_iso2022jp(b"\x1b$B!A\x1b(B") == "～"
    assert decode_eucjp(b"\xa1\xc1") == "～"
    assert encode_iso2022jp("～") == encode_iso2022jp("〜")


def test_eucjp_with_vendor_and_jis_x0212_characters() -> None:
    assert decode_eucjp(b"\xad\xa1\x8f\xb0\xa1\x8e\xb1") == "①丂ｱ"


def test_text_after_an_unterminated_jis_run_is_ascii_on_the_next_call() -> None:
    assert decode_iso2022jp(b'\x1b$B$"') == "あ"
    assert decode_iso2022jp(b" ok") == " ok"


def test_broken_bytes_become_replacement_characters_and_are_reported() -> None:
    decoded = decode(b"\x82", "shift_jis")
    assert decoded.text == "\ufffd" and decoded.lossy


@pytest.mark.parametrize("label", ["rot13", "base64", "zlib", "unicode_escape", "idna", "hex"])
def test_a_message_cannot_choose_a_non_text_codec(label: str) -> None:
    assert resolve(label) is None
    assert decode(b"uryyb", label).text == "uryyb"


def test_unknown_labels_are_flagged_and_guessed() -> None:
    decoded = decode("日本語".encode(), "x-klingon")
    assert decoded.text == "日本語" and not decoded.label_known


def test_unlabelled_bytes_prefer_utf8_then_the_more_japanese_reading() -> None:
    assert decode_unlabelled("生の8ビット".encode()).charset == "utf-8"
    assert decode_unlabelled("鈴木 花子".encode("cp932")).text == "鈴木 花子"
    assert decode_unlabelled("鈴木 花子".encode("euc_jp")).text == "鈴木 花子"
    assert guess_japanese(b"Fr\xf6sche") is None
    assert decode_unlabelled(b"Fr\xf6sche").text == "Fr\ufffdsche"


def test_raw_jis_in_structured_headers_is_protected_as_one_word() -> None:
    protected = protect_raw_jis(cp50220("山田") + b" " + cp50220("太郎") + b" <a@b>")
    assert protected.startswith(b"=?ISO-2022-JP?B?") and protected.endswith(b"?= <a@b>")
