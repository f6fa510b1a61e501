"""The inbound (MX) pipeline: which steps run at which stage, under the admin's policies.

Connect-stage steps run once per connection, HELO and MAIL steps (sender domain, SPF) once
per transaction; their refusals are given at RCPT, so that each refusal is recorded per
recipient as an outcome. Message checks (DKIM, ARC, then DMARC from SPF's and DKIM's results)
run at the end of DATA, where the From: header is known; their verdicts and the
Authentication-Results header go with the delivery. Per-recipient steps (member rules, the
spam classifier) plug in as `RecipientStep`s.

Clients in `[inbound] trusted_networks` (our backup MX, a filtering front end) relay others'
mail: the checks that would judge the relay instead of the sender (DNSBL, FCrDNS, HELO, SPF
on the connection) are skipped for them, and a `relay.trusted` note goes into the outcome
detail. SPF is then evaluated at the end of DATA for the host that handed the relay the
message, read from the Received field the relay added (`tayori.pipeline.relayed`), so that
DMARC does not lose SPF for mail that came the backup way.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from tayori.config.settings import InboundSettings
from tayori.core.errors import ConfigError
from tayori.core.reasons import reason
from tayori.core.reply import SmtpReply
from tayori.dns.resolver import Resolver
from tayori.mailauth import arc, dkim_verify, dmarc, spf
from tayori.mailauth.results import AuthResults
from tayori.mailauth.spf import SpfOutcome
from tayori.pipeline.checks.dnsbl import DnsblCheck
from tayori.pipeline.checks.fcrdns import FcrdnsCheck
from tayori.pipeline.checks.helo import HeloCheck
from tayori.pipeline.checks.sender_domain import SenderDomainCheck
from tayori.pipeline.checks.spf import SpfCheck, spf_failure
from tayori.pipeline.relayed import relayed_client
from tayori.pipeline.runner import Decision, run_steps
from tayori.pipeline.steps import Client, Failure, Stage, Step, StepPolicy, apply
from tayori.pipeline.verdicts import Action, Verdict
from tayori.storage.records import Account

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

SKIPPED_FOR_TRUSTED = frozenset({"dnsbl", "fcrdns", "helo", "spf"})
"""Steps that look at the connecting host: for a trusted relay they would judge the relay."""

_TRUSTED_REPLY = SmtpReply(250, "2.0.0", "Ok")
"""A note, not a decision: the sender's server is told nothing about it."""


def trusted_networks(items: Sequence[str]) -> tuple[Network, ...]:
    """`[inbound] trusted_networks` parsed; ConfigError naming the first bad entry."""
    networks: list[Network] = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                f"inbound.trusted_networks: {item!r} is not an address or network "
                "(write 192.0.2.25 or 192.0.2.0/24)"
            ) from None
    return tuple(networks)


class RecipientStep(Protocol):
    """A decision that differs per member (reject lists, spam block): given the decision so
    far for the whole message, the verdicts it adds for this account."""

    async def decide(
        self, account: Account, message: bytes, client: Client, so_far: Decision
    ) -> Decision: ...


@dataclass(frozen=True, slots=True)
class MessageChecks:
    """What the end of DATA found: verdicts for every recipient and the auth results."""

    decision: Decision
    auth: AuthResults


