"""The inbound (MX) pipeline: which steps run at which stage, under the admin's policies.

Connect-stage steps run once per connection, HELO and MAIL steps once per transaction; their
refusals are given at RCPT, so that each refusal is recorded per recipient as an outcome.
Message checks (SPF, DKIM, DMARC, ARC) run at the end of DATA, where the From: header is
known; their verdicts and the Authentication-Results header go with the delivery.
Per-recipient steps (member rules, the spam classifier) plug in as `RecipientStep`s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from tayori.config.settings import CheckAction, InboundSettings
from tayori.core.reasons import reason
from tayori.dns.resolver import Resolver
from tayori.mailauth import arc, dkim_verify, dmarc, spf
from tayori.mailauth.results import AuthResults
from tayori.pipeline.checks.dnsbl import DnsblCheck
from tayori.pipeline.checks.fcrdns import FcrdnsCheck
from tayori.pipeline.checks.helo import HeloCheck
from tayori.pipeline.checks.sender_domain import SenderDomainCheck
from tayori.pipeline.runner import Decision, run_steps
from tayori.pipeline.steps import Client, Failure, Stage, Step, StepPolicy, apply
from tayori.pipeline.verdicts import Verdict
from tayori.storage.records import Account


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
        self.recipient_steps = tuple(recipient_steps)
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
            ]
        self._steps = steps

    def steps(self, stage: Stage) -> list[tuple[Step, StepPolicy]]:
        return [(step, policy) for step, policy in self._steps if step.stage is stage]

    async def connect(self, client: Client) -> Decision:
        return await run_steps(self.steps(Stage.CONNECT), client)

    async def transaction(self, client: Client) -> Decision:
        """HELO and MAIL steps, once per MAIL FROM."""
        return await run_steps(self.steps(Stage.HELO) + self.steps(Stage.MAIL), client)

    async def message(self, client: Client, content: bytes) -> MessageChecks:
        """SPF, DKIM, ARC, then DMARC from their results."""
        if not self._settings.checks:
            return MessageChecks(Decision(), AuthResults(client_ip=client.ip))
        spf_outcome, signatures, arc_result = await asyncio.gather(
            spf.check_host(self._resolver, client.ip, client.sender, client.helo),
            dkim_verify.verify(self._resolver, content, self._timeout),
            arc.verify(self._resolver, content, self._timeout),
        )
        dmarc_outcome = await dmarc.evaluate(self._resolver, content, spf_outcome, signatures)
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
        return MessageChecks(Decision().plus(self._auth_verdicts(auth)), auth)

    def _auth_verdicts(self, auth: AuthResults) -> list[Verdict | None]:
        settings = self._settings
        verdicts: list[Verdict | None] = []
        if auth.spf is not None and auth.spf.result in ("fail", "softfail"):
            failure = Failure(
                "auth.spf.fail",
                reason("auth.spf.fail").reply_for(),
                f"spf={auth.spf.result} domain={auth.spf.domain} {auth.spf.detail}".strip(),
            )
            if auth.spf.result == "fail":
                verdicts.append(apply(StepPolicy(settings.spf_action, settings.spf_score), failure))
            else:  # softfail is the domain's own "not sure": never more than a score
                verdicts.append(
                    apply(StepPolicy(CheckAction.SCORE, settings.spf_score / 2), failure)
                )
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
