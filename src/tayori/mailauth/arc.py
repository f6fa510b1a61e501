"""ARC (RFC 8617) chain validation, recorded in Authentication-Results only: a forwarder's
word is not yet used to override DMARC."""

from __future__ import annotations

import asyncio
from typing import Literal

import dkim

from tayori.dns.resolver import Resolver
from tayori.mailauth._bridge import DnsTempError, txt_function

ArcResult = Literal["none", "pass", "fail", "temperror"]


def _verify(message: bytes, dnsfunc: object) -> ArcResult:
    try:
        cv, _results, _reason = dkim.arc_verify(message, dnsfunc=dnsfunc)
    except DnsTempError:
        return "temperror"
    except Exception:
        return "fail"
    verdict = cv.decode("ascii", "replace").lower() if isinstance(cv, bytes) else str(cv).lower()
    return verdict if verdict in ("none", "pass", "fail") else "fail"  # type: ignore[return-value]


async def verify(resolver: Resolver, message: bytes, timeout: float = 5.0) -> ArcResult:
    header_end = message.find(b"\r\n\r\n")
    if b"\narc-seal:" not in b"\n" + message[: max(header_end, 0)].lower():
        return "none"
    dnsfunc = txt_function(resolver, asyncio.get_running_loop(), timeout)
    return await asyncio.to_thread(_verify, message, dnsfunc)
