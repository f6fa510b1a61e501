"""Folder view and reading over HTTP: sort, page, search, bulk actions, downloads, source,
encoding choice, the sandboxed body."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from starlette.testclient import TestClient

from tayori.storage.records import SpecialUse
from tests.web.conftest import WebEnv, csrf_from, login
from tests.web.japanese import encode_cp50220, encoded_word, rfc2231_name


@pytest.fixture
def web_settings() -> dict[str, Any]:
    return {"page_size": 3, "large_message_size": 2000}


def plain(subject: str, sender: str = "a@remote.test", body: str = "hello", pad: int = 0) -> bytes:
    return (
        f"From: {sender}\r\nTo: taro@example.test\r\nSubject: {subject}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n{'x' * pad}\r\n"
    ).encode()


def subjects(html: str) -> list[str]:
    return re.findall(r'<td class="subject"><a href="/message/\d+">([^<]*)</a>', html)


def test_sort_page_and_large_mark(client: TestClient, web_env: WebEnv) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for number, (subject, sender, pad) in enumerate(
        [
            ("alpha", "c@r.test", 0),
            ("bravo", "a@r.test", 5000),
            ("charlie", "b@r.test", 10),
            ("delta", "d@r.test", 0),
        ]
    ):
        stored = web_env.put(plain(subject, sender, pad=pad), when=start + timedelta(hours=number))
    login(client, web_env)
    inbox = stored.mailbox_id
    first = client.get(f"/folder/{inbox}")
    assert subjects(first.text) == ["delta", "charlie", "bravo"]
    assert 'class="large"' in first.text
    second = client.get(f"/folder/{inbox}?page=2")
    assert subjects(second.text) == ["alpha"]
    by_subject = client.get(f"/folder/{inbox}?sort=subject&order=asc")
    assert subjects(by_subject.text) == ["alpha", "bravo", "charlie"]
    by_size = client.get(f"/folder/{inbox}?sort=size&order=desc")
    assert subjects(by_size.text)[0] == "bravo"
    by_sender = client.get(f"/folder/{inbox}?sort=from&order=asc")
    assert subjects(by_sender.text) == ["bravo", "charlie", "alpha"]


def test_search_form(client: TestClient, web_env: WebEnv) -> None:
    web_env.put(plain("明日の会議について", body="資料を送ります"))
    web_env.put(plain("lunch", sender="hanako@remote.test", body="お昼"))
    stored = web_env.put(plain("other", body="nothing"))
    login(client, web_env)
    inbox = stored.mailbox_id
    assert subjects(client.get(f"/folder/{inbox}?subject=会議").text) == ["明日の会議について"]
    assert subjects(client.get(f"/folder/{inbox}?body=資料").text) == ["明日の会議について"]
    assert subjects(client.get(f"/folder/{inbox}?from=hanako").text) == ["lunch"]
    everywhere = client.get("/search?text=会議")
    assert subjects(everywhere.text) == ["明日の会議について"]
    assert subjects(client.get(f"/folder/{inbox}?attachment=yes").text) == []


def test_bulk_actions(client: TestClient, web_env: WebEnv) -> None:
    one = web_env.put(plain("one"))
    two = web_env.put(plain("two"))
    login(client, web_env)
    page = client.get(f"/folder/{one.mailbox_id}")
    token = csrf_from(page.text)
    junk = web_env.stores.metadata.get_mailbox(web_env.account.id, SpecialUse.JUNK)
    response = client.post(
        "/messages/act",
        data={
            "csrf_token": token,
            "action": "read",
            "ids": [str(one.id), str(two.id)],
            "back": f"/folder/{one.mailbox_id}",
        },
    )
    assert "2 通を既読にしました" in response.text or "Marked 2 messages" in response.text
    for message_id in (one.id, two.id):
        got = web_env.stores.metadata.get_message(web_env.account.id, message_id)
        assert got is not None and "\\Seen" in got.flags
    client.post(
        "/messages/act",
        data={"csrf_token": token, "action": "move", "target": str(junk.id), "ids": [str(two.id)]},
    )
    moved = web_env.stores.metadata.get_message(web_env.account.id, two.id)
    assert moved is not None and moved.mailbox_id == junk.id
    assert "迷惑メール" in client.get(f"/folder/{junk.id}").text


def japanese_with_attachment() -> bytes:
    return (
        (
            f"From: {encoded_word('髙橋')} <t@remote.test>\r\nTo: taro@example.test\r\n"
            f"Subject: {encoded_word('①資料')}\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
            "Content-Type: text/plain; charset=ISO-2022-JP\r\n\r\n"
        ).encode()
        + encode_cp50220("髙橋です")
        + (
            "\r\n--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
            f"Content-Disposition: attachment; filename*={rfc2231_name('①髙.png')}\r\n\r\n"
            "iVBORw0KGgo=\r\n--b--\r\n"
        ).encode()
    )


def test_download_preview_source_eml(client: TestClient, web_env: WebEnv) -> None:
    stored = web_env.put(japanese_with_attachment())
    login(client, web_env)
    page = client.get(f"/message/{stored.id}")
    assert "①髙.png" in page.text and "①資料" in page.text
    download = client.get(f"/message/{stored.id}/attachment/0")
    disposition = download.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert unquote(disposition.split("filename*=UTF-8''")[1]) == "①髙.png"
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.content == b"\x89PNG\r\n\x1a\n"
    preview = client.get(f"/message/{stored.id}/preview/0")
    assert preview.headers["content-type"] == "image/png"
    assert preview.headers["content-disposition"].startswith("inline;")
    assert preview.headers["x-frame-options"] == "DENY"
    assert "sandbox" in preview.headers["content-security-policy"]
    source = client.get(f"/message/{stored.id}/source")
    assert source.headers["content-type"].startswith("text/plain")
    assert "Content-Disposition: attachment" in source.text
    eml = client.get(f"/message/{stored.id}/eml")
    with web_env.stores.blobs.open(stored.blob_ref) as stream:
        raw = stream.read()
    assert eml.content == raw and eml.headers["content-type"] == "message/rfc822"
    assert client.get(f"/message/{stored.id}/attachment/5").status_code == 404


def test_choose_encoding(client: TestClient, web_env: WebEnv) -> None:
    # Shift_JIS bytes mislabelled as ISO-8859-1, as broken senders do.
    raw = (
        b"From: a@remote.test\r\nSubject: mislabelled\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\n"
        + "日本語の本文".encode("cp932")
        + b"\r\n"
    )
    stored = web_env.put(raw)
    login(client, web_env)
    assert "日本語の本文" not in client.get(f"/message/{stored.id}").text
    fixed = client.get(f"/message/{stored.id}?charset=shift_jis")
    assert "日本語の本文" in fixed.text


def test_html_body_is_a_sandboxed_document(client: TestClient, web_env: WebEnv) -> None:
    raw = (
        b"From: a@remote.test\r\nSubject: html\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b'<p onclick="x()">hi<script>alert(1)</script><img src="https://t.example/p.gif"></p>\r\n'
    )
    stored = web_env.put(raw)
    login(client, web_env)
    page = client.get(f"/message/{stored.id}")
    iframe = re.search(r"<iframe[^>]*>", page.text)
    assert iframe is not None
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in iframe.group(0)
    assert "allow-scripts" not in iframe.group(0) and "allow-same-origin" not in iframe.group(0)
    assert 'id="show-images"' in page.text
    body = client.get(f"/message/{stored.id}/body")
    csp = body.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "img-src data:;" in csp
    assert "script" not in body.text and "onclick" not in body.text
    assert "t.example" not in body.text
    shown = client.get(f"/message/{stored.id}/body?images=1")
    assert "https://t.example/p.gif" in shown.text
    assert "img-src data: https:" in shown.headers["content-security-policy"]


def test_quota_meter_and_warning(client: TestClient, web_env: WebEnv) -> None:
    web_env.stores.metadata.set_quota(web_env.address, 1100)
    web_env.put(plain("big", pad=900))
    login(client, web_env)
    page = client.get("/", follow_redirects=True)
    assert 'id="quota"' in page.text and "warning" in page.text
    assert "残りわずか" in page.text or "almost full" in page.text


def test_images_always_shown_for_a_chosen_sender(client: TestClient, web_env: WebEnv) -> None:
    raw = (
        b"From: News <news@remote.test>\r\nSubject: html\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b'<p>hi<img src="https://t.example/p.gif"></p>\r\n'
    )
    stored = web_env.put(raw)
    login(client, web_env)
    assert f'src="/message/{stored.id}/body"' in client.get(f"/message/{stored.id}").text
    web_env.stores.member.add_image_sender(web_env.account.id, "news@remote.test")
    page = client.get(f"/message/{stored.id}")
    assert f'src="/message/{stored.id}/body?images=1"' in page.text
    assert 'id="show-images"' not in page.text


def test_always_show_images_button_remembers_the_sender(
    client: TestClient, web_env: WebEnv
) -> None:
    raw = (
        b"From: News <News@Remote.test>\r\nSubject: html\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b'<p>hi<img src="https://t.example/p.gif"></p>\r\n'
    )
    first = web_env.put(raw)
    second = web_env.put(raw.replace(b"hi", b"again"))
    login(client, web_env)
    page = client.get(f"/message/{first.id}")
    assert 'id="always-show-images"' in page.text
    response = client.post(
        f"/message/{first.id}/images/always",
        data={"csrf_token": csrf_from(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/message/{first.id}?images=1"
    assert (
        "news@remote.test"
        in web_env.stores.member.get_preferences(web_env.account.id).image_senders
    )
    later = client.get(f"/message/{second.id}")
    assert f'src="/message/{second.id}/body?images=1"' in later.text
    assert 'id="show-images"' not in later.text
