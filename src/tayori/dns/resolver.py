"""The one edge all DNS goes through, and its dnspython implementation.

Mail decisions need more than "found / not found": a sender domain that does not exist earns a
permanent `550`, one whose name servers are down only a `450`, and a domain that exists without
the record asked for (NODATA) is different again. So every lookup returns a `DnsAnswer` whose
`status` keeps those cases apart, instead of raising dnspython's exceptions at callers.

Tests point `DnsPythonResolver` at the loopback server in `tayori.testing.dns_server`, so the
code under test speaks real DNS; a fake only needs the few methods of `Resolver`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Generic, Literal, NamedTuple, Protocol, TypeVar, cast

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdatatype
import dns.resolver
import dns.reversename
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA

from tayori.config.settings import DnsSettings
from tayori.core.errors import ConfigError

T = TypeVar("T")

DnsStatus = Literal["ok", "nxdomain", "nodata", "tempfail"]
"""`ok`: records found. `nxdomain`: the name does not exist. `nodata`: the name exists but has
no records of the type asked for. `tempfail`: no usable answer now (timeout, SERVFAIL, network),
so a caller must not draw a permanent conclusion."""

DomainExistence = Literal["exists", "nxdomain", "null_mx", "tempfail"]
"""Answer to "can this domain send or receive mail?"; see `Resolver.domain_exists`."""

IPAddress = IPv4Address | IPv6Address


@dataclass(frozen=True, slots=True)
class DnsAnswer(Generic[T]):
    """The outcome of one lookup."""

    status: DnsStatus
    records: tuple[T, ...] = ()
    """Empty unless `status` is `ok`."""
    ttl: int = 0
    """Seconds the answer may be reused: the lowest TTL along the CNAME chain for `ok`, the
    negative-caching TTL (RFC 2308, from the SOA) for `nxdomain`/`nodata`, 0 for `tempfail`.
    From the cache, the time left."""
    detail: str = ""
    """Why a `tempfail` (or an invalid name) happened, for admins' logs; never shown to
    members as is."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Mx(NamedTuple):
    """One MX record. `exchange` is lower case without the final dot; the root is `.`."""

    preference: int
    exchange: str


@dataclass(frozen=True, slots=True)
class MxAnswer(DnsAnswer[Mx]):
    """MX records sorted by preference (then name, so the order is stable)."""

    @property
    def null_mx(self) -> bool:
        """RFC 7505: the domain says it accepts no mail (a single MX whose exchange is the
        root). Delivery must bounce at once and must not fall back to A/AAAA. The preference
        is not checked: a root exchange can never receive mail whatever its preference."""
        return self.ok and len(self.records) == 1 and self.records[0].exchange == "."


class Resolver(Protocol):
    """Every DNS question Tayori asks. Names are absolute (no search list); a name that cannot
    be a DNS name at all (empty, label too long) answers `nxdomain` with a `detail`."""

    async def mx(self, domain: str) -> MxAnswer:
        """MX records by preference; `null_mx` tells the RFC 7505 refusal apart."""
        ...

    async def a(self, name: str) -> DnsAnswer[IPv4Address]: ...

    async def aaaa(self, name: str) -> DnsAnswer[IPv6Address]: ...

    async def addresses(self, name: str) -> DnsAnswer[IPAddress]:
        """A and AAAA together (IPv6 first, as RFC 6724 prefers); `ok` when either family
        has records, a failed family left out and named in `detail`."""
        ...

    async def txt(self, name: str) -> DnsAnswer[str]:
        """One string per TXT record, its character-strings joined with nothing between
        (RFC 7208 §3.3, RFC 6376 §3.6.2.2), decoded as UTF-8 with undecodable bytes replaced
        (SPF, DKIM and DMARC records are ASCII; a mangled one then fails to parse)."""
        ...

    async def ptr(self, ip: str) -> DnsAnswer[str]:
        """Reverse names of an IPv4 or IPv6 address (lower case, no final dot).

        Raises ValueError when `ip` is not an address: callers pass socket addresses."""
        ...

    async def domain_exists(self, domain: str) -> DomainExistence:
        """Whether mail can be addressed to `domain` (issues 3 and 4, RFC 5321 §5.1): it
        has MX records, or failing those an A or AAAA record. `null_mx`: it publishes the
        RFC 7505 null MX. `nxdomain`: no such name, or a name with neither MX nor address.
        `tempfail`: DNS could not tell (answer `4xx`, never `5xx`)."""
        ...


Clock = Callable[[], float]
"""Monotonic seconds; injectable so that cache expiry is tested without sleeping."""

CACHE_SIZE = 10_000
"""Answers kept; the least recently used go first. Enough for the DNSBL and sender lookups
of a busy minute without letting a flood of unique names grow memory."""
MAX_POSITIVE_TTL = 86_400
"""Longest a positive answer is reused whatever its TTL says (a day, as common resolvers do)."""
MAX_NEGATIVE_TTL = 3_600
"""Longest NXDOMAIN/NODATA is reused (RFC 2308 suggests one to three hours), so a domain
created a moment ago is seen within the hour."""


