"""Mailbox operations (webmail, IMAP) on every back end: folders, ownership, move/copy with
UIDs, MODSEQ and quota, flags, deletion, paged lists and search (Japanese included)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from tayori.core.errors import ConflictError, NotFoundError, QuotaExceededError
from tayori.core.outcome import Direction, Outcome, OutcomeKind
from tayori.delivery.indexing import message_index
from tayori.delivery.reindex import reindex
from tayori.storage import sql_mailbox
from tayori.storage.factory import Stores
from tayori.storage.interfaces import MetadataStore
from tayori.storage.records import (
    Account,
    MessageQuery,
    MessageSummary,
    NewMessage,
    SortKey,
    SpecialUse,
    StoredMessage,
)
from tayori.storage.search_terms import TERMS_VERSION

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(stores: Stores) -> MetadataStore:
    return stores.metadata


def _outcome(account: Account) -> Outcome:
    return Outcome(
        direction=Direction.INBOUND,
        sender="s@remote.test",
        recipient=account.address,
        outcome=OutcomeKind.DELIVERED,
        reason="delivered",
        account_id=account.id,
        time=T0,
    )


def mail(
    subject: str = "hello",
    body: str = "plain body",
    *,
    sender: str = "Sender <sender@remote.test>",
    to: str = "member@example.test",
    charset: str = "utf-8",
    attachment: bool = False,
) -> bytes:
    """A real message; `charset` iso-2022-jp or shift_jis encodes subject and body in it."""
    encoded_subject = base64.b64encode(subject.encode(charset)).decode()
    head = (
        f"From: {sender}\r\nTo: {to}\r\nSubject: =?{charset}?B?{encoded_subject}?=\r\n"
        "MIME-Version: 1.0\r\n"
    )
    text_part = (
        (
            f"Content-Type: text/plain; charset={charset}\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n"
        ).encode()
        + body.encode(charset)
        + b"\r\n"
    )
    if not attachment:
        return head.encode() + text_part
    return (
        head.encode()
        + b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
        + text_part
        + b"--b1\r\nContent-Type: application/pdf\r\n"
        + b'Content-Disposition: attachment; filename="quote.pdf"\r\n'
        + b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n"
    )


class Deliver:
    """Appends messages the way delivery does: blob first, index computed from the bytes."""

    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    def __call__(
        self,
        account: Account,
        raw: bytes = b"",
        *,
        mailbox: SpecialUse = SpecialUse.INBOX,
        when: datetime = T0,
        flags: frozenset[str] = frozenset(),
        indexed: bool = True,
    ) -> StoredMessage:
        raw = raw or mail()
        ref = self.stores.blobs.put([raw])
        item = NewMessage(
            account_id=account.id,
            mailbox=mailbox,
            blob_ref=ref,
            size=len(raw),
            internal_date=when,
            summary=MessageSummary(subject="s"),
            on_delivered=_outcome(account),
            on_over_quota=_outcome(account),
            flags=flags,
            enforce_quota=False,
            index=message_index(raw) if indexed else None,
        )
        result = self.stores.metadata.append_messages([item])[0]
        found = self.stores.metadata.get_message_by_uid(result.mailbox_id, result.uid)
        assert found is not None
        return found


@pytest.fixture
def deliver(stores: Stores) -> Deliver:
    return Deliver(stores)


@pytest.fixture
def alice(store: MetadataStore) -> Account:
    store.add_domain("example.test")
    return store.add_account("alice@example.test", "h", 0)


@pytest.fixture
def bob(store: MetadataStore, alice: Account) -> Account:
    return store.add_account("bob@example.test", "h", 0)


def box(store: MetadataStore, account: Account, use: SpecialUse) -> int:
    return store.get_mailbox(account.id, use).id


def used(store: MetadataStore, account: Account) -> int:
    found = store.get_account_by_id(account.id)
    assert found is not None
    return found.used_bytes


def ids(store: MetadataStore, account: Account, mailbox_id: int | None, **query: object) -> list:
    page = store.query_messages(account.id, mailbox_id, MessageQuery(**query), limit=500)  # type: ignore[arg-type]
    return [m.id for m in page.messages]


# --- folders -----------------------------------------------------------------------


def test_create_rename_delete_member_folder(store: MetadataStore, alice: Account) -> None:
    work = store.create_mailbox(alice.id, "  仕事  ")
    assert work.name == "仕事"
    assert work.special_use is None
    assert work.uidnext == 1
    assert work.uidvalidity > max(m.uidvalidity for m in store.list_mailboxes(alice.id)[:-1])
    renamed = store.rename_mailbox(alice.id, work.id, "Work")
    assert (renamed.id, renamed.name, renamed.uidvalidity) == (work.id, "Work", work.uidvalidity)
    assert store.rename_mailbox(alice.id, work.id, "WORK").name == "WORK"  # own name, new case
    assert store.delete_mailbox(alice.id, work.id) == []
    assert store.get_mailbox_by_id(alice.id, work.id) is None
    again = store.create_mailbox(alice.id, "Work")
    assert again.uidvalidity > work.uidvalidity  # mail programs must drop cached UIDs


@pytest.mark.parametrize("bad", ["", "   ", "a/b", "tab\there", "INBOX", "junk", "x" * 256])
def test_folder_names_are_checked(store: MetadataStore, alice: Account, bad: str) -> None:
    with pytest.raises(ValueError):
        store.create_mailbox(alice.id, bad)


def test_folder_names_are_unique_ignoring_case(store: MetadataStore, alice: Account) -> None:
    store.create_mailbox(alice.id, "Work")
    with pytest.raises(ConflictError, match="Work"):
        store.create_mailbox(alice.id, "work")
    other = store.create_mailbox(alice.id, "Other")
    with pytest.raises(ConflictError):
        store.rename_mailbox(alice.id, other.id, "WORK")


def test_special_folders_cannot_be_renamed_or_deleted(store: MetadataStore, alice: Account) -> None:
    for use in SpecialUse:
        mailbox_id = box(store, alice, use)
        with pytest.raises(ConflictError):
            store.rename_mailbox(alice.id, mailbox_id, "Renamed")
        with pytest.raises(ConflictError):
            store.delete_mailbox(alice.id, mailbox_id)


def test_folder_operations_check_ownership(
    store: MetadataStore, alice: Account, bob: Account
) -> None:
    bobs = store.create_mailbox(bob.id, "Private")
    assert store.get_mailbox_by_id(alice.id, bobs.id) is None
    with pytest.raises(NotFoundError):
        store.rename_mailbox(alice.id, bobs.id, "Mine")
    with pytest.raises(NotFoundError):
        store.delete_mailbox(alice.id, bobs.id)
    with pytest.raises(NotFoundError):
        store.empty_mailbox(alice.id, bobs.id)
    with pytest.raises(NotFoundError):
        store.query_messages(alice.id, bobs.id)
    assert store.get_mailbox_by_id(bob.id, bobs.id) == bobs
    with pytest.raises(NotFoundError):
        store.create_mailbox(999_999, "Nobody")


def test_delete_folder_moves_contents_to_trash(
    store: MetadataStore, alice: Account, deliver: Deliver
) -> None:
    work = store.create_mailbox(alice.id, "Work")
    inbox = box(store, alice, SpecialUse.INBOX)
    message = deliver(alice)
    store.move_messages(alice.id, [message.id], work.id)
    before = used(store, alice)
    assert store.delete_mailbox(alice.id, work.id) == []
    moved = store.get_message(alice.id, message.id)
    assert moved is not None
    assert moved.mailbox_id == box(store, alice, SpecialUse.TRASH)
    assert used(store, alice) == before
    assert inbox != moved.mailbox_id


def test_delete_folder_with_contents_deleted_returns_blobs(
    stores: Stores, store: MetadataStore, alice: Account, deliver: Deliver
) -> None:
    work = store.create_mailbox(alice.id, "Work")
    message = deliver(alice)
    store.move_messages(alice.id, [message.id], work.id)
    assert store.delete_mailbox(alice.id, work.id, move_to=None) == [message.blob_ref]
    assert store.get_message(alice.id, message.id) is None
    assert used(store, alice) == 0


def test_statuses_count_total_unread_and_bytes(
    store: MetadataStore, alice: Account, bob: Account, deliver: Deliver
) -> None:
    zeta = store.create_mailbox(alice.id, "zeta")
    store.create_mailbox(alice.id, "Alpha")
    first = deliver(alice, mail(body="a"))
    second = deliver(alice, mail(body="bb"), flags=frozenset({"\\Seen"}))
    deliver(alice, mail(), mailbox=SpecialUse.JUNK)
    deliver(bob, mail())  # never counted for alice
    store.move_messages(alice.id, [deliver(alice).id], zeta.id)
    statuses = store.mailbox_statuses(alice.id)
    assert [s.mailbox.name for s in statuses] == [
        "INBOX",
        "Junk",
        "Sent",
        "Drafts",
        "Trash",
        "Alpha",
        "zeta",
    ]
    inbox = statuses[0]
    assert (inbox.total, inbox.unread, inbox.size) == (2, 1, first.size + second.size)
    assert (statuses[1].total, statuses[1].unread) == (1, 1)
    assert (statuses[5].total, statuses[5].size) == (0, 0)
    assert statuses[6].total == 1


# --- reading -------------------------------------------------------------------------


def test_get_message_checks_ownership(
    store: MetadataStore, alice: Account, bob: Account, deliver: Deliver
) -> None:
    bobs = deliver(bob)
    assert store.get_message(alice.id, bobs.id) is None
    assert store.get_message(bob.id, bobs.id) == bobs
    assert store.get_message(bob.id, 10**12) is None
    assert store.get_message_by_uid(bobs.mailbox_id, bobs.uid) == bobs
    assert store.get_message_by_uid(bobs.mailbox_id, bobs.uid + 1) is None


def test_member_a_can_never_touch_bs_message(
    store: MetadataStore, alice: Account, bob: Account, deliver: Deliver
) -> None:
    bobs = deliver(bob)
    bob_before = used(store, bob)
    mine = box(store, alice, SpecialUse.INBOX)
    assert store.move_messages(alice.id, [bobs.id], mine) == []
    assert store.copy_messages(alice.id, [bobs.id], mine) == []
    assert store.set_flags(alice.id, [bobs.id], add=["\\Seen"]) == 0
    assert store.delete_messages(alice.id, [bobs.id]) == []
    with pytest.raises(NotFoundError):
        store.move_messages(bob.id, [bobs.id], mine)  # into another account's mailbox
    with pytest.raises(NotFoundError):
        store.copy_messages(bob.id, [bobs.id], mine)
    assert store.get_message(bob.id, bobs.id) == bobs
    assert used(store, bob) == bob_before
    assert used(store, alice) == 0
    assert ids(store, alice, None) == []


# --- move, copy, flags, delete ---------------------------------------------------------


def test_move_gives_new_uid_and_modseq_and_keeps_quota(
    store: MetadataStore, alice: Account, deliver: Deliver
) -> None:
    first = deliver(alice)
    second = deliver(alice)
    junk = store.get_mailbox(alice.id, SpecialUse.JUNK)
    inbox_before = store.get_mailbox(alice.id, SpecialUse.INBOX)
    deliver(alice, mailbox=SpecialUse.JUNK)  # junk has UID 1 taken
    usage = used(store, alice)
    placed = store.move_messages(alice.id, [second.id, first.id, 10**12], junk.id)
    assert [(p.source_id, p.message_id, p.mailbox_id, p.uid) for p in placed] == [
        (first.id, first.id, junk.id, 2),
        (second.id, second.id, junk.id, 3),
    ]
    moved = store.get_message(alice.id, first.id)
    assert moved is not None
    junk_after = store.get_mailbox(alice.id, SpecialUse.JUNK)
    inbox_after = store.get_mailbox(alice.id, SpecialUse.INBOX)
    assert (moved.mailbox_id, moved.uid) == (junk.id, 2)
    assert moved.flags == first.flags
    assert junk_after.uidnext == 4
    assert moved.modseq > first.modseq
    assert moved.modseq <= junk_after.highestmodseq
    assert inbox_after.highestmodseq > inbox_before.highestmodseq
    assert inbox_after.uidnext == inbox_before.uidnext  # UIDs are never reused
    assert used(store, alice) == usage
    assert store.move_messages(alice.id, [first.id], junk.id) == []  # already there
    assert store.get_message_by_uid(junk.id, 2) == moved


def test_copy_grows_usage_and_keeps_flags_and_search(
    store: MetadataStore, alice: Account, deliver: Deliver
) -> None:
    original = deliver(alice, mail("会議のお知らせ"), flags=frozenset({"\\Seen", "$Work"}))
    work = store.create_mailbox(alice.id, "Work")
    placed = store.copy_messages(alice.id, [original.id], work.id)
    assert len(placed) == 1
    copy = store.get_message(alice.id, placed[0].message_id)
    assert copy is not None
    assert copy.id != original.id
    assert (copy.mailbox_id, copy.uid) == (work.id, 1)
    assert copy.flags == original.flags
    assert copy.blob_ref == original.blob_ref
    assert copy.has_attachment == original.has_attachment
    assert used(store, alice) == 2 * original.size
    assert ids(store, alice, work.id, subject="会議") == [copy.id]
    # The shared blob is freed only with its last message.
    assert store.delete_messages(alice.id, [original.id]) == []
    assert store.delete_messages(alice.id, [copy.id]) == [original.blob_ref]


def test_copy_enforces_quota_all_or_nothing(
    store: MetadataStore, alice: Account, deliver: Deliver
) -> None:
    first = deliver(alice, mail(body="x" * 100))
    second = deliver(alice, mail(body="y" * 100))
    store.set_quota(alice.address, first.size + second.size + first.size)
    trash = box(store, alice, SpecialUse.TRASH)
    with pytest.raises(QuotaExceededError):
        store.copy_messages(alice.id, [first.id, second.id], trash)
    assert ids(store, alice, trash) == []
    assert store.get_mailbox(alice.id, SpecialUse.TRASH).uidnext == 1
    assert used(store, alice) == first.size + second.size
    assert len(store.copy_messages(alice.id, [first.id], trash)) == 1  # exactly at quota
    assert used(store, alice) == 2 * first.size + second.size


def test_flags_add_remove_bump_modseq_and_unread(
    store: MetadataStore, alice: Account, deliver: Deliver
) -> None:
    message = deliver(alice)
    inbox = message.mailbox_id
    before = store.get_mailbox(alice.id, SpecialUse.INBOX).highestmodseq
    changed = store.set_flags(alice.id, [message.id], add=["\\seen", "\\FLAGGED", "$Junk"])
    assert changed == 1
    after = store.get_message(alice.id, message.id)
    assert after is not None
    assert after.flags == {"\\Seen", "\\Flagged", "$Junk"}
    assert after.modseq == store.get_mailbox(alice.id, SpecialUse.INBOX).highestmodseq
    assert after.modseq > before
    assert store.mailbox_statuses(alice.id)[0].unread == 0
    assert store.set_flags(alice.id, [message.id], add=["\\Seen"]) == 0  # no change, no bump
    unchanged = store.get_message(alice.id, message.id)
    assert unchanged is not None
    assert unchanged.modseq == after.modseq
    assert store.set_flags(alice.id, [message.id], remove=["\\Seen", "$Junk"]) == 1
    assert ids(store, alice, inbox, unread_only=True) == [message.id]
    assert ids(store, alice, inbox, flagged_only=True) == [message.id]
    with pytest.raises(ValueError):
        store.set_flags(alice.id, [message.id], add=["two words"])
    with pytest.raises(ValueError):
        store.set_flags(alice.id, [message.id], add=[""])


def test_delete_and_empty_return_blobs_and_lower_usage(
    store: MetadataStore, alice: Account, deliver: Deliver
) -> None:
    kept = deliver(alice)
    gone = deliver(alice)
    junk = [deliver(alice, mailbox=SpecialUse.JUNK) for _ in range(3)]
    junk_box = box(store, alice, SpecialUse.JUNK)
    modseq = store.get_mailbox(alice.id, SpecialUse.INBOX).highestmodseq
    assert store.delete_messages(alice.id, [gone.id, 10**12]) == [gone.blob_ref]
    assert store.get_mailbox(alice.id, SpecialUse.INBOX).highestmodseq > modseq
    assert sorted(store.empty_mailbox(alice.id, junk_box)) == sorted(m.blob_ref for m in junk)
    assert store.empty_mailbox(alice.id, junk_box) == []
    assert used(store, alice) == kept.size
    assert ids(store, alice, None) == [kept.id]


# --- lists -------------------------------------------------------------------------------


def test_paged_list_sorts_and_counts(
    store: MetadataStore, alice: Account, deliver: Deliver
) -> None:
    made = [
        deliver(alice, mail("Re: banana", "x" * 30, sender="Carol <c@x.test>"), when=T0),
        deliver(alice, mail("apple", "x" * 10, sender="bob@x.test"), when=T0 + timedelta(1)),
        deliver(alice, mail("Cherry", "x" * 20, sender="Alice <a@x.test>"), when=T0 + timedelta(2)),
    ]
    inbox = made[0].mailbox_id
    a, b, c = (m.id for m in made)

    def order(sort: SortKey, descending: bool) -> list[int]:
        page = store.query_messages(alice.id, inbox, sort=sort, descending=descending)
        assert page.total == 3
        return [m.id for m in page.messages]

    assert order(SortKey.DATE, True) == [c, b, a]
    assert order(SortKey.DATE, False) == [a, b, c]
    assert order(SortKey.SUBJECT, False) == [b, a, c]  # "Re:" ignored, case folded
    assert order(SortKey.FROM, False) == [c, b, a]  # alice, bob@x.test, carol
    assert order(SortKey.SIZE, True) == [a, c, b]
    page = store.query_messages(alice.id, inbox, offset=1, limit=1)
    assert ([m.id for m in page.messages], page.total) == ([b], 3)
    assert store.query_messages(alice.id, inbox, offset=5).messages == ()


def test_ties_are_broken_by_id(store: MetadataStore, alice: Account, deliver: Deliver) -> None:
    made = [deliver(alice).id for _ in range(5)]
    inbox = box(store, alice, SpecialUse.INBOX)
    pages = [store.query_messages(alice.id, inbox, offset=o, limit=2).messages for o in (0, 2, 4)]
    assert [m.id for page in pages for m in page] == made[::-1]


def test_filters_dates_attachment_unread(
    store: MetadataStore, alice: Account, deliver: Deliver
) -> None:
    old = deliver(alice, mail(attachment=True), when=T0)
    new = deliver(alice, when=T0 + timedelta(days=10), flags=frozenset({"\\Seen"}))
    assert old.has_attachment
    assert not new.has_attachment
    inbox = old.mailbox_id
    assert ids(store, alice, inbox, has_attachment=True) == [old.id]
    assert ids(store, alice, inbox, has_attachment=False) == [new.id]
    assert ids(store, alice, inbox, since=T0 + timedelta(days=1)) == [new.id]
    assert ids(store, alice, inbox, before=T0 + timedelta(days=10)) == [old.id]
    assert ids(store, alice, inbox, unread_only=True) == [old.id]


# --- search ------------------------------------------------------------------------------


@pytest.mark.parametrize("charset", ["iso-2022-jp", "shift_jis", "utf-8"])
def test_japanese_two_character_words_are_found(
    store: MetadataStore, alice: Account, deliver: Deliver, charset: str
) -> None:
    hit = deliver(
        alice,
        mail("明日の会議について", "来週の予算を確認してください。", charset=charset),
    )
    miss = deliver(alice, mail("会社の案内", "議事録は別です。", charset=charset))
    inbox = hit.mailbox_id
    assert ids(store, alice, inbox, text="会議") == [hit.id]
    assert ids(store, alice, inbox, subject="会議") == [hit.id]
    assert ids(store, alice, inbox, body="会議") == []
    assert ids(store, alice, inbox, body="予算") == [hit.id]
    assert ids(store, alice, inbox, body="確認して") == [hit.id]
    assert ids(store, alice, inbox, text="議事録") == [miss.id]
    assert ids(store, alice, inbox, text="会議 予算") == [hit.id]  # every word
    assert ids(store, alice, inbox, text="会議 議事録") == []
    assert sorted(ids(store, alice, inbox, text="会")) == sorted([hit.id, miss.id])


def test_search_latin_words_senders_recipients(
    store: MetadataStore, alice: Account, deliver: Deliver
) -> None:
    first = deliver(
        alice,
        mail(
            "Quarterly Meeting",
            "Please bring the REPORT.",
            sender="Taro Yamada <taro@example.jp>",
            to="team@example.test",
        ),
    )
    second = deliver(alice, mail("lunch", "ＦＵＬＬ　ｗｉｄｔｈ text", sender="hanako@example.jp"))
    inbox = first.mailbox_id
    assert ids(store, alice, inbox, text="meet") == [first.id]  # prefix
    assert ids(store, alice, inbox, body="report") == [first.id]
    assert ids(store, alice, inbox, sender="taro@example.jp") == [first.id]
    assert ids(store, alice, inbox, sender="yamada") == [first.id]
    assert ids(store, alice, inbox, sender="example.jp") == [second.id, first.id]
    assert ids(store, alice, inbox, recipient="team") == [first.id]
    assert ids(store, alice, inbox, recipient="taro") == []
    assert ids(store, alice, inbox, body="full width") == [second.id]  # NFKC
    assert ids(store, alice, inbox, text="!!!") == []  # nothing searchable: no matches
    assert ids(store, alice, inbox, text="zzz") == []


def test_search_stays_in_the_account_and_mailbox(
    store: MetadataStore, alice: Account, bob: Account, deliver: Deliver
) -> None:
    in_inbox = deliver(alice, mail("予定表"))
    in_junk = deliver(alice, mail("予定表"), mailbox=SpecialUse.JUNK)
    deliver(bob, mail("予定表"))
    assert ids(store, alice, None, text="予定") == [in_junk.id, in_inbox.id]
    assert ids(store, alice, in_inbox.mailbox_id, text="予定") == [in_inbox.id]
    page = store.query_messages(alice.id, None, MessageQuery(text="予定"), limit=1)
    assert page.total == 2
    assert len(page.messages) == 1


def test_deleted_messages_leave_the_index(
    store: MetadataStore, alice: Account, deliver: Deliver
) -> None:
    message = deliver(alice, mail("見積書"))
    store.delete_messages(alice.id, [message.id])
    again = deliver(alice, mail("見積書"))
    assert ids(store, alice, None, text="見積") == [again.id]


def test_reindex_fills_messages_stored_without_index(
    store: MetadataStore, alice: Account, deliver: Deliver, stores: Stores
) -> None:
    raw = mail("古いメール", attachment=True)
    old = deliver(alice, raw, indexed=False)
    fresh = deliver(alice, mail("新しい"))
    assert not old.has_attachment
    assert ids(store, alice, None, text="古い") == []
    pending = store.messages_to_index(TERMS_VERSION)
    assert [m.id for m in pending] == [old.id]
    with stores.blobs.open(old.blob_ref) as blob:
        entry = message_index(blob.read())
    assert store.store_index([(old.id, entry), (10**12, entry)]) == 1
    assert store.messages_to_index(TERMS_VERSION) == []
    assert store.store_index([(old.id, entry)]) == 1  # idempotent
    assert ids(store, alice, None, text="古い") == [old.id]
    assert ids(store, alice, None, has_attachment=True) == [old.id]
    assert [m.id for m in store.messages_to_index(TERMS_VERSION + 1)] == [old.id, fresh.id]


def test_corpus_japanese_messages_are_searchable(
    store: MetadataStore, alice: Account, deliver: Deliver, corpus_dir: object
) -> None:
    tricky = corpus_dir / "tricky"  # type: ignore[operator]
    cases: list[tuple[str, str, Callable[[MessageQuery], MessageQuery] | None]] = [
        ("joruri-mail/charset/iso-2022-jp.eml", "エンコード", None),
        ("joruri-mail/charset/shift_jis.eml", "テスト", None),
        ("joruri-mail/charset/shift-jis.eml", "テスト", None),
        ("mail-iso-2022-jp/sample0.eml", "投稿", None),
        ("mail-gem/emails/multi_charset/japanese_iso_2022.eml", "すみ", None),
    ]
    stored = {}
    for relpath, _word, _ in cases:
        stored[relpath] = deliver(alice, (tricky / relpath).read_bytes())
    for relpath, word, _ in cases:
        found = ids(store, alice, None, text=word)
        assert stored[relpath].id in found, (relpath, word)
    # Subject of the Shift_JIS one (ew:shift_jis) and its attachment name (RFC 2231).
    sjis = stored["joruri-mail/charset/shift_jis.eml"].id
    assert sjis in ids(store, alice, None, subject="shift_jis")
    assert sjis in ids(store, alice, None, body="エンコードテスト.txt")
    assert stored["mail-iso-2022-jp/sample0.eml"].id in ids(store, alice, None, sender="yamada")


def test_reindex_backfills_idempotently(
    stores: Stores, store: MetadataStore, alice: Account, deliver: Deliver
) -> None:
    old = [deliver(alice, mail(f"議事録 {n}"), indexed=False) for n in range(5)]
    lost = deliver(alice, mail("消えた"), indexed=False)
    stores.blobs.delete([lost.blob_ref])
    seen: list[int] = []
    assert reindex(store, stores.blobs, batch=2, progress=seen.append) == 6
    assert seen == [2, 4, 6]
    assert sorted(ids(store, alice, None, text="議事録")) == [m.id for m in old]
    assert store.get_message(alice.id, lost.id) is not None  # still listed
    assert reindex(store, stores.blobs) == 0


def test_search_pages_are_the_same_by_either_plan(
    store: MetadataStore, alice: Account, deliver: Deliver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Few hits are sorted, many are found walking the sort index (see query_messages);
    both give the same pages in the same order."""
    hits = [
        deliver(alice, mail(f"会議 {n % 3}", "x" * (n % 4)), when=T0 + timedelta(hours=n % 5))
        for n in range(7)
    ]
    deliver(alice, mail("other"), when=T0 + timedelta(hours=3, minutes=30))
    inbox = hits[0].mailbox_id

    def pages(sort: SortKey, descending: bool, mailbox_id: int | None) -> list[int]:
        found: list[int] = []
        for offset in (0, 3, 6):
            page = store.query_messages(
                alice.id,
                mailbox_id,
                MessageQuery(subject="会議"),
                sort=sort,
                descending=descending,
                offset=offset,
                limit=3,
            )
            assert page.total == 7
            found.extend(m.id for m in page.messages)
        return found

    for sort in SortKey:
        for descending in (True, False):
            for mailbox_id in (inbox, None):
                monkeypatch.setattr(sql_mailbox, "_SORT_HITS_UP_TO", 1000)
                sorted_hits = pages(sort, descending, mailbox_id)
                monkeypatch.setattr(sql_mailbox, "_SORT_HITS_UP_TO", 0)
                walked = pages(sort, descending, mailbox_id)
                assert sorted_hits == walked, (sort, descending)
                assert sorted(walked) == sorted(m.id for m in hits)


