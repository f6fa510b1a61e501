"""Composing: UTF-8 and legacy ISO-2022-JP, attachment names both ways, replies, forwards."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

from tayori.mime import Mailbox, parse_message
from tayori.mime.compose import (
    AttachmentSpec,
    Draft,
    compose,
    encode_header_text,
    forward_attachment,
    forward_subject,
    quote_for_reply,
    reply_subject,
)

FROM = Mailbox("髙橋 ①郎", "takahashi@example.jp")
TO = [Mailbox("山田 太郎", "taro@example.jp"), Mailbox("", "plain@example.org")]
WHEN = datetime(2024, 4, 1, 9, 0, tzinfo=UTC)


def draft(**changes: object) -> Draft:
    values: dict[str, object] = {
        "from_": FROM,
        "to": TO,
        "subject": "議題①②③とⅡ期計画（㈱テスト）",
        "text": "本文①\n髙﨑",
        "date": WHEN,
        "message_id": "m1@example.jp",
    }
    values.update(changes)
    return Draft(**values)  # type: ignore[arg-type]


def test_utf8_message_reads_back_exactly_and_is_7bit() -> None:
    attachments = [
        AttachmentSpec("会議資料①（最終版）.txt", "text/plain", b"data"),
        AttachmentSpec("plain.pdf", "application/pdf", b"%PDF"),
    ]
    raw = compose(draft(attachments=attachments, html="<p>本文①</p>"))
    assert raw.isascii() and b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    message = parse_message(raw)
    assert message.subject == "議題①②③とⅡ期計画（㈱テスト）"
    assert [str(m) for m in message.from_] == ["髙橋 ①郎 <takahashi@example.jp>"]
    assert message.text == "本文①\n髙﨑"
    assert [(a.filename, a.content()) for a in message.attachments] == [
        ("会議資料①（最終版）.txt", b"data"),
        ("plain.pdf", b"%PDF"),
    ]
    assert not message.defects
    # The stdlib reads it too, including the RFC 2231 name.
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    first = next(iter(parsed.iter_attachments()))
    assert first.get_filename() == "会議資料①（最終版）.txt"


def test_both_attachment_name_forms_are_written() -> None:
    raw = compose(draft(attachments=[AttachmentSpec("資料.txt", "text/plain", b"x")]))
    assert b"filename*=UTF-8''%E8%B3%87%E6%96%99.txt" in raw
    assert b'name="=?UTF-8?B?' in raw


def test_encoded_words_hold_whole_characters_and_stay_short() -> None:
    encoded = encode_header_text("長い件名" * 30)
    words = encoded.split("\r\n ")
    assert len(words) > 1 and all(len(w) <= 75 for w in words)
    assert all(parse_message(f"Subject: {w}\r\n\r\n".encode()).subject for w in words)
    assert encode_header_text("plain ascii") == "plain ascii"


def test_legacy_mode_uses_iso2022jp_only_when_everything_fits() -> None:
    fits = compose(
        draft(from_=Mailbox("山田 太郎", "t@example.jp"), subject="会議～", text="本日～")
    )
    assert b"charset=ISO-2022-JP" not in fits  # not asked for
    legacy = compose(
        draft(
            from_=Mailbox("山田 太郎", "t@example.jp"),
            subject="会議～",
            text="本日～",
            legacy_japanese=True,
        )
    )
    assert b"charset=ISO-2022-JP" in legacy and b"=?ISO-2022-JP?B?" in legacy
    assert parse_message(legacy).text == "本日～"
    vendor = compose(draft(legacy_japanese=True))  # ① and 髙 are not JIS X 0208
    assert b"ISO-2022-JP" not in vendor and parse_message(vendor).text == "本文①\n髙﨑"


def test_reply_and_forward_keep_the_original_characters() -> None:
    original = parse_message(compose(draft(subject="Re: RE[2]: 議題①")))
    assert reply_subject(original.subject) == "Re: 議題①"
    assert forward_subject("Fwd: x") == "Fwd: x"
    quoted = quote_for_reply(original)
    assert "> 本文①\n> 髙﨑" in quoted and "髙橋 ①郎" in quoted
    attachment = forward_attachment(original)
    assert attachment.content_type == "message/rfc822" and attachment.data == original.raw
    forwarded = parse_message(compose(draft(attachments=[attachment])))
    assert [m.subject for m in forwarded.attached_messages()] == ["Re: RE[2]: 議題①"]
