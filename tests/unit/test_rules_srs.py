"""SRS0 rewriting of forwarded senders (round trip, forgery, expiry) and loop detection."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tayori.rules.srs import (
    KEY_FILE,
    Srs,
    SrsError,
    forwarding_loop,
    is_srs,
    load_or_create_key,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SRS = Srs(b"k" * 32, "fwd.example.jp")


@pytest.mark.parametrize(
    "sender", ["alice@example.com", "Bob.Smith+tag@Sub.Example.org", "a=b@x.test", "山田@例え.jp"]
)
def test_round_trip(sender: str) -> None:
    rewritten = SRS.encode(sender, NOW)
    assert rewritten.startswith("SRS0=")
    assert rewritten.endswith("@fwd.example.jp")
    assert is_srs(rewritten)
    assert SRS.decode(rewritten, NOW + timedelta(days=3)) == sender


def test_lowercased_by_a_remote_server_still_decodes() -> None:
    rewritten = SRS.encode("Alice@Example.com", NOW)
    assert SRS.decode(rewritten.lower(), NOW).lower() == "alice@example.com"


def test_null_sender_is_not_rewritten() -> None:
    assert SRS.encode("", NOW) == ""


def test_forged_or_foreign_addresses_are_refused() -> None:
    rewritten = SRS.encode("alice@example.com", NOW)
    local = rewritten.split("@")[0]
    tampered = local.replace("alice", "mallory") + "@fwd.example.jp"
    with pytest.raises(SrsError, match="wrong hash"):
        SRS.decode(tampered, NOW)
    with pytest.raises(SrsError, match="wrong hash"):
        Srs(b"other-key" * 4, "fwd.example.jp").decode(rewritten, NOW)
    with pytest.raises(SrsError, match="not an SRS0"):
        SRS.decode("alice@fwd.example.jp", NOW)
    assert not is_srs("alice@fwd.example.jp")


def test_expired_after_max_age() -> None:
    rewritten = SRS.encode("alice@example.com", NOW)
    assert SRS.decode(rewritten, NOW + timedelta(days=21)) == "alice@example.com"
    with pytest.raises(SrsError, match="expired"):
        SRS.decode(rewritten, NOW + timedelta(days=22))
    # A timestamp "from the future" (clock wrapped round, or made up) is refused too.
    with pytest.raises(SrsError, match="expired"):
        SRS.decode(rewritten, NOW - timedelta(days=2))


def test_unreadable_timestamp() -> None:
    rewritten = SRS.encode("alice@example.com", NOW)
    parts = rewritten.split("=")
    parts[2] = "!!"
    with pytest.raises(SrsError):
        SRS.decode("=".join(parts), NOW)


def test_not_an_address() -> None:
    with pytest.raises(SrsError, match="not an address that can be rewritten"):
        SRS.encode("nobody", NOW)


def test_key_created_once_private_and_reused(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path)
    assert len(key) == 32
    assert stat.S_IMODE(os.stat(tmp_path / KEY_FILE).st_mode) == 0o600
    assert load_or_create_key(tmp_path) == key
    (tmp_path / KEY_FILE).write_bytes(b"short")
    with pytest.raises(SrsError, match="fewer than 16 bytes"):
        load_or_create_key(tmp_path)


# --- loops --------------------------------------------------------------------------------

OURS = ["alice@example.jp"]


def test_our_delivered_to_means_a_loop() -> None:
    headers = (
        b"Received: from a\r\n\tby b\r\n"
        b"Delivered-To: <Alice@Example.JP>\r\n"
        b"Subject: hi\r\n\r\nDelivered-To: body@example.jp\r\n"
    )
    assert forwarding_loop(headers, OURS)
    assert not forwarding_loop(headers, ["bob@example.jp"])


def test_delivered_to_in_the_body_does_not_count() -> None:
    headers = b"Subject: hi\r\n\r\nDelivered-To: alice@example.jp\r\n"
    assert not forwarding_loop(headers, OURS)


def test_folded_delivered_to() -> None:
    assert forwarding_loop(b"Delivered-To:\n alice@example.jp\nSubject: x\n", OURS)


def test_hop_count() -> None:
    many = b"".join(b"Received: from h%d\r\n" % i for i in range(51))
    assert forwarding_loop(many, OURS)
    assert not forwarding_loop(many[: -len(b"Received: from h50\r\n")], OURS)
    assert forwarding_loop(b"Received: a\r\nReceived: b\r\n", OURS, max_hops=1)


def test_garbage_does_not_raise() -> None:
    assert not forwarding_loop(b"\xff\xfe no colon here\r\n\tcontinued\r\n", OURS)
    assert not forwarding_loop(b"", OURS)
