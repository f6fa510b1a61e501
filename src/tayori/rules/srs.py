"""Sender Rewriting Scheme (SRS0) for forwarded mail, and forwarding-loop detection.

A forwarded copy leaves our servers with the original sender's address as MAIL FROM would
fail SPF at the destination (our IP is not in the sender's record). So the envelope sender
is rewritten to an address of ours that encodes the original:

    SRS0=HHHHHH=TT=orig-domain=orig-local@forwarding-domain

`TT` is the day (mod 1024, two base32 characters) and `HHHHHH` a truncated HMAC-SHA256 of
day, domain and local part under a secret, so a bounce to the SRS address is routed back
to the original sender only when we made that address, and only for `max_age_days`: nobody
can use us as an open relay for bounces by making up SRS addresses.

The hash and the day are base32 and compared without regard to case, because some servers
lowercase the local part of the address they bounce to (base64, as in libsrs2, would lose
bits to that). Only our own addresses are decoded, so interoperability with other SRS
implementations is not needed. Re-forwarding an address that is already SRS (SRS1) is not
done: it is encoded as an ordinary address. A long original local part can make the rewritten
one longer than RFC 5321's 64 octets; servers accept that in practice, as with every SRS.

Secret: the wiring reads it from `srs.key` in the data directory, generating 32 random bytes
on first use (`load_or_create_key`); every node of a cluster must share that file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tayori.core.errors import TayoriError

KEY_FILE = "srs.key"
HASH_LENGTH = 6
"""Base32 characters of HMAC kept: 30 bits, for addresses that live a few weeks."""
MAX_AGE_DAYS = 21
"""How long a bounce to a rewritten address is accepted (libsrs2's default)."""
_DAY_SECONDS = 86_400
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_SRS0 = re.compile(
    r"^SRS0[=+-](?P<hash>[^=]+)=(?P<day>[^=]{2})=(?P<domain>[^=]+)=(?P<local>.+)$",
    re.IGNORECASE,
)


class SrsError(TayoriError):
    """The address is not one of our SRS addresses, was forged, or has expired."""


@dataclass(frozen=True, slots=True)
class Srs:
    """Encoder and decoder for one secret and one forwarding domain."""

    secret: bytes
    domain: str
    """Our domain the rewritten addresses are at (the forwarding account's domain)."""
    max_age_days: int = MAX_AGE_DAYS

    def encode(self, sender: str, now: datetime) -> str:
        """The rewritten envelope sender. The null sender stays null (bounces are never
        rewritten: there is nobody to route a bounce of a bounce to)."""
        if not sender:
            return sender
        local, at, domain = sender.rpartition("@")
        if not at or not local or not domain:
            raise SrsError(f"{sender!r} is not an address that can be rewritten")
        day = _day_text(_day(now))
        digest = self._hash(day, domain, local)
        return f"SRS0={digest}={day}={domain}={local}@{self.domain}"

    def decode(self, address: str, now: datetime) -> str:
        """The original sender of a bounce sent to an address `encode` made.

        Raises SrsError when the address is not SRS0, its hash is wrong (forged or another
        secret) or it is older than `max_age_days`.
        """
        local, _, _ = address.rpartition("@")
        found = _SRS0.match(local)
        if found is None:
            raise SrsError(f"{address!r} is not an SRS0 address")
        day_text = found["day"].upper()
        digest = found["hash"].upper()
        domain, original_local = found["domain"], found["local"]
        expected = self._hash(day_text, domain, original_local)
        if not hmac.compare_digest(digest.encode(), expected.encode()):
            raise SrsError(f"{address!r} has a wrong hash (forged, or made with another key)")
        try:
            sent = _day_of(day_text)
        except ValueError:
            raise SrsError(f"{address!r} has an unreadable timestamp") from None
        age = (_day(now) - sent) % 1024
        if age > self.max_age_days:
            raise SrsError(f"{address!r} expired {age} days after forwarding")
        return f"{original_local}@{domain}"

    def _hash(self, day: str, domain: str, local: str) -> str:
        # Lowercased: the hash must survive a server lowercasing the bounce address.
        data = f"{day}\0{domain}\0{local}".lower().encode("utf-8")
        mac = hmac.new(self.secret, data, hashlib.sha256).digest()
        return base64.b32encode(mac).decode("ascii")[:HASH_LENGTH]


def is_srs(address: str) -> bool:
    """Whether the local part looks like an SRS address (ours or anyone's)."""
    local = address.rpartition("@")[0]
    return _SRS0.match(local) is not None or local.upper().startswith("SRS1")


def load_or_create_key(data_dir: Path) -> bytes:
    """The SRS secret from `data_dir/srs.key`, created (mode 0600, 32 random bytes) when
    absent. Created with O_EXCL so that two processes starting together agree on one key."""
    path = data_dir / KEY_FILE
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        descriptor = -1
    if descriptor < 0:
        key = path.read_bytes()
        if len(key) < 16:
            raise SrsError(f"{path} holds fewer than 16 bytes; remove it to make a new key")
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(descriptor, "wb") as file:
        file.write(key)
        file.flush()
        os.fsync(file.fileno())
    return key


def _day(now: datetime) -> int:
    return int(now.astimezone(UTC).timestamp()) // _DAY_SECONDS % 1024


def _day_text(day: int) -> str:
    return _B32[day >> 5] + _B32[day & 31]


def _day_of(text: str) -> int:
    high, low = _B32.index(text[0]), _B32.index(text[1])
    return high << 5 | low


# --- loops ----------------------------------------------------------------------------------

MAX_HOPS = 50
"""Received: headers beyond which a message is taken to be looping (Postfix's default)."""


def forwarding_loop(
    raw_headers: bytes, our_addresses: Iterable[str], *, max_hops: int = MAX_HOPS
) -> bool:
    """Whether forwarding this message would loop.

    True when a `Delivered-To:` header names one of `our_addresses` (we delivered it to
    that account before, so it came back round) or the message has more than `max_hops`
    `Received:` headers (a loop through servers that add no Delivered-To). `raw_headers` is
    the header block as received; the body, if passed, is not read.
    """
    ours = {address.strip().strip("<>").lower() for address in our_addresses}
    hops = 0
    for name, value in _headers(raw_headers):
        if name == "received":
            hops += 1
            if hops > max_hops:
                return True
        elif name == "delivered-to" and value.strip().strip("<>").lower() in ours:
            return True
    return False


def _headers(raw: bytes) -> Iterable[tuple[str, str]]:
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n")
    name: str | None = None
    value: list[str] = []
    for line in text.split("\n"):
        if line == "":
            break  # end of the header block
        if line[0] in " \t" and name is not None:
            value.append(line.strip())
            continue
        if name is not None:
            yield name, " ".join(value)
        head, colon, rest = line.partition(":")
        if colon:
            name, value = head.strip().lower(), [rest.strip()]
        else:
            name, value = None, []
    if name is not None:
        yield name, " ".join(value)
