"""The webmail over HTTP in-process, on real stores (SQLite and PostgreSQL): sign-in,
folder list, reading, actions, security headers."""

from __future__ import annotations

from starlette.testclient import TestClient

from tayori.storage.records import SpecialUse
from tests.web.conftest import WebEnv, csrf_from, login

JAPANESE = (
    b"From: =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <yamada@remote.test>\r\n"
    b"To: taro@example.test\r\n"
    b"Subject: =?ISO-2022-JP?B?GyRCMnE1RBsoQg==?=\r\n"
    b"Date: Fri, 27 Nov 2026 10:00:00 +0900\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=ISO-2022-JP\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n\r\n"
    b"\x1b$B$3$s$K$A$O\x1b(B https://example.com/a?b=1&c=<2>\r\n"
)


def test_login_then_inbox(client: TestClient, web_env: WebEnv) -> None:
    first = client.get("/", follow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"].startswith("/login")
    response = login(client, web_env)
    assert response.status_code == 303, response.text
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    inbox = client.get("/")
    assert inbox.status_code == 200
    assert "<main" in inbox.text
    assert "受信箱" in inbox.text or "Inbox" in inbox.text


def test_read_japanese_message_marks_seen(client: TestClient, web_env: WebEnv) -> None:
    stored = web_env.put(JAPANESE)
    login(client, web_env)
    listing = client.get(f"/folder/{stored.mailbox_id}")
    assert "会議" in listing.text
    page = client.get(f"/message/{stored.id}", headers={"accept-language": "ja"})
    assert page.status_code == 200
    assert "会議" in page.text and "山田" in page.text and "こんにちは" in page.text
    # linkified, escaped
    assert (
        'href="https://example.com/a?b=1&amp;c="' in page.text
        or 'href="https://example.com/a?b=1&amp;c=' in page.text
    )
    assert "<2>" not in page.text
    again = web_env.stores.metadata.get_message(web_env.account.id, stored.id)
    assert again is not None and "\\Seen" in again.flags


def test_security_headers(client: TestClient, web_env: WebEnv) -> None:
    response = client.get("/login")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_post_without_csrf_token_is_refused(client: TestClient, web_env: WebEnv) -> None:
    stored = web_env.put(JAPANESE)
    login(client, web_env)
    refused = client.post(
        "/messages/act", data={"action": "trash", "ids": str(stored.id)}, follow_redirects=False
    )
    assert refused.status_code == 403
    wrong = client.post(
        "/messages/act",
        data={"action": "trash", "ids": str(stored.id), "csrf_token": "x" * 43},
        follow_redirects=False,
    )
    assert wrong.status_code == 403
    page = client.get(f"/folder/{stored.mailbox_id}")
    ok = client.post(
        "/messages/act",
        data={"action": "trash", "ids": str(stored.id), "csrf_token": csrf_from(page.text)},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    moved = web_env.stores.metadata.get_message(web_env.account.id, stored.id)
    trash = web_env.stores.metadata.get_mailbox(web_env.account.id, SpecialUse.TRASH)
    assert moved is not None and moved.mailbox_id == trash.id


def test_member_language_and_time_zone(client: TestClient, web_env: WebEnv) -> None:
    stored = web_env.put(JAPANESE)
    login(client, web_env)
    japanese = client.get(f"/message/{stored.id}", headers={"accept-language": "ja"})
    assert "差出人" in japanese.text and "(+0900)" in japanese.text
    web_env.stores.member.set_preferences(
        web_env.account.id, language="en", time_zone="Europe/London"
    )
    english = client.get(f"/message/{stored.id}", headers={"accept-language": "ja"})
    assert '<html lang="en">' in english.text
    assert "From" in english.text and "差出人" not in english.text
    assert "01:00 (+0000)" in english.text  # 10:00 in Tokyo
