"""DKIM verification (RFC 6376) with dkimpy, each signature on its own, keys fetched
through our `Resolver`."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Literal

import dkim
from dkim.util import parse_tag_value

from tayori.dns.resolver import Resolver
from tayori.mailauth._bridge import DnsFunc, DnsTempError, txt_function

log = logging.getLogger(__name__)
_dkimpy_log = logging.getLogger(__name__ + ".dkimpy")
"""dkimpy logs every failed signature at ERROR; ours records them as results instead."""

DkimResult = Literal["pass", "fail", "neutral", "temperror", "permerror"]
MAX_SIGNATURES = 5
"""Signatures checked per message: each costs a DNS lookup and an RSA verification."""


@dataclass(frozen=True, slots=True)
class DkimSignatureResult:
    result: DkimResult
    domain: str
    selector: str
    detail: str = ""


def _tags(value: bytes) -> dict[bytes, bytes]:
    try:
        return dict(parse_tag_value(value))
    except Exception:
        return {}


def _verify_all(message: bytes, get_txt: DnsFunc) -> list[DkimSignatureResult]:
    missing: list[str] = []

    def dnsfunc(name: str | bytes, timeout: float = 5.0) -> bytes | None:
        record = get_txt(name, timeout)
        if record is None:
            missing.append(str(name))
        return record

    try:
        verifier = dkim.DKIM(message, logger=_dkimpy_log, minkey=1024)
    except Exception as error:
        log.debug("DKIM parse failed: %s", error)
        return []
    headers = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    results: list[DkimSignatureResult] = []
    for index, value in enumerate(headers[:MAX_SIGNATURES]):
        tags = _tags(value)
        domain = tags.get(b"d", b"").decode("ascii", "replace").lower()
        selector = tags.get(b"s", b"").decode("ascii", "replace")
        missing.clear()
        try:
            ok = verifier.verify(idx=index, dnsfunc=dnsfunc)
        except DnsTempError as error:
            results.append(DkimSignatureResult("temperror", domain, selector, str(error)))
            continue
        except dkim.DKIMException as error:
            # A body that no longer matches its hash was altered: fail. Anything else is a
            # signature we cannot evaluate (bad tags, algorithm): permerror (RFC 8601 §2.7.1).
            result: DkimResult = "fail" if "body hash" in str(error) else "permerror"
            results.append(DkimSignatureResult(result, domain, selector, str(error)))
            continue
        if ok:
            results.append(DkimSignatureResult("pass", domain, selector))
        elif missing:
            results.append(DkimSignatureResult("permerror", domain, selector, "no key in DNS"))
        else:
            results.append(DkimSignatureResult("fail", domain, selector, "signature mismatch"))
    return results


async def verify(
    resolver: Resolver, message: bytes, timeout: float = 5.0
) -> list[DkimSignatureResult]:
    """One result per DKIM-Signature (first `MAX_SIGNATURES`); empty when unsigned."""
    if b"dkim-signature" not in message[: message.find(b"\r\n\r\n") + 1 or None].lower():
        return []
    dnsfunc = txt_function(resolver, asyncio.get_running_loop(), timeout)
    return await asyncio.to_thread(_verify_all, message, dnsfunc)
