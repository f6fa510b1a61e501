"""The first untrusted hop behind a trusted relay, read from the Received fields the trusted
relays added (Postfix, Exim, Sendmail and Tayori spellings)."""

from __future__ import annotations

import ipaddress

import pytest

from tayori.pipeline.relayed import RelayedClient, relayed_client

TRUSTED = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8:ffff::/48")]


def trusted(ip: str) -> object | None:
    address = ipaddress.ip_address(ip)
    return next((n for n in TRUSTED if address in n), None)


def message(*received: str) -> bytes:
    head = "".join(f"Received: {value}\r\n" for value in received)
    return (head + "From: a@sender.test\r\nSubject: x\r\n\r\nbody\r\n").encode()


@pytest.mark.parametrize(
    ("received", "expected"),
    [
        (  # Postfix
            "from mail.sender.test (mail.sender.test [192.0.2.5])\r\n\tby backup.example.jp "
            "(Postfix) with ESMTPS id 4F1;\r\n\tFri, 27 Nov 2026 10:00:00 +0900",
            RelayedClient("192.0.2.5", "mail.sender.test"),
        ),
        (  # Postfix, client without reverse DNS, HELO differs
            "from helo.name (unknown [192.0.2.6]) by backup.example.jp (Postfix) id 1; date",
            RelayedClient("192.0.2.6", "helo.name"),
        ),
        (  # Exim
            "from mail.sender.test ([192.0.2.7] helo=mx1.sender.test) by front.example.jp "
            "with esmtps (Exim 4.96) id 1r; date",
            RelayedClient("192.0.2.7", "mx1.sender.test"),
        ),
        (  # Exim, no reverse DNS
            "from [192.0.2.8] (helo=box.sender.test) by front.example.jp with esmtp; date",
            RelayedClient("192.0.2.8", "box.sender.test"),
        ),
        (  # IPv6 literal, Sendmail style
            "from m.sender.test (m.sender.test [IPv6:2001:db8:1::25]) by relay.example.jp "
            "(8.17.1/8.17.1) with ESMTP id x; date",
            RelayedClient("2001:db8:1::25", "m.sender.test"),
        ),
        (  # Tayori's own
            "from mail.sender.test (mail.sender.test [192.0.2.9])\r\n\tby backup.example.jp "
            "(Tayori) with ESMTP id Q1\r\n\tfor <a@example.jp>; date",
            RelayedClient("192.0.2.9", "mail.sender.test"),
        ),
    ],
)
def test_the_hop_the_relay_recorded(received: str, expected: RelayedClient) -> None:
    assert relayed_client(message(received), trusted) == expected


def test_a_chain_of_trusted_relays_is_followed_to_the_first_untrusted_hop() -> None:
    found = relayed_client(
        message(
            "from backup.example.jp (backup.example.jp [10.1.2.3]) by front.example.jp; d",
            "from mail.sender.test (mail.sender.test [192.0.2.5]) by backup.example.jp; d",
            "from forged.test (forged.test [198.51.100.1]) by mail.sender.test; d",
        ),
        trusted,
    )
    assert found == RelayedClient("192.0.2.5", "mail.sender.test")


@pytest.mark.parametrize(
    "received",
    [
        [],
        ["by backup.example.jp with local; date"],  # no from clause
        ["from mail.sender.test (mail.sender.test) by backup.example.jp; date"],  # no address
        ["from x (x [300.1.2.3]) by backup.example.jp; date"],
        # Only trusted hops, then an unreadable one: never guess past it.
        ["from b (b [10.0.0.2]) by a; d", "from c (c) by b; d"],
    ],
)
def test_an_unreadable_chain_gives_no_client(received: list[str]) -> None:
    assert relayed_client(message(*received), trusted) is None


def test_only_fields_on_top_count() -> None:
    """A Received field further down, below an untrusted hop, was written by that hop."""
    found = relayed_client(
        message(
            "from mx.sender.test (mx.sender.test [192.0.2.5]) by backup.example.jp; d",
            "from x (x [10.9.9.9]) by mx.sender.test; d",
        ),
        trusted,
    )
    assert found == RelayedClient("192.0.2.5", "mx.sender.test")
