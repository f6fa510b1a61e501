"""The JSON API: session cookie or HTTP Basic, OpenAPI, same data as the pages."""

from __future__ import annotations

import base64

from starlette.testclient import TestClient

from tests.web.conftest import WebEnv, csrf_from, login
from tests.web.test_pages import JAPANESE


def basic(env: WebEnv, password: str | None = None) -> dict[str, str]:
    secret = f"{env.address}:{env.password if password is None else password}"
    return {"authorization": "Basic " + base64.b64encode(secret.encode()).decode()}


def test_openapi_describes_the_api(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert {"/api/v1/folders", "/api/v1/messages/{message_id}"} <= set(spec["paths"])
    assert not any(path.startswith("/message/") for path in spec["paths"])


def test_basic_auth(client: TestClient, web_env: WebEnv) -> None:
    stored = web_env.put(JAPANESE)
    refused = client.get("/api/v1/folders", headers=basic(web_env, "wrong"))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Basic")
    folders = client.get("/api/v1/folders", headers=basic(web_env)).json()
    inbox = folders["folders"][0]
    assert inbox["special_use"] == "INBOX" and inbox["unread"] == 1
    assert folders["quota"]["limit"] == 50_000_000
    listing = client.get(f"/api/v1/folders/{inbox['id']}/messages", headers=basic(web_env)).json()
    assert listing["total"] == 1 and listing["messages"][0]["subject"] == "会議"
    message = client.get(f"/api/v1/messages/{stored.id}", headers=basic(web_env)).json()
    assert message["subject"] == "会議" and message["from"][0]["name"] == "山田"
    assert "こんにちは" in message["text"]
    assert message["attachments"] == []


def test_attachment_download_with_basic_auth(client: TestClient, web_env: WebEnv) -> None:
    from tests.web.test_reading import japanese_with_attachment

    stored = web_env.put(japanese_with_attachment())
    message = client.get(f"/api/v1/messages/{stored.id}", headers=basic(web_env)).json()
    [attachment] = message["attachments"]
    assert attachment["filename"] == "①髙.png" and attachment["size"] == 8
    data = client.get(attachment["download_url"], headers=basic(web_env))
    assert data.content == b"\x89PNG\r\n\x1a\n"
    assert "filename*=UTF-8''%E2%91%A0" in data.headers["content-disposition"]


def test_basic_auth_writes_need_json(client: TestClient, web_env: WebEnv) -> None:
    stored = web_env.put(JAPANESE)
    form = client.post("/api/v1/messages/flags", data={"ids": stored.id}, headers=basic(web_env))
    assert form.status_code == 403
    ok = client.post(
        "/api/v1/messages/flags",
        json={"ids": [stored.id], "add": ["\\Seen"]},
        headers=basic(web_env),
    )
    assert ok.status_code == 200 and ok.json() == {"changed": 1}


def test_session_cookie_and_csrf_header(client: TestClient, web_env: WebEnv) -> None:
    stored = web_env.put(JAPANESE)
    login(client, web_env)
    assert client.get("/api/v1/folders").status_code == 200
    body = {"ids": [stored.id], "add": ["\\Flagged"]}
    assert client.post("/api/v1/messages/flags", json=body).status_code == 403
    token = csrf_from(client.get("/sessions").text)
    response = client.post("/api/v1/messages/flags", json=body, headers={"x-csrf-token": token})
    assert response.status_code == 200


def test_other_members_messages_are_not_found(client: TestClient, web_env: WebEnv) -> None:
    from tayori.auth.passwords import hash_password

    other = web_env.stores.metadata.add_account("hanako@example.test", hash_password("x"), 0)
    theirs = web_env.put(JAPANESE, account=other)
    login(client, web_env)
    assert client.get(f"/message/{theirs.id}").status_code == 404
    assert client.get(f"/message/{theirs.id}/eml").status_code == 404
    assert client.get(f"/api/v1/messages/{theirs.id}", headers=basic(web_env)).status_code == 404
