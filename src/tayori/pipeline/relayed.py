"""Who handed a message to a trusted relay: the first untrusted hop of its Received chain.

Mail through our backup MX or a filtering front end arrives from their address, so SPF on
the connection would judge the relay. The relay recorded who connected to it in the
Received field it added on top; that field is as trustworthy as the relay itself (SpamAssassin's
"last untrusted relay"). Fields further down were written by hosts we do not trust, so the
walk stops at the first hop outside the trusted networks, and at any field it cannot read:
better no SPF result than one about an address a sender made up.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32

MAX_HOPS = 5
"""Trusted hops followed down the chain (relay behind relay); more is a misconfiguration."""

_FROM = re.compile(r"^from\s+(?P<helo>\S+)(?P<rest>.*?)(?:\sby\s|;|$)", re.IGNORECASE)
_LITERAL = re.compile(r"\[(?:IPv6:)?(?P<ip>[0-9A-Fa-f:.]+)\]")
_HELO = re.compile(r"\bhelo=(?P<helo>[^\s)]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RelayedClient:
    ip: str
    helo: str


def _hop(value: str) -> RelayedClient | None:
    """The connecting host of one Received field, as Postfix, Exim, Sendmail and Tayori
    write it: `from HELO (NAME [IP])`, `from NAME ([IP] helo=HELO)`, `from [IP] (helo=HELO)`."""
    text = " ".join(value.split())
    match = _FROM.match(text)
    if match is None:
        return None
    helo, rest = match.group("helo"), match.group("rest")
    literal = _LITERAL.search(helo + " " + rest)
    if literal is None:
        return None
    try:
        address = ipaddress.ip_address(literal.group("ip"))
    except ValueError:
        return None
    named = _HELO.search(rest)
    if named is not None:
        helo = named.group("helo")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return RelayedClient(str(address), helo.strip("[]") if helo.startswith("[") else helo)


def relayed_client(message: bytes, trusted: Callable[[str], object | None]) -> RelayedClient | None:
    """The first host outside the trusted networks that the trusted relays recorded, or None
    when the chain cannot be read that far."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(message)
    for value in (headers.get_all("Received") or [])[:MAX_HOPS]:
        hop = _hop(str(value))
        if hop is None:
            return None
        if trusted(hop.ip) is None:
            return hop
    return None
