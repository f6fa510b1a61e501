"""SMTP DATA read in pieces (DataCollector) gives what a line-by-line reader gives: the same
end of data, the same message, the same size verdict, wherever the pieces are cut."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from tayori.protocols.dotstuff import TERMINATOR, DataCollector


def line_by_line(stream: bytes, limit: int | None) -> tuple[bytes, bool, bytes] | None:
    """The reference: RFC 5321 as aiosmtpd reads it. Lines end at CRLF only; a line that is
    just "." ends DATA; a leading dot is removed. (message, over the limit, what follows),
    or None when the stream never ends DATA."""
    lines: list[bytes] = []
    position = 0
    size = 0
    while True:
        end = stream.find(b"\r\n", position)
        if end < 0:
            return None
        line = stream[position : end + 2]
        position = end + 2
        if line == TERMINATOR:
            break
        size += len(line)
        lines.append(line[1:] if line.startswith(b".") else line)
    return b"".join(lines), bool(limit) and size > limit, stream[position:]


def pieces(stream: bytes) -> list[bytes]:
    """What StreamReader.readuntil(b".\\r\\n") returns, piece after piece."""
    return [match.group(0) for match in re.finditer(rb"(?s).*?\.\r\n", stream)]


def collect(stream: bytes, limit: int | None) -> tuple[bytes, bool, bytes] | None:
    collector = DataCollector(limit)
    used = 0
    for piece in pieces(stream):
        used += len(piece)
        if collector.feed(piece):
            return (
                collector.content() if not collector.overflowed else b"",
                collector.overflowed,
                stream[used:],
            )
    return None


# Lines built from the bytes that matter here, so that dots, CRs and LFs meet often.
_line = st.lists(st.sampled_from([b".", b"\r", b"\n", b"a", b"\r\n", b".\r\n"]), max_size=8)
_stream = st.lists(_line.map(b"".join), max_size=12).map(b"".join)


@settings(max_examples=600, deadline=None)
@given(_stream, st.sampled_from([None, 0, 5, 20, 1000]))
def test_pieces_agree_with_line_by_line_reading(stream: bytes, limit: int | None) -> None:
    expected = line_by_line(stream, limit)
    got = collect(stream, limit)
    if expected is not None and expected[1]:
        expected = (b"", True, expected[2])
    assert got == expected


def test_only_crlf_dot_crlf_ends_data() -> None:
    smuggled = b"Subject: x\r\n\r\nbody\n.\nMAIL FROM:<e@x>\r\nmore\r.\r\nend\n.\r\nlast\r\n.\r\n"
    assert collect(smuggled, None) == (smuggled[: -len(TERMINATOR)], False, b"")


def test_dot_stuffing_is_undone_and_an_empty_message_is_empty() -> None:
    assert collect(b"..first\r\nx\r\n..\r\n...y\r\n.\r\nQUIT\r\n", None) == (
        b".first\r\nx\r\n.\r\n..y\r\n",
        False,
        b"QUIT\r\n",
    )
    assert collect(b".\r\nRSET\r\n", None) == (b"", False, b"RSET\r\n")


def test_the_terminator_split_from_its_crlf_still_ends_data() -> None:
    """The CRLF before the dot came with the previous piece."""
    collector = DataCollector(None)
    assert not collector.feed(b"a sentence.\r\n")
    assert collector.feed(b".\r\n")
    assert collector.content() == b"a sentence.\r\n"


def test_over_the_limit_keeps_nothing_and_still_finds_the_end() -> None:
    collector = DataCollector(10)
    assert not collector.feed(b"0123456789 and more.\r\n")
    assert collector.overflowed
    # A stretch with no ".\r\n" within the reader's limit: StreamReader hands it over but
    # keeps its last two bytes, so the terminator's CRLF may be split across the cut.
    collector.drop(b"x" * 100 + b"\r")
    assert collector.feed(b"\n.\r\n")
    assert collector.overflowed
