from datetime import UTC, datetime

import pytest

from tayori.pipeline.recipients import decide_recipient, over_quota
from tayori.pipeline.verdicts import Action
from tayori.storage.records import Account, AccountStatus, RecipientLookup


def account(
    id: int, used: int = 0, quota: int = 0, status: AccountStatus = AccountStatus.ACTIVE
) -> Account:
    return Account(id, f"u{id}@example.test", 1, "h", quota, used, status, datetime.now(UTC))


def test_not_hosted_is_relay_denied() -> None:
    decision = decide_recipient("x@elsewhere.test", RecipientLookup(False, ()), declared_size=0)
    assert decision.refusal is not None
    assert decision.refusal.action is Action.REJECT
    assert str(decision.refusal.reply) == "554 5.7.1 <x@elsewhere.test>: Relay access denied"


def test_unknown_user() -> None:
    decision = decide_recipient("nobody@example.test", RecipientLookup(True, ()), declared_size=0)
    assert decision.refusal is not None
    assert str(decision.refusal.reply) == (
        "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown"
    )


def test_disabled_account_is_unknown() -> None:
    lookup = RecipientLookup(True, (account(1, status=AccountStatus.DISABLED),))
    decision = decide_recipient("u1@example.test", lookup, declared_size=0)
    assert decision.refusal is not None
    assert decision.refusal.reason == "rcpt.unknown"


@pytest.mark.parametrize(
    ("used", "size", "full"), [(100, 0, True), (90, 20, True), (90, 10, False)]
)
def test_quota(used: int, size: int, full: bool) -> None:
    assert over_quota(account(1, used=used, quota=100), size) is full
    assert not over_quota(account(1, used=used, quota=0), size)


def test_full_mailbox_refused_with_552() -> None:
    lookup = RecipientLookup(True, (account(1, used=100, quota=100),))
    decision = decide_recipient("u1@example.test", lookup, declared_size=0)
    assert decision.refusal is not None
    assert str(decision.refusal.reply) == (
        "552 5.2.2 <u1@example.test>: Mailbox full - User quota might be exceeded"
    )
    assert decision.full and not decision.accounts


def test_alias_with_one_full_member_delivers_to_the_others() -> None:
    lookup = RecipientLookup(True, (account(1, used=100, quota=100), account(2)))
    decision = decide_recipient("team@example.test", lookup, declared_size=0)
    assert decision.refusal is None
    assert [a.id for a in decision.accounts] == [2]
    assert [a.id for a in decision.full] == [1]
