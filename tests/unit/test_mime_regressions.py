"""Inputs that once made the MIME layer raise, found by the atheris harness
(tests/fuzz/fuzz_mime.py) or by reading the code after a fuzz crash. Each is read the way the
harness reads a message, so a regression fails here without running the fuzzer."""

from __future__ import annotations

import unicodedata

import pytest

from tayori.mime import Mailbox, decode_header_text, parse_message, parse_tnef
from tayori.mime.charsets import decode
from tayori.mime.compose import Draft, compose
from tayori.mime.params import parse_value


def read_like_the_harness(data: bytes) -> list[object]:
    """What tests/fuzz/fuzz_mime.py does with every input."""
    message = parse_message(data)
    read: list[object] = [message.subject, message.from_, message.to, message.text]
    read.append(message.html_sanitized())
    for attachment in message.attachments:
        read += [attachment.digest(), attachment.tnef()]
    for inner in message.attached_messages():
        read.append(inner.text)
    read += [message.defects, decode_header_text(data[:2000]), parse_tnef(data).names]
    return read


def has_surrogates(text: str) -> bool:
    return any(unicodedata.category(char) == "Cs" for char in text)


# atheris, -seed=2, after ~100,000 executions: UTF-7 (`+ADtent/plainAD4-`) decodes to a lone
# surrogate, and nh3 (Rust) cannot take a str holding one: UnicodeEncodeError in
# html_sanitized().
FUZZ_CRASH_UTF7_SURROGATE_HTML = (
    b"Date: 01 Jan 2001 00:01+0000\nFrom: Stress Test <stress@examp"
    b"le.ne\r\nContent-Type: text/html; charset=utf-7\r\n\r\n+ADw-script"
    b"+AD4-alert(1)+ADtent/plainAD4-\r\nxt/plain\nbar\n\n--foo\nConten1\n"
    b"Type: textom:Fro: i@Fmz ex\x00\x00\x00m\x00\x00\x00\x008/p></body></html>\n\n--f\xbf\xbf\xbf"
    b"\xbf\xbf\xbf\xbf\xbf\xbf\xbfcript+AD4-a\xbf\xbf\xbf\xbf\xbf\xbf\xbf\xbf\xbf\xbf\xbf\xbf\xbfoo--"
)

# The same defect, atheris -seed=7 on the unfixed code after ~158,000 executions
# (`+tiDern` decodes to U+DEAE).
FUZZ_CRASH_UTF7_SURROGATE_HTML_2 = (
    b"From: Stress Tess-53@ixample.net>\r\nMIME-Vern: 1.0\r\nContent-T"
    b"ype: text/html; charset=utf-7\r\n\r\n+ADw-scrAp+tiDern: 1.0\r\nCon"
    b"tent-Type: text/html; charset=utf-7\r\n\r\n+ADw-script+AD4,alert"
    b"\n"
)

CRASHING_INPUTS = {
    "fuzz-utf7-surrogate-html": FUZZ_CRASH_UTF7_SURROGATE_HTML,
    "fuzz-utf7-surrogate-html-2": FUZZ_CRASH_UTF7_SURROGATE_HTML_2,
    "utf7-surrogate-html": b"Content-Type: text/html; charset=utf-7\r\n\r\n<p>+2D0-</p>",
    "utf7-surrogate-text": b"Content-Type: text/plain; charset=utf-7\r\n\r\na+2D0-b",
    "utf7-surrogate-subject": b"Subject: =?utf-7?B?KzJEMC0=?=\r\n\r\n",
    "utf7-surrogate-filename": (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Disposition: attachment; filename*=utf-7''%2B2D0-.txt\r\n\r\nx\r\n--b--\r\n"
    ),
    # A parameter section number over 4,300 digits: int() raised ValueError.
    "rfc2231-huge-section-number": (
        b"Content-Type: text/plain; name*" + b"1" * 5000 + b"*=utf-8''x\r\n\r\nhi"
    ),
    "rfc2231-huge-section-number-disposition": (
        b"Content-Disposition: attachment; filename*" + b"9" * 4301 + b"=x\r\n\r\nhi"
    ),
}


@pytest.mark.parametrize("data", CRASHING_INPUTS.values(), ids=CRASHING_INPUTS.keys())
def test_crashing_input_is_read_without_raising(data: bytes) -> None:
    read_like_the_harness(data)
    message = parse_message(data)
    assert message.raw == data
    for text in (message.subject, message.text, message.html_sanitized() or ""):
        assert not has_surrogates(text)
    for attachment in message.attachments:
        assert not has_surrogates(attachment.filename or "")


def test_utf7_lone_surrogates_become_replacement_characters() -> None:
    decoded = decode(b"a+2D0-b", "utf-7")
    assert decoded.text == "a\ufffdb"
    assert decoded.lossy
    assert decode(b"+ZeVnLIqe-", "utf-7").text == "日本語"  # valid UTF-7 is untouched


def test_utf7_lone_surrogate_html_is_sanitised() -> None:
    data = b"Content-Type: text/html; charset=utf-7\r\n\r\n<p>a+2D0-b</p>"
    assert parse_message(data).html_sanitized() == "<p>a\ufffdb</p>"


def test_huge_rfc2231_section_number_is_a_plain_parameter() -> None:
    parsed = parse_value(b"attachment; filename*" + b"1" * 5000 + b"=x; name*0=a; name*1=b")
    assert parsed.params["name"] == "ab"
    assert parsed.params["filename*" + "1" * 5000] == "x"


def test_header_text_given_as_str_with_lone_surrogates() -> None:
    # Only U+DC80-U+DCFF escape bytes; any other surrogate used to raise UnicodeEncodeError.
    assert decode_header_text("a\ud800b\udc41c") == "a\ufffdb\ufffdc"
    assert decode_header_text("=?utf-8?B?44GC?= \udce3\udc81\udc82") == "あ あ"


def test_legacy_compose_checks_extra_header_values_too() -> None:
    # An extra header value outside JIS X 0208 used to raise ValueError in legacy mode.
    raw = compose(
        Draft(
            from_=Mailbox("山田", "a@example.jp"),
            to=[Mailbox("", "b@example.jp")],
            subject="会議",
            text="本日",
            extra_headers=[("X-Note", "①")],
            legacy_japanese=True,
        )
    )
    assert b"charset=UTF-8" in raw
    message = parse_message(raw)
    assert (message.subject, message.text) == ("会議", "本日")


def test_legacy_compose_with_escape_in_text_goes_out_as_utf8() -> None:
    for text in ("\x1b", '\x1b$B$"\x1b(B', "a\x0eb\x0fc"):
        raw = compose(
            Draft(
                from_=Mailbox("", "a@example.jp"),
                to=[Mailbox("", "b@example.jp")],
                subject="s",
                text=text,
                legacy_japanese=True,
            )
        )
        assert b"ISO-2022-JP" not in raw
        if "\x1b" in text:  # us-ascii with ESC would be sniffed as ISO-2022-JP
            assert b"us-ascii" not in raw
        assert parse_message(raw).text == text
