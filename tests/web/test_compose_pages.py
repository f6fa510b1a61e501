"""Compose-side endpoints over HTTP: the Spam / Not spam buttons (page and API), address
suggestions, and HTTP Basic on the API with app passwords once two-step login is on."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from tayori.auth.app_passwords import create_app_password
from tayori.storage.records import SpecialUse
from tests.web.conftest import WebEnv, csrf_from
from tests.web.test_settings_pages import app, member_client, signed_in  # noqa: F401

SPAMMY = (
    b"From: Shop <deals@remote.test>\r\nTo: taro@example.test\r\nSubject: cheap pills\r\n"
    b"Message-ID: <spam@remote.test>\r\n\r\nBuy cheap pills now\r\n"
)


def folder_ids(env: WebEnv, use: SpecialUse) -> list[int]:
    box = env.stores.metadata.get_mailbox(env.account.id, use)
    return [m.id for m in env.stores.metadata.list_messages(box.id)]


def test_spam_and_not_spam_buttons(member_client: TestClient, web_env: WebEnv) -> None:  # noqa: F811
    stored = web_env.put(SPAMMY)
    signed_in(member_client, web_env)
    token = csrf_from(member_client.get("/settings").text)
    moved = member_client.post(
        f"/message/{stored.id}/spam", data={"csrf_token": token}, follow_redirects=False
    )
    assert moved.status_code == 303
    assert moved.headers["location"] == f"/message/{stored.id}?done=spam:1"
    assert folder_ids(web_env, SpecialUse.JUNK) == [stored.id]
    totals, _ = web_env.stores.spam.lookup(set(), web_env.account.id)
    assert totals.spam == 1
    back = member_client.post(
        f"/message/{stored.id}/not-spam",
        data={"csrf_token": token, "back": "/folder/1"},
        follow_redirects=False,
    )
    assert back.headers["location"] == "/folder/1?done=not-spam:1"
    assert folder_ids(web_env, SpecialUse.INBOX) == [stored.id]
    totals, _ = web_env.stores.spam.lookup(set(), web_env.account.id)
    assert (totals.spam, totals.ham) == (0, 1)
    forged = member_client.post(f"/message/{stored.id}/spam", data={}, follow_redirects=False)
    assert forged.status_code == 403  # no CSRF token, nothing moved
    assert folder_ids(web_env, SpecialUse.INBOX) == [stored.id]


def test_suggestions_from_recent_correspondents(
    member_client: TestClient,  # noqa: F811
    web_env: WebEnv,
) -> None:
    from datetime import UTC, datetime

    web_env.stores.member.record_correspondents(
        web_env.account.id, [("hanako@remote.test", "山田 花子")], datetime.now(UTC)
    )
    signed_in(member_client, web_env)
    found = member_client.get("/compose/suggest?q=han").json()
    assert found == [{"address": "hanako@remote.test", "name": "山田 花子"}]
    assert member_client.get("/compose/suggest?q=zzz").json() == []
    page = member_client.get("/compose")
    assert '<option value="hanako@remote.test">山田 花子</option>' in page.text


def test_api_basic_takes_app_passwords_when_two_step_is_on(
    app: Any,  # noqa: F811
    web_env: WebEnv,
) -> None:
    stored = web_env.put(SPAMMY)
    member = web_env.stores.member
    _, app_password = create_app_password(member, web_env.account.id, "script")
    member.begin_totp(web_env.account.id, "JBSWY3DPEHPK3PXP")
    member.enable_totp(web_env.account.id, 1)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        url = f"/api/v1/messages/{stored.id}/spam"
        headers = {"content-type": "application/json"}
        refused = client.post(url, auth=(web_env.address, web_env.password), headers=headers)
        assert refused.status_code == 401
        assert folder_ids(web_env, SpecialUse.INBOX) == [stored.id]
        done = client.post(url, auth=(web_env.address, app_password), headers=headers)
        assert done.status_code == 200 and done.json() == {"moved": 1, "folder": "Junk"}
        assert folder_ids(web_env, SpecialUse.JUNK) == [stored.id]
