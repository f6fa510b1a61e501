"""Properties of the MIME layer over generated input: it never raises, never hangs, never
shows control characters in headers, and what we write reads back exactly."""

from __future__ import annotations

import string
import unicodedata

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tayori.mime import Mailbox, decode_header_text, parse_message
from tayori.mime.compose import AttachmentSpec, Draft, compose, encode_header_text
from tayori.mime.japanese import decode_iso2022jp, encode_iso2022jp

FAST = settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

_LINES = [
    b"Content-Type: multipart/mixed; boundary=b",
    b"Content-Type: multipart/alternative; boundary=c",
    b"Content-Type: message/rfc822",
    b"Content-Type: text/plain; charset=iso-2022-jp",
    b"Content-Type: text/html; charset=shift_jis",
    b"Content-Transfer-Encoding: base64",
    b"Content-Transfer-Encoding: quoted-printable",
    b"Content-Transfer-Encoding: x-uuencode",
    b"Content-Disposition: attachment; filename*0*=utf-8''%E3%81; filename*1*=%82",
    b"Subject: =?utf-8?B?44GC?= =?iso-2022-jp?B?GyRCJCIbKEI=?=",
    b'From: "x" <a@b>, (c)',
    b"--b",
    b"--b--",
    b"--c",
    b"--c--",
    b"",
    b"begin 644 f.bin",
    b"end",
    b'\x1b$B$"',
    b"=E3=81",
    b"SGVsbG8=",
    b"<p onclick=x>",
    b"\x00",
    b"\r",
    b"\xff\xfe",
    b"From x Tue Apr  2 10:00:00 2024",
]
mime_like = st.lists(st.sampled_from(_LINES) | st.binary(max_size=40), max_size=60).map(
    lambda lines: b"\r\n".join(lines)
)


def shows_no_controls(text: str) -> bool:
    return not any(unicodedata.category(char) in {"Cc", "Cs"} for char in text)


def read_everything(raw: bytes) -> None:
    message = parse_message(raw)
    assert message.raw == raw
    assert shows_no_controls(message.subject)
    assert message.text is not None
    message.html_sanitized()
    for attachment in message.attachments:
        attachment.digest()
        attachment.tnef()
    for inner in message.attached_messages():
        assert inner.text is not None
    assert all(d.code for d in message.defects)


@FAST
@given(st.binary(max_size=2000))
def test_any_bytes_parse(raw: bytes) -> None:
    read_everything(raw)


@FAST
@given(mime_like)
def test_mime_like_structures_parse(raw: bytes) -> None:
    read_everything(raw)


@FAST
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_header_decoding_never_raises_and_never_shows_controls(raw: bytes | str) -> None:
    assert shows_no_controls(decode_header_text(raw))


@FAST
@given(st.text(st.characters(blacklist_categories=["Cc", "Cs", "Zl", "Zp"]), max_size=200))
def test_header_encoding_round_trips(text: str) -> None:
    expected = " ".join(text.split())
    raw = f"Subject: {encode_header_text(text)}\r\n\r\n".encode()
    assert parse_message(raw).subject == expected


_CP932_CHARS = sorted(
    {bytes((a, b)).decode("cp932", "ignore") for a in range(0x81, 0xA0) for b in range(0x40, 0xFD)}
    - {""}
)


@FAST
@given(st.text(st.sampled_from(_CP932_CHARS) | st.sampled_from(string.ascii_letters), max_size=60))
def test_jis_x0208_text_round_trips_through_iso2022jp(text: str) -> None:
    encoded = encode_iso2022jp(text)
    if encoded is not None:  # NEC row 13 etc. are outside strict ISO-2022-JP
        decoded = decode_iso2022jp(encoded)
        assert encode_iso2022jp(decoded) == encoded


_NAME = st.text(
    st.characters(blacklist_categories=["Cc", "Cs", "Zl", "Zp", "Zs"]), min_size=1, max_size=40
)


@FAST
@given(_NAME, _NAME, st.text(max_size=300), st.binary(max_size=300), st.booleans())
# ESC (and SO/SI) would be read back as ISO-2022-JP shift codes: legacy mode must use UTF-8.
@example(name="0", filename="0", text="\x1b", data=b"", legacy=True)
@example(name="0", filename="0", text="a\x0eb\x0fc", data=b"", legacy=True)
@example(name="0", filename="0", text='\x1b$B$"\x1b(B', data=b"", legacy=True)
# JIS X 0201 Roman (the yen sign) and the JIS WAVE DASH do not read back as written.
@example(name="\u00a5", filename="0", text="\u00a5 \u203e", data=b"", legacy=True)
@example(name="\u301c", filename="\u301c", text="\u301c", data=b"", legacy=True)
def test_composed_messages_read_back_exactly(
    name: str, filename: str, text: str, data: bytes, legacy: bool
) -> None:
    raw = compose(
        Draft(
            from_=Mailbox(name, "a@example.jp"),
            to=[Mailbox("", "b@example.jp")],
            subject=name,
            text=text,
            attachments=[AttachmentSpec(filename, "application/octet-stream", data)],
            legacy_japanese=legacy,
        )
    )
    message = parse_message(raw)
    assert message.subject == " ".join(name.split())
    assert message.from_[0].name == " ".join(name.split()).strip()
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    assert message.text == normalised.strip("\n") or message.text == normalised.rstrip("\n")
    assert [(a.filename, a.content()) for a in message.attachments] == [(filename.strip(), data)]
