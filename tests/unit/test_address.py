"""Addresses as the service compares them: case-insensitive, with clear errors."""

from __future__ import annotations

import pytest

from tayori.core.address import Address, AddressError, canonical, normalise_domain, parse_address


@pytest.mark.parametrize(
    ("text", "local", "domain"),
    [
        ("bob@example.jp", "bob", "example.jp"),
        ("<bob@example.jp>", "bob", "example.jp"),
        ("  Bob.Smith@Example.JP.  ", "Bob.Smith", "example.jp"),
        ("first+tag@sub.example.jp", "first+tag", "sub.example.jp"),
        ('"john doe"@example.jp', '"john doe"', "example.jp"),
        ('"a@b"@example.jp', '"a@b"', "example.jp"),
        ("たろう@例え.jp", "たろう", "例え.jp"),
        ("x@xn--r8jz45g.jp", "x", "xn--r8jz45g.jp"),
    ],
)
def test_parse_address(text: str, local: str, domain: str) -> None:
    assert parse_address(text) == Address(local, domain)


def test_canonical_lowercases_both_parts_but_display_keeps_spelling() -> None:
    address = parse_address("Bob.Smith@EXAMPLE.jp")
    assert str(address) == "Bob.Smith@example.jp"
    assert address.canonical == "bob.smith@example.jp"
    assert canonical("<BOB@Example.JP>") == "bob@example.jp"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("bob", "expected local@domain"),
        ("@example.jp", "expected local@domain"),
        ("bob@", "expected local@domain"),
        ("<>", "expected local@domain"),
        ('"@example.jp', "part before @"),
        ("a..b@example.jp", "part before @"),
        (".a@example.jp", "part before @"),
        ("a.@example.jp", "part before @"),
        ("a b@example.jp", "part before @"),
        ("x" * 65 + "@example.jp", "longer than 64"),
        ("bob@localhost", "fully qualified"),
        ("bob@-bad.jp", "bad label '-bad'"),
        ("bob@a..jp", "bad label ''"),
        ("bob@under_score.jp", "bad label"),
    ],
)
def test_parse_address_names_the_problem(text: str, problem: str) -> None:
    with pytest.raises(AddressError) as caught:
        parse_address(text)
    assert problem in str(caught.value)


def test_address_error_is_a_value_error() -> None:
    assert issubclass(AddressError, ValueError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Example.JP", "example.jp"),
        ("example.jp.", "example.jp"),
        (" mail.example.jp ", "mail.example.jp"),
    ],
)
def test_normalise_domain(text: str, expected: str) -> None:
    assert normalise_domain(text) == expected


@pytest.mark.parametrize("text", ["", ".", "example", "a" * 64 + ".jp", "x." * 130 + "jp"])
def test_normalise_domain_rejects(text: str) -> None:
    with pytest.raises(AddressError):
        normalise_domain(text)
