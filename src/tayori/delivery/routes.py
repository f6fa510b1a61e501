"""Where mail for a recipient domain goes next: the transport map, or MX per RFC 5321 §5.

- `[outbound] transport`: the domain's own entry, else `*`, names the next hop `host:port`
  (a smarthost); its host is looked up as A/AAAA only (never MX), as Postfix does for
  `[host]:port`.
- Otherwise the domain's MX records, lowest preference first, each host's addresses IPv6
  first then IPv4 (the resolver's order), on `[outbound] port`. Hosts of EQUAL preference
  are tried in random order (RFC 5321 §5.1, to spread the load among them); a lower
  preference always comes strictly before a higher one.
- No MX records (NODATA): the domain itself is the mail host (implicit MX).
- Null MX (RFC 7505): the domain accepts no mail: bounce at once with `remote.null_mx`.
- NXDOMAIN, or mail hosts without any address: bounce. A DNS failure (`tempfail`) anywhere
  that leaves no usable host: defer, never bounce.

A *destination* names what connections are shared and counted for: the recipient domain
for MX delivery, the next hop for the transport map (so every domain sent through one
smarthost shares its connections and its concurrency limit).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass

from tayori.config.settings import HostPort, OutboundSettings
from tayori.core.reasons import reason
from tayori.dns.resolver import Mx, Resolver

__all__ = [
    "MAX_HOPS",
    "Hop",
    "Route",
    "RouteFailure",
    "mx_hosts_in_order",
    "next_hop",
    "resolve_route",
]

_SHUFFLER = random.SystemRandom()
"""Shuffles equal-preference MX hosts when the caller passes no `random.Random` of its own."""

MAX_HOPS = 10
"""Addresses tried per attempt at most (Postfix's smtp_mx_address_limit is 5; we allow a few
more since a dual-stack MX counts twice)."""


@dataclass(frozen=True, slots=True)
class Hop:
    """One address to connect to."""

    host: str
    """The mail host's name (or the address when configured by address): Remote-MTA."""
    address: str
    port: int

    def __str__(self) -> str:
        address = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.host}[{address}]:{self.port}"


@dataclass(frozen=True, slots=True)
class Route:
    destination: str
    hops: tuple[Hop, ...]
    """In the order to try them."""


@dataclass(frozen=True, slots=True)
class RouteFailure:
    """No hop to try: `permanent` bounces now, otherwise the recipients are deferred."""

    destination: str
    permanent: bool
    reason: str
    """Reason code of the outcome (`remote.null_mx`, `remote.rejected`, `remote.deferred`)."""
    reply: str
    """Our words, in the form of an SMTP reply, as the DSN and history show them."""


def next_hop(domain: str, settings: OutboundSettings) -> HostPort | None:
    """The transport map's entry for a domain: its own, else `*`, else None (use MX)."""
    transport = settings.transport
    return transport.get(domain.lower()) or transport.get("*")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _host_hops(resolver: Resolver, host: str, port: int) -> tuple[list[Hop], str]:
    """Addresses of one mail host, and its DNS status (`ok`, `nxdomain`, ...)."""
    if _is_address(host):
        return [Hop(host, host, port)], "ok"
    answer = await resolver.addresses(host)
    return [Hop(host, str(address), port) for address in answer.records], answer.status


def mx_hosts_in_order(records: Sequence[Mx], rng: random.Random | None = None) -> list[str]:
    """The exchanges to try: by preference, lowest first; those of equal preference
    shuffled with `rng` (RFC 5321 §5.1). A root exchange (`.`) is left out."""
    shuffler = rng if rng is not None else _SHUFFLER
    groups: dict[int, list[str]] = {}
    for record in records:
        if record.exchange != ".":
            groups.setdefault(record.preference, []).append(record.exchange)
    hosts: list[str] = []
    for preference in sorted(groups):
        group = groups[preference]
        if len(group) > 1:
            shuffler.shuffle(group)
        hosts += group
    return hosts


def _failure(destination: str, permanent: bool, code: str, reply: str) -> RouteFailure:
    return RouteFailure(destination, permanent, code, reply)


async def resolve_route(
    domain: str,
    resolver: Resolver,
    settings: OutboundSettings,
    *,
    rng: random.Random | None = None,
) -> Route | RouteFailure:
    """Where to deliver mail for `domain` now (see the module docstring). `rng` orders MX
    hosts of equal preference (default: the system's random source); tests pass a seeded
    `random.Random`."""
    domain = domain.lower().rstrip(".")
    relay = next_hop(domain, settings)
    if relay is not None:
        destination = str(relay)
        relay_hops, status = await _host_hops(resolver, relay.host, relay.port)
        if relay_hops:
            return Route(destination, tuple(relay_hops[:MAX_HOPS]))
        # A smarthost that does not resolve is our configuration's fault: never bounce.
        return _failure(
            destination,
            False,
            "remote.deferred",
            f"451 4.4.3 Next hop {relay.host} of the transport map does not resolve ({status})",
        )

    mx = await resolver.mx(domain)
    if mx.null_mx:
        return _failure(domain, True, "remote.null_mx", str(reason("remote.null_mx").reply))
    if mx.status == "tempfail":
        return _failure(
            domain,
            False,
            "remote.deferred",
            f"451 4.4.3 Host or domain name lookup failed: MX of {domain}: temporary DNS failure",
        )
    if mx.status == "nxdomain":
        return _failure(
            domain,
            True,
            "remote.rejected",
            f"550 5.1.2 Host or domain name not found: {domain} does not exist (NXDOMAIN)",
        )

    hosts = mx_hosts_in_order(mx.records, rng)
    if mx.status == "nodata":
        hosts = [domain]  # RFC 5321 §5.1 implicit MX
    hops: list[Hop] = []
    statuses: list[str] = []
    for host in hosts:
        found, status = await _host_hops(resolver, host, settings.port)
        statuses.append(status)
        hops += [hop for hop in found if hop not in hops]
        if len(hops) >= MAX_HOPS:
            break
    if hops:
        return Route(domain, tuple(hops[:MAX_HOPS]))
    names = ", ".join(hosts)
    if "tempfail" in statuses:
        return _failure(
            domain,
            False,
            "remote.deferred",
            f"451 4.4.3 Host or domain name lookup failed: addresses of {names}: temporary "
            "DNS failure",
        )
    if mx.status == "nodata":
        return _failure(
            domain,
            True,
            "remote.rejected",
            f"550 5.1.2 Host or domain name not found: {domain} has no MX and no address",
        )
    return _failure(
        domain,
        True,
        "remote.rejected",
        f"550 5.4.4 Unable to route: the mail hosts of {domain} ({names}) have no address",
    )
