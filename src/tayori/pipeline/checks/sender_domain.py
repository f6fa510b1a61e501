"""The MAIL FROM domain must be able to receive replies: MX, or A/AAAA, and no null MX
(RFC 7505 §4: mail from a null-MX domain can never be answered)."""

from __future__ import annotations

from dataclasses import dataclass

from tayori.core.reply import SmtpReply
from tayori.dns.resolver import Resolver
from tayori.pipeline.steps import Client, Failure, Stage

# Inbound replies differ from submission's 553 in the catalogue: a sending server gets the
# usual 550 (Postfix's reject_unknown_sender_domain), or 450 while DNS cannot tell.
UNKNOWN = SmtpReply(550, "5.1.8", "Sender address rejected: Domain not found")
UNKNOWN_TEMP = SmtpReply(450, "4.1.8", "Sender address rejected: Domain not found")
NULL_MX = SmtpReply(550, "5.7.27", "Sender address has null MX")


@dataclass(frozen=True, slots=True)
class SenderDomainCheck:
    resolver: Resolver
    name: str = "sender_domain"
    stage: Stage = Stage.MAIL

    async def check(self, client: Client) -> Failure | None:
        if "@" not in client.sender:
            return None  # the null reverse path (bounces) has no domain to check
        domain = client.sender.rpartition("@")[2].lower()
        if domain.startswith("["):
            return None  # an address literal: nothing in DNS to ask
        existence = await self.resolver.domain_exists(domain)
        if existence == "exists":
            return None
        if existence == "tempfail":
            return Failure("sender.domain_unknown", UNKNOWN_TEMP, f"{domain}: DNS tempfail", True)
        reply = NULL_MX if existence == "null_mx" else UNKNOWN
        return Failure("sender.domain_unknown", reply, f"{domain}: {existence}")
