"""DNS blocklists asked about the connecting host. Answers are cached for their TTL by the
resolver; `refused` / `invalid` answers (the list declining to answer us) are logged and
never count as a listing."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tayori.core.reasons import reason
from tayori.dns.dnsbl import lookup
from tayori.dns.resolver import Resolver
from tayori.pipeline.steps import Client, Failure, Stage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DnsblCheck:
    """One list (zone). A step per zone, so each has its own action and weight."""

    resolver: Resolver
    zone: str
    name: str = "dnsbl"
    stage: Stage = Stage.CONNECT

    async def check(self, client: Client) -> Failure | None:
        try:
            result = await lookup(self.resolver, client.ip, self.zone)
        except ValueError:
            return None  # not an IP address (a UNIX socket in tests): nothing to ask
        if result.status in ("refused", "invalid"):
            log.warning("DNSBL %s declined to answer (%s): %s", self.zone, result.status, result)
            return None
        if not result.listed:
            return None
        codes = ",".join(str(code) for code in result.codes)
        detail = f"{client.ip} listed in {self.zone} ({codes}) {result.reason}".strip()
        reply = reason("dnsbl.listed").reply_for(ip=client.ip, zone=self.zone)
        return Failure("dnsbl.listed", reply, detail)