class _Cache:
    """Answers by (name, type) until their TTL runs out; `tempfail` is never stored, so a
    transient failure is retried on the next lookup. Thread-safe, since one resolver may be
    shared by listeners running in different threads."""

    def __init__(self, size: int, clock: Clock) -> None:
        self._size = size
        self._clock = clock
        self._entries: OrderedDict[tuple[str, int], tuple[float, DnsAnswer[Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int]) -> DnsAnswer[Any] | None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, answer = entry
            if now >= expires:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
        return replace(answer, ttl=max(0, int(expires - now)))

    def put(self, key: tuple[str, int], answer: DnsAnswer[Any]) -> None:
        if self._size <= 0 or answer.status == "tempfail":
            return
        limit = MAX_POSITIVE_TTL if answer.ok else MAX_NEGATIVE_TTL
        lifetime = min(answer.ttl, limit)
        if lifetime <= 0:
            return
        with self._lock:
            self._entries[key] = (self._clock() + lifetime, answer)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


def _name_text(name: dns.name.Name) -> str:
    if name == dns.name.root:
        return "."
    return name.to_text(omit_final_dot=True).lower()


def _absolute_name(text: str) -> dns.name.Name | None:
    """`text` as an absolute name, or None when it cannot be one (so it cannot exist)."""
    stripped = text.strip()
    if stripped in ("", "."):
        return None
    try:
        return dns.name.from_text(stripped, origin=dns.name.root)
    except (dns.exception.DNSException, UnicodeError):
        return None


def _mx(rdata: dns.rdata.Rdata) -> Mx:
    mx = cast(MX, rdata)
    return Mx(mx.preference, _name_text(mx.exchange))


def _a(rdata: dns.rdata.Rdata) -> IPv4Address:
    return IPv4Address(cast(A, rdata).address)


def _aaaa(rdata: dns.rdata.Rdata) -> IPv6Address:
    return IPv6Address(cast(AAAA, rdata).address)


def _txt(rdata: dns.rdata.Rdata) -> str:
    return b"".join(cast(TXT, rdata).strings).decode("utf-8", "replace")


def _ptr(rdata: dns.rdata.Rdata) -> str:
    return _name_text(cast(PTR, rdata).target)


def _negative_ttl(error: dns.resolver.NXDOMAIN) -> int:
    """The NXDOMAIN response's negative TTL (SOA minimum, lowered by any CNAME on the way)."""
    responses: dict[dns.name.Name, dns.message.QueryMessage] = error.kwargs.get("responses", {})
    for response in responses.values():
        try:
            return int(response.resolve_chaining().minimum_ttl)
        except (dns.exception.DNSException, AttributeError):
            continue
    return 0


class DnsPythonResolver:
    """`Resolver` over dnspython's asyncio stub resolver.

    Asks `settings.nameservers` (IP addresses, each with its port) or, when that list is empty,
    the system's resolvers from /etc/resolv.conf. `settings.timeout` bounds a whole lookup;
    within it each server gets a share, so that a dead first server still leaves time for the
    next, and a lone server gets a second try (a lost UDP packet is not a failure). EDNS is on
    with a 1232-byte payload (DNS Flag Day 2020), so DKIM keys rarely need TCP; truncated
    answers are retried over TCP.
    """

    def __init__(
        self,
        settings: DnsSettings,
        *,
        cache_size: int = CACHE_SIZE,
        clock: Clock = time.monotonic,
    ) -> None:
        if settings.nameservers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            servers: list[str | dns.nameserver.Nameserver] = []
            for server in settings.nameservers:
                try:
                    address = ipaddress.ip_address(server.host)
                except ValueError:
                    raise ConfigError(
                        f"[dns] nameservers: {server} is not an IP address; name servers are "
                        "given by address, since finding them by name would need DNS"
                    ) from None
                servers.append(dns.nameserver.Do53Nameserver(str(address), server.port))
            resolver.nameservers = servers
        else:
            try:
                resolver = dns.asyncresolver.Resolver(configure=True)
            except dns.resolver.NoResolverConfiguration as error:
                raise ConfigError(
                    "[dns] nameservers is empty and the system resolver configuration "
                    f"(/etc/resolv.conf) gives none: {error}. Name the resolvers to use."
                ) from None
        share = max(2, len(resolver.nameservers))
        resolver.lifetime = settings.timeout
        resolver.timeout = settings.timeout / share
        resolver.use_edns(0, 0, 1232)
        resolver.cache = None  # ours below: dnspython's runs on wall-clock time tests can't move
        self._resolver = resolver
        self._cache = _Cache(cache_size, clock)

    async def mx(self, domain: str) -> MxAnswer:
        answer = await self._lookup(domain, dns.rdatatype.MX, _mx)
        records = tuple(sorted(answer.records))
        return MxAnswer(answer.status, records, answer.ttl, answer.detail)

    async def a(self, name: str) -> DnsAnswer[IPv4Address]:
        return await self._lookup(name, dns.rdatatype.A, _a)

    async def aaaa(self, name: str) -> DnsAnswer[IPv6Address]:
        return await self._lookup(name, dns.rdatatype.AAAA, _aaaa)

    async def addresses(self, name: str) -> DnsAnswer[IPAddress]:
        v4, v6 = await asyncio.gather(self.a(name), self.aaaa(name))
        return _combine_addresses(v4, v6)

    async def txt(self, name: str) -> DnsAnswer[str]:
        return await self._lookup(name, dns.rdatatype.TXT, _txt)

    async def ptr(self, ip: str) -> DnsAnswer[str]:
        address = ipaddress.ip_address(ip)
        if isinstance(address, IPv6Address):
            # ::ffff:a.b.c.d from a dual-stack socket is an IPv4 client; a scope is local.
            address = address.ipv4_mapped or IPv6Address(address.packed)
        reverse = dns.reversename.from_address(str(address))
        return await self._lookup(_name_text(reverse), dns.rdatatype.PTR, _ptr)

    async def domain_exists(self, domain: str) -> DomainExistence:
        mx = await self.mx(domain)
        if mx.null_mx:
            return "null_mx"
        if mx.ok:
            return "exists"
        if mx.status == "nxdomain":
            return "nxdomain"
        if mx.status == "tempfail":
            # RFC 5321 §5.1: a failed MX lookup must not fall back to the address records.
            return "tempfail"
        # RFC 5321 §5.1: no MX means the domain itself is the mail host (implicit MX).
        addresses = await self.addresses(domain)
        if addresses.ok:
            return "exists"
        return "tempfail" if addresses.status == "tempfail" else "nxdomain"

    async def _lookup(
        self,
        text: str,
        rdtype: dns.rdatatype.RdataType,
        convert: Callable[[dns.rdata.Rdata], T],
    ) -> DnsAnswer[T]:
        name = _absolute_name(text)
        if name is None:
            return DnsAnswer("nxdomain", detail=f"not a valid DNS name: {text!r}")
        key = (_name_text(name), int(rdtype))
        cached = self._cache.get(key)
        if cached is not None:
            return cast(DnsAnswer[T], cached)
        answer = await self._ask(name, rdtype, convert)
        self._cache.put(key, answer)
        return answer

    async def _ask(
        self,
        name: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        convert: Callable[[dns.rdata.Rdata], T],
    ) -> DnsAnswer[T]:
        try:
            result = await self._resolver.resolve(
                name, rdtype, search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN as error:
            return DnsAnswer("nxdomain", ttl=_negative_ttl(error))
        except dns.resolver.YXDOMAIN:
            # A DNAME made the name too long: it can never resolve, so not worth retrying.
            return DnsAnswer("nxdomain", detail="YXDOMAIN (DNAME substitution too long)")
        except dns.resolver.LifetimeTimeout as error:
            return DnsAnswer("tempfail", detail=f"timeout: {error}")
        except dns.exception.DNSException as error:
            # NoNameservers (SERVFAIL, REFUSED, malformed or truncated-over-TCP answers from
            # every server) and whatever else dnspython reports: nothing permanent is known.
            return DnsAnswer("tempfail", detail=f"{type(error).__name__}: {error}")
        ttl = int(result.chaining_result.minimum_ttl)
        if result.rrset is None:
            return DnsAnswer("nodata", ttl=ttl)
        return DnsAnswer("ok", tuple(convert(rdata) for rdata in result.rrset), ttl)


def _combine_addresses(
    v4: DnsAnswer[IPv4Address], v6: DnsAnswer[IPv6Address]
) -> DnsAnswer[IPAddress]:
    """Merge the two families: any records win (a server that fails AAAA queries, still
    common, must not make an IPv4 host unreachable); otherwise the least final status."""
    records: tuple[IPAddress, ...] = (*v6.records, *v4.records)
    answers: tuple[DnsAnswer[Any], ...] = (v6, v4)
    failed = "; ".join(
        f"{family}: {answer.detail or answer.status}"
        for family, answer in (("AAAA", v6), ("A", v4))
        if answer.status == "tempfail"
    )
    if records:
        ttl = min(answer.ttl for answer in answers if answer.ok)
        return DnsAnswer("ok", records, ttl, failed)
    if failed:
        return DnsAnswer("tempfail", detail=failed)
    status: DnsStatus = "nxdomain" if v4.status == v6.status == "nxdomain" else "nodata"
    return DnsAnswer(status, ttl=min(v4.ttl, v6.ttl))
