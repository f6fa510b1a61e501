"""The SMTP client's sans-I/O parts: reply parsing in any chunking, EHLO keywords, command
lines and the DATA payload (line ends and dot-stuffing)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tayori.protocols.smtp_client import (
    MAX_LINE,
    ProtocolError,
    Reply,
    ReplyParser,
    data_payload,
    ehlo_keywords,
    mail_command,
    rcpt_command,
)

GROUP = (
    b"250 2.1.0 Ok\r\n"
    b"550-5.1.1 <gone@remote.test>: Recipient address rejected:\r\n"
    b"550 5.1.1 User unknown in virtual mailbox table\r\n"
    b"250 2.1.5 Ok\r\n"
    b"354 End data with <CR><LF>.<CR><LF>\r\n"
)
EXPECTED = [
    Reply(250, ("2.1.0 Ok",)),
    Reply(
        550,
        (
            "5.1.1 <gone@remote.test>: Recipient address rejected:",
            "5.1.1 User unknown in virtual mailbox table",
        ),
    ),
    Reply(250, ("2.1.5 Ok",)),
    Reply(354, ("End data with <CR><LF>.<CR><LF>",)),
]


def replies(parser: ReplyParser) -> list[Reply]:
    out: list[Reply] = []
    while (reply := parser.next_reply()) is not None:
        out.append(reply)
    return out


def test_several_replies_in_one_read_come_out_in_order() -> None:
    parser = ReplyParser()
    parser.feed(GROUP)
    assert replies(parser) == EXPECTED
    assert not parser.pending


def test_every_split_point_gives_the_same_replies() -> None:
    for cut in range(len(GROUP) + 1):
        parser = ReplyParser()
        parser.feed(GROUP[:cut])
        got = replies(parser)
        parser.feed(GROUP[cut:])
        assert got + replies(parser) == EXPECTED, cut


@given(st.lists(st.integers(min_value=0, max_value=len(GROUP)), max_size=12))
def test_any_chunking_gives_the_same_replies(cuts: list[int]) -> None:
    parser = ReplyParser()
    got: list[Reply] = []
    edges = [0, *sorted(cuts), len(GROUP)]
    for start, end in itertools.pairwise(edges):
        parser.feed(GROUP[start:end])
        got += replies(parser)
    assert got == EXPECTED


def test_a_reply_is_only_complete_at_its_last_line() -> None:
    parser = ReplyParser()
    parser.feed(b"250-mx.remote.test\r\n250-PIPELINING\r\n")
    assert parser.next_reply() is None
    assert parser.pending
    parser.feed(b"250 8BITMIME\r\n")
    reply = parser.next_reply()
    assert reply == Reply(250, ("mx.remote.test", "PIPELINING", "8BITMIME"))
    assert not parser.pending


def test_one_line_joins_lines_and_white_space_as_outcomes_quote_it() -> None:
    parser = ReplyParser()
    parser.feed(b"554-5.7.1 Service unavailable;\r\n554  5.7.1 blocked\tdue to poor reputation\r\n")
    reply = parser.next_reply()
    assert reply is not None
    assert reply.one_line() == "554 5.7.1 Service unavailable; 5.7.1 blocked due to poor reputation"
    assert reply.text == "5.7.1 Service unavailable;\n5.7.1 blocked\tdue to poor reputation"
    assert not reply.positive


def test_bare_lf_code_only_lines_and_8bit_text() -> None:
    parser = ReplyParser()
    parser.feed(b"250\n221 2.0.0 \xe3\x81\x95\xe3\x82\x88\xe3\x81\x86\xe3\x81\xaa\xe3\x82\x89\r\n")
    parser.feed(b"550 bad \xff byte\r\n")
    first, second, third = replies(parser)
    assert first == Reply(250, ("",))
    assert first.one_line() == "250"
    assert second.one_line() == "221 2.0.0 さようなら"
    assert third.one_line() == "550 bad \ufffd byte"


@pytest.mark.parametrize(
    "data",
    [b"hello\r\n", b"25 ok\r\n", b"250_ok\r\n", b"abc ok\r\n", b"650 ok\r\n", b"\r\n"],
)
def test_lines_that_are_not_replies_are_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        ReplyParser().feed(data)


def test_over_long_lines_and_endless_replies_are_refused() -> None:
    with pytest.raises(ProtocolError):
        ReplyParser().feed(b"250 " + b"x" * MAX_LINE)  # no line end in sight
    with pytest.raises(ProtocolError):
        ReplyParser().feed(b"250 " + b"x" * MAX_LINE + b"\r\n")
    parser = ReplyParser()
    with pytest.raises(ProtocolError):
        for _ in range(1000):
            parser.feed(b"250-" + b"x" * 100 + b"\r\n")


def test_clear_forgets_what_was_buffered() -> None:
    parser = ReplyParser()
    parser.feed(b"250 injected\r\n250-half")
    parser.clear()
    assert not parser.pending
    parser.feed(b"220 ready\r\n")
    assert replies(parser) == [Reply(220, ("ready",))]


def test_ehlo_keywords_skip_the_greeting_line() -> None:
    reply = Reply(
        250,
        ("mx.remote.test Hello", "pipelining", "SIZE 10240000", "8BITMIME", "AUTH PLAIN  LOGIN"),
    )
    assert ehlo_keywords(reply) == {
        "PIPELINING": "",
        "SIZE": "10240000",
        "8BITMIME": "",
        "AUTH": "PLAIN  LOGIN",
    }
    assert ehlo_keywords(Reply(250, ("only a greeting",))) == {}


def test_command_lines() -> None:
    assert mail_command("a@b.test") == b"MAIL FROM:<a@b.test>\r\n"
    assert mail_command("") == b"MAIL FROM:<>\r\n"
    assert (
        mail_command("山田@例え.jp", ["BODY=8BITMIME", "SMTPUTF8"])
        == "MAIL FROM:<山田@例え.jp> BODY=8BITMIME SMTPUTF8\r\n".encode()
    )
    assert rcpt_command("x@y.test") == b"RCPT TO:<x@y.test>\r\n"


@pytest.mark.parametrize(
    "address",
    ["a@b.test>\r\nRCPT TO:<c@d.test", "a@b.test\nDATA", "a@b.test> NOTIFY=NEVER", "a\0@b"],
)
def test_addresses_cannot_smuggle_commands_or_parameters(address: str) -> None:
    with pytest.raises(ValueError, match="command line"):
        mail_command(address)
    with pytest.raises(ValueError, match="command line"):
        rcpt_command(address)


@pytest.mark.parametrize(
    ("message", "payload"),
    [
        (b"Subject: x\r\n\r\nbody\r\n", b"Subject: x\r\n\r\nbody\r\n.\r\n"),
        (b".starts\r\n.\r\n..two\r\nmid.dle\r\n", b"..starts\r\n..\r\n...two\r\nmid.dle\r\n.\r\n"),
        (b"no final line end", b"no final line end\r\n.\r\n"),
        (b"a\nb\rc\r\n.d\n", b"a\r\nb\r\nc\r\n..d\r\n.\r\n"),
        (b"last line\r\n.", b"last line\r\n..\r\n.\r\n"),
        (b"", b".\r\n"),
        ("本文\r\n.日本\r\n".encode(), "本文\r\n..日本\r\n.\r\n".encode()),
    ],
    ids=[
        "plain",
        "leading-dots",
        "no-final-crlf",
        "bare-line-ends",
        "lone-dot-at-end",
        "empty",
        "8bit",
    ],
)
def test_data_payload_dot_stuffs_and_terminates(message: bytes, payload: bytes) -> None:
    assert data_payload(message) == payload


@given(st.binary(max_size=200))
def test_data_payload_reads_back_as_the_message(message: bytes) -> None:
    """What a server recovers (lines split at CRLF, one leading dot removed, up to the lone
    ".") is the message with its line ends made CRLF."""
    payload = data_payload(message)
    assert payload.endswith(b".\r\n")
    lines = payload.split(b"\r\n")
    end = lines.index(b".")
    assert end == len(lines) - 2
    recovered = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines[:end])
    normal = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if normal and not normal.endswith(b"\r\n"):
        normal += b"\r\n"
    assert recovered + (b"\r\n" if end else b"") == normal
