"""DMARC (RFC 7489): the From: domain's policy, and whether SPF or DKIM passed for a domain
aligned with it. The organizational domain comes from the Public Suffix List (bundled with
`publicsuffixlist`, so no download at run time)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from typing import Literal

from publicsuffixlist import PublicSuffixList

from tayori.dns.resolver import Resolver
from tayori.mailauth.dkim_verify import DkimSignatureResult
from tayori.mailauth.spf import SpfOutcome

DmarcResult = Literal["pass", "fail", "none", "temperror", "permerror"]
Policy = Literal["none", "quarantine", "reject"]


@dataclass(frozen=True, slots=True)
class DmarcOutcome:
    result: DmarcResult
    domain: str
    policy: Policy = "none"
    detail: str = ""


@functools.cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    name = domain.lower().rstrip(".")
    return _psl().privatesuffix(name) or name


def aligned(domain: str, from_domain: str, mode: str) -> bool:
    one, other = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if mode == "s":
        return one == other
    return organizational_domain(one) == organizational_domain(other)


def from_domain(message: bytes) -> str | None:
    """The single RFC5322.From domain; None when there is none or several (§6.6.1)."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(message)
    values = headers.get_all("From") or []
    if len(values) != 1:
        return None
    addresses = getaddresses([str(values[0])])
    domains = {address.rpartition("@")[2].lower() for _, address in addresses if "@" in address}
    return domains.pop() if len(domains) == 1 else None


def parse_record(text: str) -> dict[str, str] | None:
    tags: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            tags.setdefault(key.strip().lower(), value.strip())
    if tags.get("v") != "DMARC1":
        return None
    return tags


async def _record(resolver: Resolver, domain: str) -> dict[str, str] | Literal["temp"] | None:
    answer = await resolver.txt(f"_dmarc.{domain}")
    if answer.status == "tempfail":
        return "temp"
    records = [r for r in (parse_record(t) for t in answer.records) if r is not None]
    return records[0] if len(records) == 1 else None


def _policy(value: str | None) -> Policy | None:
    lowered = (value or "").lower()
    if lowered in ("none", "quarantine", "reject"):
        return lowered  # type: ignore[return-value]
    return None


async def evaluate(
    resolver: Resolver,
    message: bytes,
    spf: SpfOutcome,
    dkim: Sequence[DkimSignatureResult],
) -> DmarcOutcome:
    domain = from_domain(message)
    if domain is None:
        return DmarcOutcome("none", "", detail="no single From: domain")
    organizational = organizational_domain(domain)
    record = await _record(resolver, domain)
    from_org = False
    if record is None and organizational != domain:
        record = await _record(resolver, organizational)
        from_org = True
    if record == "temp":
        return DmarcOutcome("temperror", domain, detail="DNS failure fetching the DMARC record")
    if record is None:
        return DmarcOutcome("none", domain, detail="no DMARC record")
    policy = _policy(record.get("p"))
    if policy is None:
        if "rua" not in record:
            return DmarcOutcome("permerror", domain, detail="record without a valid p= tag")
        policy = "none"
    if from_org:
        policy = _policy(record.get("sp")) or policy
    spf_ok = spf.result == "pass" and aligned(spf.domain, domain, record.get("aspf", "r"))
    dkim_ok = [
        s.domain
        for s in dkim
        if s.result == "pass" and aligned(s.domain, domain, record.get("adkim", "r"))
    ]
    if spf_ok or dkim_ok:
        how = "spf" if spf_ok else f"dkim d={dkim_ok[0]}"
        return DmarcOutcome("pass", domain, policy, f"aligned {how}")
    return DmarcOutcome(
        "fail",
        domain,
        policy,
        f"p={policy}; spf={spf.result} ({spf.domain}); dkim="
        + (",".join(f"{s.result}({s.domain})" for s in dkim) or "none"),
    )