def test_appended_flags_are_canonical_and_counted(
    store: MetadataStore, alice: Account, deliver: Deliver
) -> None:
    message = deliver(alice, flags=frozenset({"\\seen", "$Label"}))
    assert message.flags == {"\\Seen", "$Label"}
    assert store.mailbox_statuses(alice.id)[0].unread == 0
    with pytest.raises(ValueError):
        deliver(alice, flags=frozenset({"bad flag"}))


def test_fts_index_stays_consistent_through_every_change(
    stores: Stores, store: MetadataStore, alice: Account, bob: Account, deliver: Deliver
) -> None:
    """SQLite's external-content FTS5 index must follow every insert and delete (cascades
    included); its integrity-check compares it with `message_search`."""
    work = store.create_mailbox(alice.id, "Work")
    first = deliver(alice, mail("予定表"))
    second = deliver(alice, mail("議事録"))
    deliver(bob, mail("予定表"))
    store.copy_messages(alice.id, [first.id, second.id], work.id)
    store.move_messages(alice.id, [first.id], work.id)
    store.delete_messages(alice.id, [second.id])
    store.delete_mailbox(alice.id, work.id, move_to=None)
    entry = message_index(mail("新しい索引"))
    store.store_index([(deliver(alice, indexed=False).id, entry)])
    store.remove_account(bob.address)
    assert ids(store, alice, None, text="予定") == []
    assert len(ids(store, alice, None, text="索引")) == 1
    engine = store._engine  # type: ignore[attr-defined]
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO message_fts(message_fts, rank) VALUES ('integrity-check', 1)"
            )
            count = conn.exec_driver_sql("SELECT count(*) FROM message_search").scalar()
            assert count == 1


