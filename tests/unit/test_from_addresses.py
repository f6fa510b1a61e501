"""The From: addresses members' reject lists match, read through the MIME layer."""

from __future__ import annotations

import pytest

from tayori.pipeline.member_rules import from_addresses


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (b"From: a@example.test", ["a@example.test"]),
        (b"From: =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <yamada@example.jp>", ["yamada@example.jp"]),
        (
            b'From: "Doe, John" <john@example.test>, jane@example.test',
            ["john@example.test", "jane@example.test"],
        ),
        (b"From: a@one.test\r\nFrom: b@two.test", ["a@one.test", "b@two.test"]),  # both count
        (b"From: Someone (comment) <x@example.test>", ["x@example.test"]),
        (b"From: undisclosed", []),
        (b"Subject: no from", []),
        (b"From: =?utf-8?b?5bGx55Sw?= <\xe5\xb1\xb1@example.jp>", ["山@example.jp"]),
    ],
)
def test_from_addresses(headers: bytes, expected: list[str]) -> None:
    assert from_addresses(headers + b"\r\n\r\nbody\r\n") == expected
