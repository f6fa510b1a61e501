"""A message parsed for one reader is reused by the next reader of equal bytes."""

from __future__ import annotations

from tayori.mime import parse_message
from tayori.mime.recent import ENTRIES, LARGEST, recently_parsed
from tayori.spam.tokens import tokenize


def _message(n: int, body: bytes = b"hello") -> bytes:
    return f"From: a@b.test\r\nSubject: m{n}\r\n\r\n".encode() + body + b"\r\n"


def test_equal_bytes_share_one_parse_and_it_equals_a_fresh_one() -> None:
    raw = _message(1)
    first = recently_parsed(raw)
    assert recently_parsed(bytes(bytearray(raw))) is first  # equal bytes, another object
    assert first.subject == parse_message(raw).subject == "m1"
    assert recently_parsed(_message(2)) is not first


def test_only_the_last_few_and_only_small_messages_are_kept() -> None:
    first = recently_parsed(_message(100))
    for n in range(101, 101 + ENTRIES):
        recently_parsed(_message(n))
    assert recently_parsed(_message(100)) is not first
    big = _message(3, b"x" * LARGEST)
    assert recently_parsed(big) is not recently_parsed(big)


def test_readers_get_the_same_answer_through_the_shared_parse() -> None:
    raw = _message(4, "会議の資料".encode())
    assert tokenize(raw) == tokenize(bytes(bytearray(raw)))
