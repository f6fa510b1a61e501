"""Forward-confirmed reverse DNS: the client's PTR names a host whose addresses include
the client. Sets `client.verified_host` for the Received header and `iprev` (RFC 8601)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from tayori.core.reasons import reason
from tayori.dns.resolver import Resolver
from tayori.pipeline.steps import Client, Failure, Stage

MAX_PTR_NAMES = 10
"""Names tried from one PTR answer (RFC 8601 §3 iprev leaves the bound to us)."""


def _same(one: str, other: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    address = ipaddress.ip_address(one)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address == other


@dataclass(frozen=True, slots=True)
class FcrdnsCheck:
    resolver: Resolver
    name: str = "fcrdns"
    stage: Stage = Stage.CONNECT

    async def check(self, client: Client) -> Failure | None:
        try:
            ptr = await self.resolver.ptr(client.ip)
        except ValueError:
            return None
        refused = reason("fcrdns.failed").reply_for(ip=client.ip)
        if ptr.status == "tempfail":
            client.notes["iprev"] = "temperror"
            return Failure("fcrdns.failed", refused, f"PTR lookup failed: {ptr.detail}", True)
        for host in ptr.records[:MAX_PTR_NAMES]:
            forward = await self.resolver.addresses(host)
            if any(_same(client.ip, address) for address in forward.records):
                client.verified_host = host
                client.notes["iprev"] = "pass"
                return None
        client.notes["iprev"] = "fail"
        names = ", ".join(ptr.records) or f"no PTR ({ptr.status})"
        return Failure("fcrdns.failed", refused, f"{client.ip}: {names} not confirmed")
