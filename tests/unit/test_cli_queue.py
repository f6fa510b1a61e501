"""`tayori queue …` and `tayori dkim …`, run in-process against a SQLite instance."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import dkim
import pytest

from tayori.core.errors import NotFoundError
from tayori.storage.factory import Stores
from tayori.storage.records import NewQueuedMessage, RecipientState, RecipientUpdate
from tests.unit import test_cli
from tests.unit.test_cli import DOMAIN, Tayori, add_user, deliver

# The instance and runner fixtures of test_cli, shared rather than copied (assigned, not
# imported by name, so that linters do not take the fixture arguments for redefinitions).
_no_config_from_env = test_cli._no_config_from_env
run = test_cli.run
template = test_cli.template
config = test_cli.config
tayori = test_cli.tayori
stores = test_cli.stores

HOUR = timedelta(hours=1)


def enqueue(
    stores: Stores,
    queue_id: str,
    *recipients: str,
    sender: str = f"alice@{DOMAIN}",
    age: timedelta = 2 * HOUR + timedelta(seconds=30),
    account_id: int | None = None,
    body: bytes = b"Subject: hi\r\n\r\nhello\r\n",
) -> str:
    """Queue a message (its bytes stored) created `age` ago; returns its blob ref."""
    created = datetime.now(UTC) - age
    ref = stores.blobs.put([body])
    stores.queue.enqueue(
        NewQueuedMessage(
            queue_id=queue_id,
            sender=sender,
            account_id=account_id,
            blob_ref=ref,
            size=len(body),
            message_id=f"<{queue_id}@{DOMAIN}>",
            subject="Quarterly report",
            created=created,
            expires=created + timedelta(days=5),
            recipients=recipients or ("bob@remote.test",),
        )
    )
    return ref


def attempt(stores: Stores, *results: tuple[RecipientState, str], retry_in: timedelta) -> None:
    """One delivery attempt of the only due message, as the queue worker records it."""
    now = datetime.now(UTC)
    [entry] = stores.queue.claim_due(now, "test-node", now + HOUR, 1)
    stores.queue.record_attempts(
        entry.id,
        "test-node",
        [
            RecipientUpdate(r.id, state, now + retry_in, reply, "mx.remote.test [192.0.2.7]")
            for r, (state, reply) in zip(entry.recipients, results, strict=True)
        ],
        [],
    )


def state_of(stores: Stores, queue_id: str) -> list[tuple[str, bool, bool]]:
    """(state, due now, bounce requested) per recipient."""
    entry = stores.queue.get_queue_entry(queue_id)
    assert entry is not None
    now = datetime.now(UTC)
    return [(r.state, r.next_attempt <= now, r.bounce_requested) for r in entry.recipients]


# --- queue list / show -------------------------------------------------------------------------


def test_list_an_empty_queue(tayori: Tayori) -> None:
    assert tayori("queue", "list").out == "the queue is empty\n"
    assert tayori("queue", "list", "--deferred").out == "no deferred messages\n"


def test_list_shows_messages_with_their_recipients(tayori: Tayori, stores: Stores) -> None:
    enqueue(stores, "Q1", "bob@remote.test", "carol@other.test")
    attempt(
        stores,
        (RecipientState.QUEUED, "451 4.7.1 Greylisted,\r\n please try again"),
        (RecipientState.DELIVERED, "250 2.0.0 Ok: queued as 12345"),
        retry_in=HOUR,
    )
    enqueue(stores, "Q2", "dave@remote.test", sender="", age=timedelta(minutes=5, seconds=30))

    result = tayori("queue", "list")
    assert result.status == 0, result.err
    header, first, second, third, blank, summary = result.out.splitlines()
    assert header.split() == [
        "QUEUE", "ID", "AGE", "SIZE", "SENDER", "RECIPIENT", "STATE", "TRIES",
        "NEXT", "TRY", "(UTC)", "LAST", "REPLY",
    ]  # fmt: skip
    assert first.split()[:7] == [
        "Q1", "2h00m", "22", "B", f"alice@{DOMAIN}", "bob@remote.test", "queued",
    ]  # fmt: skip
    assert first.endswith("451 4.7.1 Greylisted, please try again")  # one line, always
    entry = stores.queue.get_queue_entry("Q1")
    assert entry is not None
    assert f"  {entry.recipients[0].next_attempt:%Y-%m-%d %H:%M}  " in first
    # Message columns only on a message's first line.
    assert second.split()[:4] == ["carol@other.test", "delivered", "1", "-"]
    assert third.split()[:8] == ["Q2", "5m", "22", "B", "<>", "dave@remote.test", "queued", "0"]
    assert third.split()[8] == "now"
    assert blank == ""
    assert summary == "2 message(s), 2 recipient(s) waiting"

    deferred = tayori("queue", "list", "--deferred").out
    assert "Q1" in deferred
    assert "Q2" not in deferred


def test_show_tells_everything(tayori: Tayori, stores: Stores) -> None:
    add_user(tayori, f"alice@{DOMAIN}")
    alice = stores.metadata.get_account(f"alice@{DOMAIN}")
    assert alice is not None
    ref = enqueue(stores, "Q1", "bob@remote.test", "carol@other.test", account_id=alice.id)
    attempt(
        stores,
        (RecipientState.QUEUED, "451-4.7.1 Greylisted\r\n451 4.7.1 come back later"),
        (RecipientState.BOUNCED, "550 5.1.1 <carol@other.test>: no such user"),
        retry_in=HOUR,
    )

    result = tayori("queue", "show", "Q1")
    assert result.status == 0, result.err
    out = result.out
    assert "Queue ID:      Q1\n" in out
    assert f"Sender:        alice@{DOMAIN} (member alice@{DOMAIN})\n" in out
    assert f"Message-ID:    <Q1@{DOMAIN}>\n" in out
    assert "Subject:       Quarterly report\n" in out
    assert "(2h00m ago)" in out
    assert re.search(r"Expires: +\S+ \S+ UTC \(in 4d21h\)", out)
    assert "Delay notice:  not sent\n" in out
    assert f"Stored as:     {ref}\n" in out
    assert re.search(r"state: +queued; next attempt \S+ \S+ UTC \(in (59m|1h00m)\)", out)
    assert "attempts:      1 (last: " in out
    assert "remote MTA:    mx.remote.test [192.0.2.7]" in out
    # A multi-line reply keeps its lines, aligned.
    assert (
        "last reply:    451-4.7.1 Greylisted\n                   451 4.7.1 come back later\n" in out
    )
    assert "    state:         bounced\n" in out
    assert "550 5.1.1 <carol@other.test>: no such user" in out


def test_show_a_report_and_a_bounce_request(tayori: Tayori, stores: Stores) -> None:
    enqueue(stores, "D1", sender="", account_id=999)
    stores.queue.request_bounce("D1", datetime.now(UTC))
    out = tayori("queue", "show", "D1").out
    assert "Sender:        <> (a delivery report: never bounced) (member account removed)" in out
    assert "queued; bounce requested: the queue worker bounces it at its next run" in out
    assert "attempts:      0 (last: never)" in out


def test_unknown_queue_ids(tayori: Tayori) -> None:
    for argv in (
        ["show", "nope"],
        ["retry", "nope"],
        ["delete", "nope", "--yes"],
        ["bounce", "nope"],
    ):
        result = tayori("queue", *argv)
        assert result.status == 1, argv
        assert result.err.startswith("error: there is no queued message nope"), argv
        assert "tayori queue list" in result.err


# --- retry / bounce / delete ---------------------------------------------------------------------


def test_retry_one_or_all(tayori: Tayori, stores: Stores) -> None:
    for queue_id in ("Q1", "Q2"):
        enqueue(stores, queue_id, "a@remote.test", "b@remote.test")
        attempt(
            stores,
            (RecipientState.QUEUED, "421 busy"),
            (RecipientState.QUEUED, "421 busy"),
            retry_in=4 * HOUR,
        )
    result = tayori("queue", "retry", "Q1")
    assert result.status == 0, result.err
    assert result.out == "2 recipient(s) of Q1 will be tried at the queue worker's next run\n"
    assert state_of(stores, "Q1") == [("queued", True, False)] * 2
    assert state_of(stores, "Q2") == [("queued", False, False)] * 2
    result = tayori("queue", "retry", "--all")
    assert (
        result.out == "4 recipient(s) in the queue will be tried at the queue worker's next run\n"
    )
    assert state_of(stores, "Q2") == [("queued", True, False)] * 2


def test_retry_needs_an_id_or_all(tayori: Tayori) -> None:
    assert tayori("queue", "retry").status == 2
    assert tayori("queue", "retry", "Q1", "--all").status == 2
    assert tayori("queue", "retry", "--all").out == "nothing is waiting in the queue\n"


def test_bounce_is_left_to_the_running_worker(tayori: Tayori, stores: Stores) -> None:
    enqueue(stores, "Q1", "a@remote.test", "b@remote.test")
    attempt(
        stores,
        (RecipientState.DELIVERED, "250 ok"),
        (RecipientState.QUEUED, "421 busy"),
        retry_in=4 * HOUR,
    )
    result = tayori("queue", "bounce", "Q1")
    assert result.status == 0, result.err
    assert result.out == (
        "1 recipient(s) of Q1 will be bounced by the running queue worker at its next run; "
        f"a delivery report goes to alice@{DOMAIN}\n"
    )
    assert state_of(stores, "Q1") == [("delivered", True, False), ("queued", True, True)]
    enqueue(stores, "D1", sender="")
    assert "no report: the sender is empty" in tayori("queue", "bounce", "D1").out


def test_delete_asks_first(tayori: Tayori, stores: Stores) -> None:
    ref = enqueue(stores, "Q1")
    refused = tayori("queue", "delete", "Q1")
    assert refused.status == 1
    assert "without confirmation; add --yes" in refused.err
    declined = tayori("queue", "delete", "Q1", stdin="n\n", tty=True)
    assert declined.status == 1
    assert declined.out.endswith("nothing was deleted\n")
    assert stores.queue.get_queue_entry("Q1") is not None

    accepted = tayori("queue", "delete", "Q1", stdin="y\n", tty=True)
    assert accepted.status == 0, accepted.err
    assert "Delete Q1 from alice@example.test to 1 waiting recipient(s)" in accepted.out
    assert accepted.out.endswith(f"deleted Q1; alice@{DOMAIN} gets no report about it\n")
    assert stores.queue.get_queue_entry("Q1") is None
    with pytest.raises(NotFoundError):
        stores.blobs.open(ref)
    # The recipient still waiting ends in an outcome saying why it never arrived.
    [deleted] = [
        o.outcome for o in stores.metadata.list_outcomes() if o.outcome.reason == "queue.deleted"
    ]
    assert (deleted.outcome, deleted.direction) == ("discarded", "out")
    assert deleted.detail.startswith("tayori queue delete Q1")


def test_delete_keeps_bytes_a_mailbox_copy_shares(tayori: Tayori, stores: Stores) -> None:
    add_user(tayori, f"alice@{DOMAIN}")
    ref = deliver(stores, f"alice@{DOMAIN}", b"Subject: x\r\n\r\nshared\r\n")
    # A submission that stored one copy for a member and queued the same bytes.
    stores.queue.enqueue(
        NewQueuedMessage(
            queue_id="Q1",
            sender=f"alice@{DOMAIN}",
            account_id=None,
            blob_ref=ref,
            size=10,
            message_id="",
            subject="",
            created=datetime.now(UTC),
            expires=datetime.now(UTC) + HOUR,
            recipients=("bob@remote.test",),
        )
    )
    assert tayori("queue", "delete", "Q1", "--yes").status == 0
    with stores.blobs.open(ref) as stream:
        assert stream.read() == b"Subject: x\r\n\r\nshared\r\n"


# --- dkim --------------------------------------------------------------------------------------


def record_from(out: str) -> tuple[str, str, list[str]]:
    """(name, value, zone-file strings) as printed."""
    name = re.search(r"^  name   (\S+)$", out, re.MULTILINE)
    value = re.search(r"^  value  (.+)$", out, re.MULTILINE)
    assert name and value, out
    zone = out[out.index("Zone file form:") :]
    assert zone.count("(") == 1 and zone.rstrip().endswith(" )"), zone
    return name.group(1), value.group(1), re.findall(r'"([^"]*)"', zone)


def test_dkim_generate_prints_the_record_that_verifies(tayori: Tayori, stores: Stores) -> None:
    result = tayori("dkim", "generate", "Example.TEST")
    assert result.status == 0, result.err
    selector = f"tayori{datetime.now(UTC):%Y%m}"
    assert result.out.startswith(f"Created DKIM key {selector} for {DOMAIN} (RSA 2048).")
    assert "publish this DNS record now" in result.out
    name, value, strings = record_from(result.out)
    assert name == f"{selector}._domainkey.{DOMAIN}"
    assert value.startswith("v=DKIM1; k=rsa; p=")
    assert len(strings) == 2
    assert all(len(string) <= 255 for string in strings)
    assert "".join(strings) == value
    assert f"{name}. IN TXT (" in result.out

    key = stores.queue.get_dkim_key(DOMAIN)
    assert key is not None
    assert key.selector == selector
    # What a receiver does: sign as our nodes do, verify against the published record.
    message = b"From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: hi\r\n\r\nhello\r\n"
    signature = dkim.sign(message, selector.encode(), DOMAIN.encode(), key.private_key_pem.encode())

    def dns(query: bytes, timeout: int = 5) -> bytes:
        return value.encode() if query.decode().rstrip(".") == name else b""

    assert dkim.verify(signature + message, dnsfunc=dns)

    shown = tayori("dkim", "show", DOMAIN)
    assert shown.status == 0, shown.err
    assert shown.out.startswith(f"DKIM key {selector} for {DOMAIN}, created ")
    assert record_from(shown.out) == (name, value, strings)


def test_dkim_generate_replaces_the_key(tayori: Tayori, stores: Stores) -> None:
    assert tayori("dkim", "generate", DOMAIN, "--selector", "s1").status == 0
    first = stores.queue.get_dkim_key(DOMAIN)
    result = tayori("dkim", "generate", DOMAIN, "--selector", "Rotated.S2")
    assert result.status == 0, result.err
    assert "  name   rotated.s2._domainkey.example.test\n" in result.out
    second = stores.queue.get_dkim_key(DOMAIN)
    assert first is not None and second is not None
    assert second.selector == "rotated.s2"
    assert second.private_key_pem != first.private_key_pem


def test_dkim_errors(tayori: Tayori, stores: Stores) -> None:
    shown = tayori("dkim", "show", DOMAIN)
    assert shown.status == 1
    assert shown.err == (
        f"error: {DOMAIN} has no DKIM key; create one with `tayori dkim generate {DOMAIN}`\n"
    )
    unknown = tayori("dkim", "generate", "other.test")
    assert unknown.status == 1
    assert "tayori domain add other.test" in unknown.err
    bad = tayori("dkim", "generate", DOMAIN, "--selector", "not_a_label")
    assert bad.status == 1
    assert bad.err.startswith("error: DKIM selector 'not_a_label' is not a DNS name")
    assert tayori("dkim", "generate", "not a domain").status == 1
    assert stores.queue.get_dkim_key(DOMAIN) is None
