"""Search text extraction: decoded fields, attachments, bounds."""

from __future__ import annotations

from tayori.delivery.indexing import message_index
from tayori.mime.searchtext import MAX_BODY_CHARS, search_text
from tayori.storage.search_terms import TERMS_VERSION

JIS_MESSAGE = (
    b"From: =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <yamada@example.jp>\r\n"
    b"To: a@example.test\r\nCc: Hanako <h@example.test>\r\n"
    b"Subject: =?ISO-2022-JP?B?GyRCTEAbKEI=?=\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=ISO-2022-JP\r\n\r\n"
    + "明日の会議について\r\n".encode("iso-2022-jp")
)


def test_fields_are_decoded_to_unicode() -> None:
    text = search_text(JIS_MESSAGE)
    assert text.from_ == "山田 yamada@example.jp"
    assert text.sender == "山田"
    assert text.to == "a@example.test Hanako h@example.test"
    assert text.subject == "明"
    assert "明日の会議について" in text.body
    assert not text.has_attachment


def test_html_only_body_and_attachment_names_are_text() -> None:
    raw = (
        b'From: a@x.test\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        + "<p>見積書を<b>送付</b>します</p><script>nope()</script>\r\n".encode()
        + b"--b\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename*=UTF-8''%E8%A6%8B%E7%A9%8D.pdf\r\n\r\n"
        b"%PDF\r\n--b--\r\n"
    )
    text = search_text(raw)
    assert "見積書を送付します" in text.body
    assert "見積.pdf" in text.body
    assert "<b>" not in text.body
    assert text.has_attachment


def test_body_is_bounded() -> None:
    raw = (
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + ("あ" * (MAX_BODY_CHARS * 2)).encode()
    )
    assert len(search_text(raw).body) == MAX_BODY_CHARS


def test_garbage_never_raises() -> None:
    for raw in (b"", b"\xff\xfe\x00", b"Subject: =?bogus?Q?x?=\r\n\r\n\x1b$B", b"\r\n" * 100):
        entry = message_index(raw)
        assert entry.version == TERMS_VERSION


def test_index_entry_has_sort_keys_and_terms() -> None:
    entry = message_index(JIS_MESSAGE)
    assert entry.sort_from == "山田"
    assert entry.sort_subject == "明"
    assert "b会議" in entry.terms.split()
    assert "fyamada" in entry.terms.split()
