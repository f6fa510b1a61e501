"""The compose service on real SQLite stores and the real submission delivery: addresses as
members type them, local and remote sending with a Sent copy, reply and forward, drafts,
refusals with their reason codes, and the Spam / Not spam buttons."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from tayori.config.settings import LimitsSettings, SubmissionSettings
from tayori.delivery.committer import DeliveryCommitter
from tayori.delivery.dkim_signing import DkimSigner
from tayori.delivery.local import LocalDelivery
from tayori.delivery.submission import SubmissionDelivery
from tayori.dns.resolver import DomainExistence
from tayori.mime import parse_message
from tayori.mime.compose import AttachmentSpec
from tayori.pipeline.member_rules import MemberRules
from tayori.rules.model import NewRule, RuleList, RuleOwner
from tayori.spam import SpamEngine
from tayori.storage.factory import Stores, migrate, open_stores
from tayori.storage.records import Account, SpecialUse, StoredMessage
from tayori.web.i18n import Catalogues
from tayori.web.services.compose import ComposeForm, ComposeService, parse_mailboxes
from tayori.web.services.errors import UserError
from tayori.web.services.sending import WebSubmission
from tayori.web.services.spam_feedback import SpamFeedback

T = TypeVar("T")


def run(awaitable: Awaitable[T]) -> T:
    """Run on a loop of its own in another thread: the browser tests' Playwright keeps an
    event loop running in this one for the rest of the session."""

    async def wrapper() -> T:
        return await awaitable

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, wrapper()).result()


class Resolver:
    """Only `domain_exists`, from a dict (anything not listed does not exist)."""

    def __init__(self) -> None:
        self.known: dict[str, DomainExistence] = {
            "example.test": "exists",
            "remote.test": "exists",
        }

    async def domain_exists(self, domain: str) -> DomainExistence:
        return self.known.get(domain, "nxdomain")


@dataclass
class Env:
    stores: Stores
    committer: DeliveryCommitter
    compose: ComposeService
    submission: WebSubmission
    alice: Account
    bob: Account

    def mailbox(self, account: Account, use: SpecialUse) -> list[StoredMessage]:
        box = self.stores.metadata.get_mailbox(account.id, use)
        return self.stores.metadata.list_messages(box.id)

    def raw(self, message: StoredMessage) -> bytes:
        with self.stores.blobs.open(message.blob_ref) as stream:
            return stream.read()


def make_env(tmp_path: Path, settings: SubmissionSettings | None = None) -> Iterator[Env]:
    migrate("", tmp_path)
    stores = open_stores("", tmp_path)
    stores.metadata.add_domain("example.test")
    alice = stores.metadata.add_account("alice@example.test", "x", 0)
    bob = stores.metadata.add_account("bob@example.test", "x", 0)
    committer = DeliveryCommitter(stores.metadata)
    committer.start()
    local = LocalDelivery(stores.metadata, stores.blobs, committer, "mx.example.test")
    delivery = SubmissionDelivery(
        local,
        stores.blobs,
        stores.queue,
        DkimSigner(stores.queue),
        "mx.example.test",
        timedelta(days=5),
    )
    submission = WebSubmission(
        stores.metadata,
        stores.queue,
        Resolver(),  # type: ignore[arg-type]
        delivery,
        settings or SubmissionSettings(),
        LimitsSettings(max_message_size=200_000),
        member_rules=MemberRules(stores.rules),
    )
    compose = ComposeService(stores.metadata, stores.blobs, stores.member, submission)
    try:
        yield Env(stores, committer, compose, submission, alice, bob)
    finally:
        committer.stop()
        stores.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path)


def test_addresses_as_members_type_them() -> None:
    found = parse_mailboxes(
        '山田 太郎 <taro@example.jp>、 "Smith, Bob" <bob@x.test>; c@y.test\n', "To"
    )
    assert [(m.name, m.address) for m in found] == [
        ("山田 太郎", "taro@example.jp"),
        ("Smith, Bob", "bob@x.test"),
        ("", "c@y.test"),
    ]
    with pytest.raises(UserError) as caught:
        parse_mailboxes("good@x.test, nobody, a@@b", "Cc")
    assert caught.value.values["entries"] == "nobody, a@@b"
    ja = Catalogues.load().translator("ja")
    assert "メールアドレスではありません" in caught.value.text(ja)


def test_send_local_and_remote_with_sent_copy(env: Env) -> None:
    env.stores.member.set_preferences(env.alice.id, display_name="Alice 有子")
    form = ComposeForm(
        to="Bob <bob@example.test>",
        cc="carol@remote.test",
        bcc="dave@remote.test",
        subject="会議の件 ①",
        body="髙橋さんへ\nよろしく",
    )
    pdf = AttachmentSpec("資料①.pdf", "application/pdf", b"%PDF-1.4 test")
    sent = run(env.compose.send(env.alice, form, [pdf], "192.0.2.7"))
    assert sent.local == ("bob@example.test",)
    assert sent.remote == ("carol@remote.test", "dave@remote.test")
    [received] = env.mailbox(env.bob, SpecialUse.INBOX)
    message = parse_message(env.raw(received))
    assert message.subject == "会議の件 ①"
    assert message.from_[0].name == "Alice 有子"
    assert [a.filename for a in message.attachments] == ["資料①.pdf"]
    assert b"dave@remote.test" not in env.raw(received)  # Bcc never in what is sent
    [queued] = env.stores.queue.list_queue()
    assert {r.recipient for r in queued.recipients} == {"carol@remote.test", "dave@remote.test"}
    [copy] = env.mailbox(env.alice, SpecialUse.SENT)
    assert b"Bcc: dave@remote.test" in env.raw(copy)
    assert "\\Seen" in copy.flags
    people = env.stores.member.suggest_correspondents(env.alice.id, "")
    assert {p.address for p in people} == {
        "bob@example.test",
        "carol@remote.test",
        "dave@remote.test",
    }


def test_reply_and_reply_all(env: Env) -> None:
    first = ComposeForm(
        to="alice@example.test", cc="carol@remote.test", subject="Plan", body="Hi\nthere"
    )
    run(env.compose.send(env.bob, first, [], "192.0.2.7"))
    [original] = env.mailbox(env.alice, SpecialUse.INBOX)
    form = run(env.compose.reply_form(env.alice, original.id, everyone=False))
    assert form.to == "bob@example.test" and form.cc == ""
    assert form.subject == "Re: Plan"
    assert "> there" in form.body
    assert form.in_reply_to.startswith("<") and form.reply_of == original.id
    everyone = run(env.compose.reply_form(env.alice, original.id, everyone=True))
    assert everyone.cc == "carol@remote.test"  # not alice herself
    form.body = "Sounds good\n" + form.body
    run(env.compose.send(env.alice, form, [], "192.0.2.7"))
    [answered] = env.mailbox(env.alice, SpecialUse.INBOX)
    assert "\\Answered" in answered.flags
    [reply] = env.mailbox(env.bob, SpecialUse.INBOX)
    parsed = parse_message(env.raw(reply))
    original_id = parse_message(env.raw(original)).message_id
    assert original_id in parsed.root.headers.get("in-reply-to").decode()
    assert original_id in parsed.root.headers.get("references").decode()


def test_forward_inline_and_attached(env: Env) -> None:
    report = AttachmentSpec("report.txt", "text/plain", b"numbers")
    run(
        env.compose.send(
            env.bob, ComposeForm(to="alice@example.test", subject="Data"), [report], ""
        )
    )
    [original] = env.mailbox(env.alice, SpecialUse.INBOX)
    inline, sources = run(env.compose.forward_form(env.alice, original.id, attached=False))
    assert inline.subject == "Fwd: Data" and "Forwarded message" in inline.body
    assert [s.filename for s in sources] == ["report.txt"] and inline.keep == [0]
    inline.to = "carol@remote.test"
    run(env.compose.send(env.alice, inline, [], ""))
    attached, _ = run(env.compose.forward_form(env.alice, original.id, attached=True))
    attached.to = "bob@example.test"
    run(env.compose.send(env.alice, attached, [], ""))
    [forwarded] = env.mailbox(env.bob, SpecialUse.INBOX)
    parts = parse_message(env.raw(forwarded)).attachments
    assert [p.content_type for p in parts] == ["message/rfc822"]
    [sent_inline, _] = env.mailbox(env.alice, SpecialUse.SENT)
    assert [a.content() for a in parse_message(env.raw(sent_inline)).attachments] == [b"numbers"]


def test_drafts_replace_the_previous_version(env: Env) -> None:
    form = ComposeForm(to="bob@example.test", bcc="secret@remote.test", subject="Draft", body="v1")
    upload = AttachmentSpec("a.txt", "text/plain", b"A")
    first = run(env.compose.save_draft(env.alice, form, [upload]))
    reopened, sources = run(env.compose.draft_form(env.alice, first))
    assert reopened.bcc == "secret@remote.test" and reopened.body == "v1"
    assert [s.filename for s in sources] == ["a.txt"]
    reopened.body = "v2"
    second = run(env.compose.save_draft(env.alice, reopened, []))
    drafts = env.mailbox(env.alice, SpecialUse.DRAFTS)
    assert [d.id for d in drafts] == [second]
    assert "\\Draft" in drafts[0].flags
    final, _ = run(env.compose.draft_form(env.alice, second))
    run(env.compose.send(env.alice, final, [], ""))
    assert env.mailbox(env.alice, SpecialUse.DRAFTS) == []
    [received] = env.mailbox(env.bob, SpecialUse.INBOX)
    message = parse_message(env.raw(received))
    assert [a.content() for a in message.attachments] == [b"A"]  # kept across versions
    assert b"X-Tayori-Reply-Of" not in env.raw(received)


def test_refusals_are_plain_and_recorded(env: Env) -> None:
    with pytest.raises(UserError) as caught:
        run(env.compose.send(env.alice, ComposeForm(to="x@example.con"), [], "192.0.2.7"))
    assert caught.value.code == "recipient.domain_unknown"
    en = Catalogues.load().translator("en")
    assert caught.value.text(en).startswith("The domain example.con does not exist.")
    with pytest.raises(UserError) as unknown:
        run(env.compose.send(env.alice, ComposeForm(to="nobody@example.test"), [], ""))
    assert unknown.value.code == "rcpt.unknown"
    with pytest.raises(UserError):
        run(env.compose.send(env.alice, ComposeForm(), [], ""))
    big = AttachmentSpec("big.bin", "application/octet-stream", b"x" * 150_000)
    with pytest.raises(UserError) as large:
        run(env.compose.send(env.alice, ComposeForm(to="bob@example.test"), [big], ""))
    assert large.value.code == "size.exceeded"
    reasons = [o.outcome.reason for o in env.stores.metadata.list_outcomes(account_id=env.alice.id)]
    assert "recipient.domain_unknown" in reasons and "rcpt.unknown" in reasons
    assert env.mailbox(env.bob, SpecialUse.INBOX) == []


def test_hourly_limit_is_the_submission_limit(tmp_path: Path) -> None:
    for env in make_env(tmp_path, SubmissionSettings(messages_per_hour=1)):
        run(env.compose.send(env.alice, ComposeForm(to="bob@example.test"), [], ""))
        with pytest.raises(UserError) as caught:
            run(env.compose.send(env.alice, ComposeForm(to="bob@example.test"), [], ""))
        assert caught.value.code == "rate.limited"


def test_spam_and_not_spam(env: Env) -> None:
    run(
        env.compose.send(
            env.bob, ComposeForm(to="alice@example.test", subject="cheap pills"), [], ""
        )
    )
    [message] = env.mailbox(env.alice, SpecialUse.INBOX)
    engine = SpamEngine(env.stores.spam)
    feedback = SpamFeedback(env.stores.metadata, env.stores.blobs, engine)
    assert run(feedback.mark(env.alice, [message.id], spam=True)) == 1
    [junk] = env.mailbox(env.alice, SpecialUse.JUNK)
    assert junk.id == message.id and "$Junk" in junk.flags
    totals, _ = env.stores.spam.lookup({"subject:cheap"}, env.alice.id)
    assert totals.spam >= 1
    run(feedback.mark(env.alice, [message.id], spam=False))
    assert [m.id for m in env.mailbox(env.alice, SpecialUse.INBOX)] == [message.id]
    totals, _ = env.stores.spam.lookup({"subject:cheap"}, env.alice.id)
    assert totals.ham >= 1 and totals.spam == 0
    with pytest.raises(UserError):
        run(feedback.mark(env.bob, [message.id], spam=True))  # not bob's


def test_sent_copies_and_drafts_are_searchable(env: Env) -> None:
    from tayori.storage.records import MessageQuery

    run(
        env.compose.send(
            env.alice, ComposeForm(to="bob@example.test", subject="議事録の送付"), [], ""
        )
    )
    run(env.compose.save_draft(env.alice, ComposeForm(subject="議事録の下書き"), []))
    sent = env.stores.metadata.get_mailbox(env.alice.id, SpecialUse.SENT)
    found = env.stores.metadata.query_messages(env.alice.id, sent.id, MessageQuery(text="議事"))
    assert found.total == 1
    everywhere = env.stores.metadata.query_messages(env.alice.id, None, MessageQuery(text="議事"))
    assert everywhere.total == 2


def test_a_draft_id_outside_drafts_is_never_deleted(env: Env) -> None:
    run(env.compose.send(env.bob, ComposeForm(to="alice@example.test", subject="keep me"), [], ""))
    [kept] = env.mailbox(env.alice, SpecialUse.INBOX)
    run(env.compose.save_draft(env.alice, ComposeForm(subject="x", draft_id=kept.id), []))
    run(env.compose.discard_draft(env.alice, kept.id))
    assert [m.id for m in env.mailbox(env.alice, SpecialUse.INBOX)] == [kept.id]


def test_the_recipients_reject_list_holds_for_webmail_too(env: Env) -> None:
    env.stores.rules.add_rule(
        RuleOwner.account(env.bob.id), NewRule(RuleList.REJECT, "alice@example.test")
    )
    with pytest.raises(UserError) as caught:
        run(env.compose.send(env.alice, ComposeForm(to="bob@example.test"), [], "192.0.2.7"))
    assert caught.value.code == "rule.reject"
    ja = Catalogues.load().translator("ja")
    assert "受信拒否" in caught.value.text(ja)
    assert env.mailbox(env.bob, SpecialUse.INBOX) == []
    bobs = [o.outcome.reason for o in env.stores.metadata.list_outcomes(account_id=env.bob.id)]
    assert bobs == ["rule.reject"]


def test_members_send_as_their_aliases(env: Env) -> None:
    env.stores.metadata.add_alias("info@example.test", ["alice@example.test"])
    assert run(env.compose.sender_addresses(env.alice)) == [
        "alice@example.test",
        "info@example.test",
    ]
    assert run(env.compose.sender_addresses(env.bob)) == ["bob@example.test"]
    first = ComposeForm(to="info@example.test", cc="carol@remote.test", subject="Shop")
    run(env.compose.send(env.bob, first, [], "192.0.2.7"))
    [original] = env.mailbox(env.alice, SpecialUse.INBOX)

    # A reply goes out from the alias the message came to, and reply-all leaves it out.
    everyone = run(env.compose.reply_form(env.alice, original.id, everyone=True))
    assert everyone.from_address == "info@example.test"
    assert everyone.to == "bob@example.test" and everyone.cc == "carol@remote.test"
    run(env.compose.send(env.alice, everyone, [], "192.0.2.7"))
    [reply] = env.mailbox(env.bob, SpecialUse.INBOX)
    parsed = parse_message(env.raw(reply))
    assert [m.address for m in parsed.from_] == ["info@example.test"]
    assert parsed.message_id.endswith("@example.test")
    assert b"Return-Path: <info@example.test>" in env.raw(reply)
    assert sorted(q.sender for q in env.stores.queue.list_queue()) == [
        "bob@example.test",
        "info@example.test",
    ]

    # A draft keeps the choice; an address that is not the member's is refused, not sent.
    draft_id = run(
        env.compose.save_draft(env.alice, ComposeForm(from_address="INFO@example.test"), [])
    )
    reopened, _ = run(env.compose.draft_form(env.alice, draft_id))
    assert reopened.from_address == "info@example.test"
    with pytest.raises(UserError) as caught:
        run(
            env.compose.send(
                env.alice,
                ComposeForm(to="bob@example.test", from_address="bob@example.test"),
                [],
                "",
            )
        )
    assert caught.value.code == "sender.not_owned"
    assert len(env.mailbox(env.bob, SpecialUse.INBOX)) == 1
    # Without a choice (or with the primary address) nothing changes.
    run(env.compose.send(env.alice, ComposeForm(to="bob@example.test", subject="plain"), [], ""))
    latest = max(env.mailbox(env.bob, SpecialUse.INBOX), key=lambda m: m.id)
    assert [m.address for m in parse_message(env.raw(latest)).from_] == ["alice@example.test"]
