"""SPF (RFC 7208) as a MAIL-stage step: it needs only the client's address, HELO and MAIL
FROM, so a failure under `reject` refuses at RCPT, before the body is sent (as Postfix's
policy daemons do). The result is kept on the `Client` for DMARC and the
Authentication-Results header at the end of DATA."""

from __future__ import annotations

from dataclasses import dataclass

from tayori.core.reasons import reason
from tayori.dns.resolver import Resolver
from tayori.mailauth import spf
from tayori.pipeline.steps import Client, Failure, Stage


def spf_failure(outcome: spf.SpfOutcome) -> Failure | None:
    """`fail` is a failure under the step's policy; `softfail` a mild one (a score only);
    anything else decides nothing (it is still written in the header)."""
    if outcome.result not in ("fail", "softfail"):
        return None
    detail = f"spf={outcome.result} domain={outcome.domain} {outcome.detail}".strip()
    reply = reason("auth.spf.fail").reply_for()
    return Failure("auth.spf.fail", reply, detail, mild=outcome.result == "softfail")


@dataclass(frozen=True, slots=True)
class SpfCheck:
    resolver: Resolver
    name: str = "spf"
    stage: Stage = Stage.MAIL

    async def check(self, client: Client) -> Failure | None:
        outcome = await spf.check_host(self.resolver, client.ip, client.sender, client.helo)
        client.spf, client.spf_for = outcome, (client.sender, client.helo)
        return spf_failure(outcome)
