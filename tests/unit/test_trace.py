from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from tayori.delivery.summary import summarise
from tayori.delivery.trace import (
    _QUEUE_ID_ALPHABET,
    Arrival,
    new_queue_id,
    normalise_line_endings,
    protocol_keyword,
    trace_headers,
)

ARRIVAL = Arrival(
    helo="mail.sender.test",
    client_ip="192.0.2.7",
    client_host="unknown",
    tls_version="TLSv1.3",
    tls_cipher="TLS_AES_256_GCM_SHA384",
    authenticated=False,
    smtputf8=False,
    extended=True,
    queue_id="ABC123",
    time=datetime(2026, 11, 27, 12, 0, tzinfo=UTC),
)


def test_normalise_line_endings() -> None:
    assert normalise_line_endings(b"a\nb\rc\r\nd") == b"a\r\nb\r\nc\r\nd"
    already = b"x\r\ny\r\n"
    assert normalise_line_endings(already) is already


@given(st.binary())
def test_normalised_has_only_crlf(data: bytes) -> None:
    out = normalise_line_endings(data)
    assert out.count(b"\r") == out.count(b"\n") == out.count(b"\r\n")
    assert normalise_line_endings(out) == out
    assert out.replace(b"\r\n", b"") == data.replace(b"\r\n", b"").replace(b"\r", b"").replace(
        b"\n", b""
    )


def test_trace_headers_for_one_recipient() -> None:
    text = trace_headers(ARRIVAL, "mx.example.test", "s@sender.test", "alice@example.test")
    lines = text.decode().split("\r\n")
    assert lines[0] == "Return-Path: <s@sender.test>"
    assert lines[1] == "Delivered-To: alice@example.test"
    assert lines[2] == "Received: from mail.sender.test (unknown [192.0.2.7])"
    assert "with ESMTPS id ABC123" in lines[3]
    assert "(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)" in lines[4]
    assert lines[5].startswith("\tfor <alice@example.test>; Fri, 27 Nov 2026 12:00:00 +0000")
    assert text.endswith(b"\r\n")


def test_hostile_helo_cannot_break_header() -> None:
    hostile = replace(ARRIVAL, helo="evil\r\nX-Injected: 1 (x)")
    text = trace_headers(hostile, "mx", "", "a@b.test").decode()
    assert "\r\nX-Injected" not in text
    assert text.startswith("Return-Path: <>\r\n")


def test_protocol_keywords() -> None:
    assert protocol_keyword(ARRIVAL) == "ESMTPS"
    plain = replace(ARRIVAL, tls_version=None, extended=False)
    assert protocol_keyword(plain) == "SMTP"
    utf8 = replace(ARRIVAL, smtputf8=True, authenticated=True)
    assert protocol_keyword(utf8) == "UTF8SMTPSA"


def test_summary_decodes_and_never_raises() -> None:
    raw = (
        b"From: =?UTF-8?B?5bGx55Sw?= <yamada@example.jp>\r\n"
        b"To: alice@example.test\r\n"
        b"Subject: =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\r\n"
        b"Message-ID: <m1@example.jp>\r\n\r\nbody\r\n"
    )
    summary = summarise(raw)
    assert summary.from_ == "山田 <yamada@example.jp>"
    assert summary.subject == "こんにちは"
    assert summary.message_id == "<m1@example.jp>"
    broken = summarise(b"Subject: \xff\xfe raw =?bogus?Q?x?=\r\n\r\n")
    assert "raw" in broken.subject
    # ISO-2022-JP with vendor characters (CP50220): ① and 髙 survive, as the MIME layer reads them.
    vendor = summarise(b"Subject: =?ISO-2022-JP?B?GyRCLSEbKEIbJEJ8YhsoQg==?=\r\n\r\n")
    assert vendor.subject == "①髙"
    assert summarise(b"").subject == ""
    assert summarise(b"Subject: a\x00b\x07c\r\n\r\n").subject == "a\ufffdb\ufffdc"


def test_queue_ids_are_twelve_characters_of_the_alphabet_and_do_not_repeat() -> None:
    ids = [new_queue_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 12 and set(i) <= set(_QUEUE_ID_ALPHABET) for i in ids)
    # Every character turns up in every position (no position stuck on a few values).
    for position in range(12):
        assert {i[position] for i in ids} == set(_QUEUE_ID_ALPHABET)
