"""DNS blocklists (RFC 5782): which name to ask, and what the answer means.

A DNSBL is asked with an A query for the client address written backwards under the list's
zone. The answer is a code in 127.0.0.0/8 saying why the address is listed, NXDOMAIN when it
is not. Lists also use answers to say "I will not answer you" (Spamhaus returns 127.255.255.x
to resolvers that are refused or over quota, URIBL/SURBL 127.0.0.1); reading those as listings
would reject every client at once, so they are told apart, as are answers outside 127/8 (a
lapsed list's domain that now resolves everything).

The name and answer functions are pure; `lookup` puts them together over a `Resolver`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from typing import Literal

from tayori.dns.resolver import DnsAnswer, Resolver

DnsblStatus = Literal["listed", "not_listed", "refused", "invalid", "tempfail"]
"""`listed`: the list names the address. `not_listed`: NXDOMAIN (or NODATA). `refused`: the
list declines to answer us (our resolver is blocked or over quota): no verdict, and an admin
should be told. `invalid`: an answer no list gives (outside 127.0.0.0/8): no verdict.
`tempfail`: DNS failed; no verdict."""

_LOOPBACK = IPv4Network("127.0.0.0/8")
_REFUSAL_CODES = IPv4Network("127.255.255.0/24")
_REFUSAL_SINGLE = IPv4Address("127.0.0.1")
"""RFC 5782 §5 forbids listing 127.0.0.1 (the test entry is 127.0.0.2), and URIBL and SURBL
answer it to refused resolvers."""


@dataclass(frozen=True, slots=True)
class DnsblResult:
    """What one list says about one address."""

    status: DnsblStatus
    codes: tuple[IPv4Address, ...] = ()
    """The A records answered, sorted: the listing codes (e.g. 127.0.0.2, 127.0.0.4 for two
    sub-lists of a combined zone), or the refusal code."""
    ttl: int = 0
    """How long this result may be reused (the DNS answer's TTL)."""
    reason: str = ""
    """The list's TXT text for a listing (usually a URL explaining the remedy), if any."""

    @property
    def listed(self) -> bool:
        return self.status == "listed"


def _address(ip: str | IPv4Address | IPv6Address) -> IPv4Address | IPv6Address:
    address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        # A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; lists know them as IPv4.
        return address.ipv4_mapped
    return address


def reversed_address(ip: str | IPv4Address | IPv6Address) -> str:
    """The label sequence for `ip` under a list's zone: IPv4 octets reversed (`4.3.2.1`),
    IPv6 as its 32 nibbles reversed (RFC 5782 §2.4). IPv4-mapped IPv6 counts as IPv4; a
    scope (`%eth0`) is dropped. Raises ValueError for something that is not an address."""
    address = _address(ip)
    if isinstance(address, IPv4Address):
        return ".".join(reversed(str(address).split(".")))
    return ".".join(reversed(address.packed.hex()))


def query_name(ip: str | IPv4Address | IPv6Address, zone: str) -> str:
    """The name to ask list `zone` about `ip`, e.g. `2.0.0.127.zen.spamhaus.org`."""
    zone_name = zone.strip().strip(".")
    if not zone_name:
        raise ValueError("a DNSBL zone name is required")
    return f"{reversed_address(ip)}.{zone_name}"


def interpret(answer: DnsAnswer[IPv4Address]) -> DnsblResult:
    """What the A answer for a `query_name` means. A refusal code anywhere in the answer wins
    over listing codes beside it: the list is telling us its answers are not to be trusted."""
    if answer.status == "tempfail":
        return DnsblResult("tempfail")
    if not answer.ok:
        return DnsblResult("not_listed", ttl=answer.ttl)
    codes = tuple(sorted(answer.records))
    if any(code in _REFUSAL_CODES or code == _REFUSAL_SINGLE for code in codes):
        return DnsblResult("refused", codes, answer.ttl)
    if any(code not in _LOOPBACK for code in codes):
        return DnsblResult("invalid", codes, answer.ttl)
    return DnsblResult("listed", codes, answer.ttl)


async def lookup(resolver: Resolver, ip: str | IPv4Address | IPv6Address, zone: str) -> DnsblResult:
    """Ask list `zone` about `ip`; for a listing also fetch its TXT reason (best effort: a
    failed TXT lookup leaves `reason` empty and the listing stands)."""
    name = query_name(ip, zone)
    result = interpret(await resolver.a(name))
    if not result.listed:
        return result
    txt = await resolver.txt(name)
    reason = " ".join(txt.records) if txt.ok else ""
    return DnsblResult(result.status, result.codes, result.ttl, reason)
