"""The spam block (迷惑メールブロック) as a per-recipient step: the member's own settings (on/off,
sensitivity), skipped for their safe senders, scored with their own token counts on top of
the global ones. Mail judged spam goes to Junk with reason `spam.junk`, never refused."""

from __future__ import annotations

from tayori.core.offload import Offload, in_thread
from tayori.core.reply import SmtpReply
from tayori.pipeline.member_rules import MemberRules
from tayori.pipeline.runner import Decision
from tayori.pipeline.steps import Client
from tayori.pipeline.verdicts import Action, Verdict
from tayori.rules.decide import SAFE_SENDER
from tayori.spam.engine import Sensitivity, SpamEngine
from tayori.storage.records import Account
from tayori.storage.sql_rules import RulesStore

SPAM_WEIGHT = 10.0
"""X-Spam-Score points for a classifier score of 1.0, beside the checks' own points."""

_FILED = SmtpReply(250, "2.0.0", "Ok")
"""Spam is accepted (and filed): the sender's server is never told."""


class SpamBlock:
    """The RecipientStep running the classifier for one member."""

    def __init__(
        self,
        engine: SpamEngine,
        rules: RulesStore,
        member_rules: MemberRules | None = None,
        *,
        scoring: Offload = in_thread,
        reads: Offload = in_thread,
    ) -> None:
        """`member_rules`: read the settings from its per-transaction memo (no extra query).
        `scoring`, `reads`: where the score and the settings read run
        (`tayori.core.offload`); scoring may be inline only for an engine that neither
        waits on the network (rspamd) nor on a remote token store."""
        self._engine = engine
        self._rules = rules
        self._member_rules = member_rules
        self._scoring = scoring
        self._reads = reads

    async def decide(
        self, account: Account, message: bytes, client: Client, so_far: Decision
    ) -> Decision:
        if SAFE_SENDER in so_far.reasons or so_far.action is not Action.ACCEPT:
            return Decision()  # a safe sender, or already decided (Junk or refused)
        if self._member_rules is not None:
            settings = (await self._member_rules.filters(account, client)).spam
        else:
            settings = await self._reads(self._rules.get_spam_settings, account.id)
        if not settings.enabled:
            return Decision()
        extra = [f"check:{code}" for code in so_far.reasons]
        result = await self._scoring(
            self._engine.score,
            message,
            account.id,
            sensitivity=Sensitivity(settings.sensitivity.value),
            extra=extra,
        )
        detail = f"score={result.score:.4f}; " + ", ".join(result.top_reasons)
        if not result.is_spam:
            return Decision()
        return Decision(
            (Verdict(Action.JUNK, "spam.junk", _FILED, detail, result.score * SPAM_WEIGHT),)
        )