class InboundPipeline:
    def __init__(
        self,
        resolver: Resolver,
        settings: InboundSettings,
        own_names: frozenset[str],
        *,
        dns_timeout: float = 5.0,
        recipient_steps: Sequence[RecipientStep] = (),
    ) -> None:
        self._resolver = resolver
        self._settings = settings
        self._timeout = dns_timeout
        self._trusted = trusted_networks(settings.trusted_networks)
        self.recipient_steps = tuple(recipient_steps)
        self._spf = (SpfCheck(resolver), StepPolicy(settings.spf_action, settings.spf_score))
        steps: list[tuple[Step, StepPolicy]] = []
        if settings.checks:
            steps += [
                (DnsblCheck(resolver, zone.zone), StepPolicy(zone.action, zone.weight))
                for zone in settings.dnsbl.zones
            ]
            steps += [
                (FcrdnsCheck(resolver), StepPolicy(settings.fcrdns_action, settings.fcrdns_score)),
                (HeloCheck(own_names), StepPolicy(settings.helo_action, settings.helo_score)),
                (
                    SenderDomainCheck(resolver),
                    StepPolicy(settings.sender_domain_action, settings.sender_domain_score),
                ),
                self._spf,
            ]
        self._steps = steps

    def trusted(self, ip: str) -> Network | None:
        """The trusted network `ip` is in, if any."""
        if not self._trusted:
            return None
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None  # not an IP address (a UNIX socket in tests)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return next((network for network in self._trusted if address in network), None)

    def steps(self, stage: Stage, ip: str = "") -> list[tuple[Step, StepPolicy]]:
        """The steps of `stage`; for a client `ip` in a trusted network, without those
        that would judge the relay (`SKIPPED_FOR_TRUSTED`)."""
        skipped = SKIPPED_FOR_TRUSTED if ip and self.trusted(ip) else frozenset()
        return [
            (step, policy)
            for step, policy in self._steps
            if step.stage is stage and step.name not in skipped
        ]

    async def connect(self, client: Client) -> Decision:
        network = self.trusted(client.ip)
        if network is not None and self._settings.checks:
            skipped = ", ".join(sorted(SKIPPED_FOR_TRUSTED))
            detail = (
                f"{client.ip} in trusted network {network}: not checked on the relay: "
                f"{skipped}; SPF for the host its Received field names"
            )
            note = Verdict(Action.ACCEPT, "relay.trusted", _TRUSTED_REPLY, detail)
            return Decision((note,))
        return await run_steps(self.steps(Stage.CONNECT, client.ip), client)

    async def transaction(self, client: Client) -> Decision:
        """HELO and MAIL steps (SPF among them), once per MAIL FROM."""
        steps = self.steps(Stage.HELO, client.ip) + self.steps(Stage.MAIL, client.ip)
        return await run_steps(steps, client)

    async def _spf_at_data(
        self, client: Client, content: bytes
    ) -> tuple[SpfOutcome | None, Verdict | None]:
        """SPF's result from MAIL FROM; evaluated here (with its verdict) only for a caller
        that did not run the MAIL steps for this sender. For a trusted relay: SPF of the
        host that handed it the message, as its Received field says (None when unreadable)."""
        if self.trusted(client.ip):
            return await self._spf_behind_relay(client, content)
        known = client.spf_result()
        if known is not None:
            return known, None
        step, policy = self._spf
        verdict = apply(policy, await step.check(client))
        return client.spf, verdict

    async def _spf_behind_relay(
        self, client: Client, content: bytes
    ) -> tuple[SpfOutcome | None, Verdict | None]:
        hop = relayed_client(content, self.trusted)
        if hop is None:
            return None, None
        outcome = await spf.check_host(self._resolver, hop.ip, client.sender, hop.helo)
        failure = spf_failure(outcome)
        if failure is not None:
            relayed = f"{failure.detail}; client [{hop.ip}] from the trusted relay's Received"
            failure = replace(failure, detail=relayed)
        return outcome, apply(self._spf[1], failure)

    async def message(self, client: Client, content: bytes) -> MessageChecks:
        """DKIM, ARC, then DMARC from their results and SPF's."""
        if not self._settings.checks:
            return MessageChecks(Decision(), AuthResults(client_ip=client.ip))
        (spf_outcome, spf_verdict), signatures, arc_result = await asyncio.gather(
            self._spf_at_data(client, content),
            dkim_verify.verify(self._resolver, content, self._timeout),
            arc.verify(self._resolver, content, self._timeout),
        )
        for_dmarc = spf_outcome or SpfOutcome("none", "", "not checked: relayed, origin unknown")
        dmarc_outcome = await dmarc.evaluate(self._resolver, content, for_dmarc, signatures)
        auth = AuthResults(
            spf=spf_outcome,
            dkim=tuple(signatures),
            dmarc=dmarc_outcome,
            arc=arc_result,
            iprev=client.notes.get("iprev", ""),
            client_ip=client.ip,
            helo=client.helo,
            sender=client.sender,
        )
        return MessageChecks(Decision().plus([spf_verdict, *self._auth_verdicts(auth)]), auth)

    def _auth_verdicts(self, auth: AuthResults) -> list[Verdict | None]:
        """DKIM and DMARC; SPF decided at MAIL FROM (`SpfCheck`)."""
        settings = self._settings
        verdicts: list[Verdict | None] = []
        if auth.dkim and not any(s.result == "pass" for s in auth.dkim):
            failed = [s for s in auth.dkim if s.result in ("fail", "permerror")]
            if failed:
                detail = "; ".join(
                    f"d={s.domain} s={s.selector}: {s.result} {s.detail}" for s in failed
                )
                failure = Failure("auth.dkim.fail", reason("auth.dkim.fail").reply_for(), detail)
                verdicts.append(
                    apply(StepPolicy(settings.dkim_action, settings.dkim_score), failure)
                )
        if auth.dmarc is not None and auth.dmarc.result == "fail" and auth.dmarc.policy != "none":
            action = (
                settings.dmarc_reject_action
                if auth.dmarc.policy == "reject"
                else settings.dmarc_quarantine_action
            )
            failure = Failure(
                "auth.dmarc.fail",
                reason("auth.dmarc.fail").reply_for(),
                f"{auth.dmarc.domain}: {auth.dmarc.detail}",
            )
            verdicts.append(apply(StepPolicy(action, settings.dmarc_score), failure))
        return verdicts
