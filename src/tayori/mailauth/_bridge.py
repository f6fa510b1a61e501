"""dkimpy asks DNS synchronously through a `dnsfunc`; it runs in a worker thread here, and its
questions are answered by our asynchronous `Resolver` on the event loop (never the system
resolver)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tayori.dns.resolver import Resolver

DnsFunc = Callable[..., bytes | None]


class DnsTempError(Exception):
    """A key lookup failed temporarily: the signature's result is `temperror`."""


def txt_function(resolver: Resolver, loop: asyncio.AbstractEventLoop, timeout: float) -> DnsFunc:
    def get_txt(name: str | bytes, timeout: float = timeout) -> bytes | None:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        future = asyncio.run_coroutine_threadsafe(resolver.txt(text.rstrip(".")), loop)
        try:
            answer = future.result(timeout + 1)
        except TimeoutError:
            future.cancel()
            raise DnsTempError(f"TXT {text}: no answer in time") from None
        if answer.status == "tempfail":
            raise DnsTempError(f"TXT {text}: {answer.detail}")
        return answer.records[0].encode("utf-8", "replace") if answer.records else None

    return get_txt
