"""RFC 3464 delivery reports, parsed back with the stdlib `email` package field by field."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from email.message import Message

import pytest

from tayori.core.reasons import reason
from tayori.delivery.dsn import DsnAction, DsnRecipient, DsnReport, build_dsn, enhanced_status

NOW = datetime(2024, 4, 2, 10, 30, tzinfo=UTC)
ARRIVAL = datetime(2024, 4, 1, 9, 0, tzinfo=UTC)
HEADERS = (
    b"From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\n"
    b"Subject: =?utf-8?b?5LyX6K2w?=\r\nMessage-ID: <m1@example.test>\r\n\r\n"
)
BLOCKED = "554 5.7.1 Service unavailable; client [192.0.2.1] blocked due to poor reputation"


def report(*recipients: DsnRecipient, headers: bytes = HEADERS, sender: str = "") -> DsnReport:
    return DsnReport(
        reporting_mta="mail.example.test",
        sender=sender or "alice@example.test",
        queue_id="QID123",
        arrival_date=ARRIVAL,
        recipients=recipients,
        original_headers=headers,
        subject="会議の件",
        original_message_id="<m1@example.test>",
    )


def failed(address: str = "bob@remote.test", reply: str = BLOCKED) -> DsnRecipient:
    return DsnRecipient(
        address=address,
        action=DsnAction.FAILED,
        reason="remote.rejected",
        reply=reply,
        remote_mta="mx.remote.test",
        last_attempt=NOW,
    )


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.default)


def parts(message: Message) -> list[Message]:
    payload = message.get_payload()
    assert isinstance(payload, list)
    return payload


def status_blocks(message: Message) -> list[Message]:
    blocks = parts(message)[1].get_payload()
    assert isinstance(blocks, list)
    return blocks


def test_failure_report_structure_and_headers() -> None:
    raw = build_dsn(report(failed()), now=NOW)
    assert raw.isascii(), "the report must be 7-bit"
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    message = parse(raw)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    assert message["From"] == "Mail Delivery System <MAILER-DAEMON@mail.example.test>"
    assert message["To"].addresses[0].addr_spec == "alice@example.test"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["In-Reply-To"] == "<m1@example.test>"
    assert message["References"] == "<m1@example.test>"
    assert "Undelivered Mail Returned to Sender" in str(message["Subject"])
    assert "配送できなかったメール" in str(message["Subject"])
    assert message["Message-ID"].endswith("@mail.example.test>")
    assert email.utils.parsedate_to_datetime(message["Date"]) == NOW
    types = [part.get_content_type() for part in parts(message)]
    assert types == ["text/plain", "message/delivery-status", "text/rfc822-headers"]


def test_human_part_in_japanese_and_english_with_the_exact_reply() -> None:
    message = parse(build_dsn(report(failed()), now=NOW))
    human = parts(message)[0]
    assert human.get_content_charset() == "utf-8"
    text = human.get_content()
    entry = reason("remote.rejected")
    # Japanese first, then English, each with what happened and what to do.
    assert text.index("配送できませんでした") < text.index("could not be delivered")
    for words in (entry.summary.ja, entry.action.ja, entry.summary.en, entry.action.en):
        assert words in text
    assert text.count(BLOCKED) == 2
    assert "mx.remote.test" in text
    assert "会議の件" in text
    assert "<bob@remote.test>" in text


def test_delivery_status_fields() -> None:
    message = parse(build_dsn(report(failed()), now=NOW))
    per_message, per_recipient = status_blocks(message)
    assert per_message["Reporting-MTA"] == "dns; mail.example.test"
    assert per_message["X-Tayori-Queue-ID"] == "QID123"
    assert email.utils.parsedate_to_datetime(per_message["Arrival-Date"]) == ARRIVAL
    assert per_recipient["Final-Recipient"] == "rfc822; bob@remote.test"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.7.1"
    assert per_recipient["Remote-MTA"] == "dns; mx.remote.test"
    assert " ".join(per_recipient["Diagnostic-Code"].split()) == f"smtp; {BLOCKED}"
    assert email.utils.parsedate_to_datetime(per_recipient["Last-Attempt-Date"]) == NOW
    assert per_recipient["Will-Retry-Until"] is None


def test_long_diagnostic_is_folded_and_unfolds_to_the_exact_words() -> None:
    long_reply = "550 5.1.1 " + " ".join(f"word{i}" for i in range(60))
    raw = build_dsn(report(failed(reply=long_reply)), now=NOW)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    block = status_blocks(parse(raw))[1]
    assert " ".join(block["Diagnostic-Code"].split()) == f"smtp; {long_reply}"


def test_several_recipients_each_get_a_block() -> None:
    unknown = "550 5.1.1 <carol@remote.test>: Recipient address rejected: User unknown"
    raw = build_dsn(report(failed(), failed("carol@remote.test", unknown)), now=NOW)
    blocks = status_blocks(parse(raw))
    assert [b["Final-Recipient"] for b in blocks[1:]] == [
        "rfc822; bob@remote.test",
        "rfc822; carol@remote.test",
    ]
    assert [b["Status"] for b in blocks[1:]] == ["5.7.1", "5.1.1"]


def test_delay_warning() -> None:
    until = ARRIVAL + timedelta(days=5)
    delayed = DsnRecipient(
        address="bob@remote.test",
        action=DsnAction.DELAYED,
        reason="remote.deferred",
        reply="450 4.2.1 try later",
        remote_mta="mx.remote.test",
        last_attempt=NOW,
        will_retry_until=until,
    )
    message = parse(build_dsn(report(delayed), now=NOW))
    assert "Delayed Mail" in str(message["Subject"])
    assert "配送遅延" in str(message["Subject"])
    block = status_blocks(message)[1]
    assert block["Action"] == "delayed"
    assert block["Status"] == "4.2.1"
    assert email.utils.parsedate_to_datetime(block["Will-Retry-Until"]) == until
    text = parts(message)[0].get_content()
    assert "再送を続けます" in text and "keep trying" in text
    assert reason("remote.deferred").summary.ja in text


def test_local_failure_without_remote_server() -> None:
    nxdomain = DsnRecipient(
        address="x@nowhere.test",
        action=DsnAction.FAILED,
        reason="remote.rejected",
        reply="550 5.1.2 Host or domain name not found: nowhere.test does not exist (NXDOMAIN)",
        remote_mta="",
        last_attempt=NOW,
        local=True,
    )
    block = status_blocks(parse(build_dsn(report(nxdomain), now=NOW)))[1]
    assert block["Remote-MTA"] is None
    assert block["Diagnostic-Code"].startswith("x-tayori; 550 5.1.2")
    assert block["Status"] == "5.1.2"


def test_original_headers_part() -> None:
    part = parts(parse(build_dsn(report(failed()), now=NOW)))[2]
    headers = part.get_payload(decode=True)
    assert isinstance(headers, bytes)
    assert headers == HEADERS.rstrip(b"\r\n") + b"\r\n"


def test_eight_bit_original_headers_stay_exact_and_the_report_stays_7bit() -> None:
    raw_headers = "From: 太郎 <taro@example.test>\r\nSubject: 件名\r\n\r\n".encode()
    raw = build_dsn(report(failed(), headers=raw_headers), now=NOW)
    assert raw.isascii()
    part = parts(parse(raw))[2]
    assert part["Content-Transfer-Encoding"] == "quoted-printable"
    decoded = part.get_payload(decode=True)
    assert isinstance(decoded, bytes)
    assert decoded == raw_headers.rstrip(b"\r\n") + b"\r\n"


def test_control_characters_in_a_reply_cannot_inject_fields() -> None:
    evil = "550 5.1.1 bad\r\nFinal-Recipient: rfc822; evil@x.test"
    block = status_blocks(parse(build_dsn(report(failed(reply=evil)), now=NOW)))
    assert len(block) == 2
    assert block[1]["Final-Recipient"] == "rfc822; bob@remote.test"


def test_no_report_to_a_null_sender() -> None:
    with pytest.raises(ValueError, match="empty envelope sender"):
        build_dsn(
            DsnReport(
                reporting_mta="mail.example.test",
                sender="",
                queue_id="Q",
                arrival_date=ARRIVAL,
                recipients=(failed(),),
                original_headers=HEADERS,
            ),
            now=NOW,
        )


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        ("550 5.1.1 unknown", "5.1.1"),
        ("450 4.2.1 try later", "4.2.1"),
        ("550-5.7.1 first line", "5.7.1"),
        ("554 no enhanced code", "5.0.0"),
        ("421 closing", "4.0.0"),
        ("550 4.1.1 mismatched class", "5.0.0"),
        ("", "9.9.9"),
    ],
)
def test_enhanced_status(reply: str, status: str) -> None:
    assert enhanced_status(reply, "9.9.9") == status