def test_a_large_group_commit_lands_whole(
    store: MetadataStore, stores: Stores, alice: Account, bob: Account
) -> None:
    """A group commit as large as a busy MX makes (150 appends across members and their
    mailboxes, each with a search entry) lands whole: every UID in order, every search row
    on its own message, usage and outcomes per member."""
    items: list[NewMessage] = []
    for number in range(150):
        account = alice if number % 3 else bob
        mailbox = SpecialUse.JUNK if number % 5 == 0 else SpecialUse.INBOX
        raw = mail(f"batch {number}", f"w{number}x common")
        items.append(
            NewMessage(
                account_id=account.id,
                mailbox=mailbox,
                blob_ref=stores.blobs.put([raw]),
                size=len(raw),
                internal_date=T0,
                summary=MessageSummary(subject=f"batch {number}"),
                on_delivered=_outcome(account),
                on_over_quota=_outcome(account),
                enforce_quota=False,
                index=message_index(raw),
            )
        )
    results = store.append_messages(items)
    assert all(result.appended for result in results)
    for account in (alice, bob):
        total = 0
        for use in (SpecialUse.INBOX, SpecialUse.JUNK):
            mine = [
                (item, result)
                for item, result in zip(items, results, strict=True)
                if item.account_id == account.id and item.mailbox is use
            ]
            assert [result.uid for _, result in mine] == list(range(1, len(mine) + 1))
            mailbox = store.get_mailbox(account.id, use)
            assert mailbox.uidnext == len(mine) + 1
            listed = store.list_messages(mailbox.id)
            assert [m.summary.subject for m in listed] == [item.summary.subject for item, _ in mine]
            assert mailbox.highestmodseq == max(m.modseq for m in listed)
            total += sum(item.size for item, _ in mine)
        assert used(store, account) == total
        assert len(store.list_outcomes(account_id=account.id, limit=500)) == sum(
            item.account_id == account.id for item in items
        )
    for number in (0, 1, 77, 149):
        account = alice if number % 3 else bob
        use = SpecialUse.JUNK if number % 5 == 0 else SpecialUse.INBOX
        [hit] = store.query_messages(
            account.id, box(store, account, use), MessageQuery(text=f"w{number}x"), limit=5
        ).messages
        assert hit.summary.subject == f"batch {number}"
    assert len(ids(store, alice, None, text="common")) == 100
