"""DMARC (RFC 7489): the From: domain's policy, and whether SPF or DKIM passed for a domain
aligned with it. The organizational domain comes from the Public Suffix List (bundled with
`publicsuffixlist`, so no download at run time).

`pct=` (§6.6.4): a domain rolling out its policy asks for it on that share of failing mail
only; the rest gets the next weaker policy (reject -> quarantine, quarantine -> none). Which
share a message falls in is decided from a hash of its Message-ID, so the same message gets
the same answer on every delivery attempt and in every test (an SMTP retry must not turn a
Junk filing into a refusal by chance).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
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


WEAKER: dict[Policy, Policy] = {"reject": "quarantine", "quarantine": "none", "none": "none"}
"""The policy applied to failing mail left out of `pct` (RFC 7489 §6.6.4)."""


@dataclass(frozen=True, slots=True)
class DmarcOutcome:
    result: DmarcResult
    domain: str
    policy: Policy = "none"
    """The policy to apply: the published one, or the next weaker when sampled out."""
    detail: str = ""
    published: Policy | None = None
    """The record's own policy when `pct` left this message out (`policy` is then weaker)."""
    pct: int = 100

    @property
    def sampled_out(self) -> bool:
        return self.published is not None and self.published != self.policy


def message_sample(message: bytes) -> int:
    """0 … 99 from the Message-ID (the whole message when it has none): the same message
    always falls on the same side of `pct`, and messages spread evenly over it."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(message)
    message_id = str(headers.get("Message-ID", "")).strip().lower()
    seed = message_id.encode("utf-8", "surrogateescape") if message_id else message
    return int.from_bytes(hashlib.sha256(seed).digest()[:8], "big") % 100


def parse_pct(value: str | None) -> int:
    """`pct=` as an integer 0 … 100; absent or not a number in range: 100 (§6.3: the
    default, and an invalid tag must not weaken a domain's policy)."""
    text = (value or "").strip()
    if text.isdigit() and 0 <= int(text) <= 100:
        return int(text)
    return 100


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
    *,
    sample: Callable[[bytes], int] = message_sample,
) -> DmarcOutcome:
    """`sample`: where the message falls in 0 … 99 for `pct=` (the policy applies below it)."""
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
    results = f"spf={spf.result} ({spf.domain}); dkim=" + (
        ",".join(f"{s.result}({s.domain})" for s in dkim) or "none"
    )
    pct = parse_pct(record.get("pct"))
    if pct < 100 and policy != "none" and sample(message) >= pct:
        applied = WEAKER[policy]
        detail = f"p={policy} pct={pct}: sampled out, {applied} applied; {results}"
        return DmarcOutcome("fail", domain, applied, detail, published=policy, pct=pct)
    return DmarcOutcome("fail", domain, policy, f"p={policy}; {results}", pct=pct)
