"""SPF (RFC 7208) `check_host()` over our asynchronous `Resolver`.

Written here rather than taken from pyspf because pyspf asks DNS synchronously through a
module-level hook; this one shares the resolver's cache and the test DNS server. Limits per
§4.6.4: ten DNS-querying terms, ten MX/PTR names each, two void lookups.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal

from tayori.dns.resolver import Resolver

SpfResult = Literal["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"]

MAX_DNS_TERMS = 10
MAX_VOID = 2
MAX_NAMES = 10

_QUALIFIERS: dict[str, SpfResult] = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_MACRO = re.compile(r"%\{([slodiphcrtv])(\d*)(r?)([.\-+,/_=]*)\}|%%|%_|%-", re.IGNORECASE)


class _PermError(Exception):
    pass


class _TempError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class SpfOutcome:
    result: SpfResult
    domain: str
    detail: str = ""


@dataclass(slots=True)
class _State:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    sender: str
    helo: str
    terms: int = 0
    voids: int = 0
    matched: list[str] = field(default_factory=list)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


async def check_host(resolver: Resolver, ip: str, sender: str, helo: str) -> SpfOutcome:
    """The SPF result for MAIL FROM `sender` (or `postmaster@helo` for the null path)."""
    mailbox = sender if "@" in sender else f"postmaster@{helo}"
    domain = mailbox.rpartition("@")[2].lower().rstrip(".")
    try:
        state = _State(_address(ip), mailbox, helo)
    except ValueError:
        return SpfOutcome("none", domain, "client is not an IP address")
    try:
        result = await _check(resolver, state, domain, top=True)
    except _PermError as error:
        return SpfOutcome("permerror", domain, str(error))
    except _TempError as error:
        return SpfOutcome("temperror", domain, str(error))
    return SpfOutcome(result, domain, " ".join(state.matched))


async def _record(resolver: Resolver, domain: str) -> str | None:
    answer = await resolver.txt(domain)
    if answer.status == "tempfail":
        raise _TempError(f"TXT {domain}: {answer.detail}")
    records = [
        r for r in answer.records if r.lower() == "v=spf1" or r.lower().startswith("v=spf1 ")
    ]
    if len(records) > 1:
        raise _PermError(f"{domain}: more than one SPF record")
    return records[0] if records else None


def _count(state: _State) -> None:
    state.terms += 1
    if state.terms > MAX_DNS_TERMS:
        raise _PermError("more than 10 DNS-querying terms")


def _void(state: _State, status: str) -> None:
    if status in ("nxdomain", "nodata"):
        state.voids += 1
        if state.voids > MAX_VOID:
            raise _PermError("more than 2 void lookups")
    if status == "tempfail":
        raise _TempError("DNS failure")


def expand(spec: str, state: _State, domain: str) -> str:
    """Macro expansion (RFC 7208 §7)."""
    local, _, sender_domain = state.sender.rpartition("@")

    def value(letter: str) -> str:
        ip = state.ip
        letter = letter.lower()
        if letter == "i":
            if isinstance(ip, ipaddress.IPv6Address):
                return ".".join(ip.exploded.replace(":", ""))
            return str(ip)
        return {
            "s": state.sender,
            "l": local or "postmaster",
            "o": sender_domain,
            "d": domain,
            "h": state.helo,
            "v": "ip6" if isinstance(ip, ipaddress.IPv6Address) else "in-addr",
            "p": "unknown",
        }.get(letter, "")

    def replace(match: re.Match[str]) -> str:
        escape = match.group(0)
        if escape == "%%":
            return "%"
        if escape == "%_":
            return " "
        if escape == "%-":
            return "%20"
        letter, digits, reverse, delimiters = match.groups()
        parts = re.split("[" + re.escape(delimiters or ".") + "]", value(letter))
        if reverse:
            parts.reverse()
        if digits:
            keep = int(digits)
            if keep == 0:
                raise _PermError("macro transformer of 0")
            parts = parts[-keep:]
        return ".".join(parts)

    if re.search(r"%(?![{%_-])", spec):
        raise _PermError(f"bad macro in {spec!r}")
    return _MACRO.sub(replace, spec)


def _split_cidr(spec: str) -> tuple[str, int | None, int | None]:
    v6: int | None = None
    v4: int | None = None
    match = re.search(r"(?:/(\d+))?(?://(\d+))?$", spec)
    if match and match.group(0):
        v4 = int(match.group(1)) if match.group(1) else None
        v6 = int(match.group(2)) if match.group(2) else None
        spec = spec[: match.start()]
    return spec, v4, v6


def _in_network(
    state: _State,
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    v4: int | None,
    v6: int | None,
) -> bool:
    if address.version != state.ip.version:
        return False
    prefix = (
        (v4 if v4 is not None else 32) if address.version == 4 else (v6 if v6 is not None else 128)
    )
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    return state.ip in network


async def _a_match(
    resolver: Resolver, state: _State, name: str, v4: int | None, v6: int | None
) -> bool:
    if state.ip.version == 4:
        answer4 = await resolver.a(name)
        _void(state, answer4.status)
        return any(_in_network(state, a, v4, v6) for a in answer4.records)
    answer6 = await resolver.aaaa(name)
    _void(state, answer6.status)
    return any(_in_network(state, a, v4, v6) for a in answer6.records)


async def _check(resolver: Resolver, state: _State, domain: str, *, top: bool = False) -> SpfResult:
    record = await _record(resolver, domain)
    if record is None:
        if top:
            return "none"
        raise _PermError(f"{domain}: no SPF record (include/redirect target)")
    redirect = ""
    for term in record.split()[1:]:
        name_value = re.match(r"^([A-Za-z][A-Za-z0-9_.-]*)=(.*)$", term)
        if name_value:
            key = name_value.group(1).lower()
            if key == "redirect":
                if redirect:
                    raise _PermError("two redirect modifiers")
                redirect = name_value.group(2)
            continue
        qualifier: SpfResult = "pass"
        if term[0] in _QUALIFIERS:
            qualifier = _QUALIFIERS[term[0]]
            term = term[1:]
        mechanism, _, argument = term.partition(":")
        mechanism = mechanism.lower()
        if "/" in mechanism:
            mechanism, slash, rest = mechanism.partition("/")
            argument = argument or ""
            cidr = slash + rest
        else:
            cidr = ""
        if await _matches(resolver, state, domain, mechanism, argument, cidr):
            state.matched.append(f"{qualifier}:{term}")
            return qualifier
    if redirect:
        _count(state)
        target = expand(redirect, state, domain)
        return await _check(resolver, state, target.lower().rstrip("."), top=False)
    return "neutral"


async def _matches(
    resolver: Resolver, state: _State, domain: str, mechanism: str, argument: str, cidr: str
) -> bool:
    if mechanism == "all":
        return True
    if mechanism in ("ip4", "ip6"):
        try:
            network = ipaddress.ip_network(argument, strict=False)
        except ValueError:
            raise _PermError(f"bad {mechanism}:{argument}") from None
        if network.version != (4 if mechanism == "ip4" else 6):
            raise _PermError(f"bad {mechanism}:{argument}")
        return network.version == state.ip.version and state.ip in network
    if mechanism == "include":
        if not argument:
            raise _PermError("include without a domain")
        _count(state)
        result = await _check(resolver, state, expand(argument, state, domain).lower())
        if result == "temperror":
            raise _TempError("include temperror")
        return result == "pass"
    if mechanism in ("a", "mx", "ptr", "exists"):
        _count(state)
        target_spec, v4, v6 = _split_cidr((argument or "") + cidr)
        target = expand(target_spec, state, domain).lower().rstrip(".") if target_spec else domain
        if mechanism == "a":
            return await _a_match(resolver, state, target, v4, v6)
        if mechanism == "exists":
            answer = await resolver.a(target)
            _void(state, answer.status)
            return answer.ok
        if mechanism == "mx":
            mx = await resolver.mx(target)
            _void(state, mx.status)
            if len(mx.records) > MAX_NAMES:
                raise _PermError(f"{target}: more than 10 MX names")
            for record in mx.records:
                if record.exchange != "." and await _a_match(
                    resolver, state, record.exchange, v4, v6
                ):
                    return True
            return False
        return await _ptr_match(resolver, state, target)
    raise _PermError(f"unknown mechanism {mechanism!r}")


async def _ptr_match(resolver: Resolver, state: _State, target: str) -> bool:
    """`ptr` is deprecated (§5.5) but still published; validated names only."""
    answer = await resolver.ptr(str(state.ip))
    for host in answer.records[:MAX_NAMES]:
        forward = await resolver.addresses(host)
        if any(_address(str(a)) == state.ip for a in forward.records) and (
            host == target or host.endswith("." + target)
        ):
            return True
    return False
