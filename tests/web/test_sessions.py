"""Sessions, sign-in, CSRF and the proxy rules, over HTTP against real stores."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from tayori.web.sessions import COOKIE
from tests.web.conftest import WebEnv, csrf_from, login


def session_cookie(response: Any) -> str:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{COOKIE}="):
            return header
    raise AssertionError(f"no session cookie in {response.headers}")


def test_only_a_hash_of_the_cookie_is_stored(client: TestClient, web_env: WebEnv) -> None:
    response = login(client, web_env)
    token = session_cookie(response).split(";")[0].split("=", 1)[1]
    store = web_env.stores.web_sessions
    assert store.get_session(token) is None
    stored = store.get_session(hashlib.sha256(token.encode()).hexdigest())
    assert stored is not None and stored.account_id == web_env.account.id
    assert web_env.password not in repr(stored)


def test_cookie_flags_off_loopback(web_env: WebEnv) -> None:
    with TestClient(web_env.app, base_url="https://mail.test", client=("203.0.113.7", 4000)) as c:
        cookie = session_cookie(login(c, web_env))
    assert "Secure" in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()


def test_cookie_not_secure_on_plain_loopback(client: TestClient, web_env: WebEnv) -> None:
    assert "Secure" not in session_cookie(login(client, web_env))


def test_wrong_password(client: TestClient, web_env: WebEnv) -> None:
    response = login(client, web_env, password="wrong")
    assert response.status_code == 401
    assert 'name="username"' in response.text and 'name="password"' in response.text
    assert COOKIE not in response.headers.get("set-cookie", "")


def test_login_is_throttled_like_pop3(client: TestClient, web_env: WebEnv) -> None:
    limit = web_env.settings.auth.max_failures_per_account
    for _ in range(limit):
        assert login(client, web_env, password="guess").status_code == 401
    locked = login(client, web_env)  # the right password, but locked out now
    assert locked.status_code == 429
    assert COOKIE not in locked.headers.get("set-cookie", "")


def test_login_form_needs_its_token(client: TestClient, web_env: WebEnv) -> None:
    response = client.post(
        "/login",
        data={"username": web_env.address, "password": web_env.password},
        follow_redirects=False,
    )
    assert response.status_code == 403


def test_cross_site_post_refused_even_with_token(client: TestClient, web_env: WebEnv) -> None:
    login(client, web_env)
    token = csrf_from(client.get("/sessions").text)
    response = client.post(
        "/logout",
        data={"csrf_token": token},
        headers={"sec-fetch-site": "cross-site"},
        follow_redirects=False,
    )
    assert response.status_code == 403


def test_logout_ends_the_session(client: TestClient, web_env: WebEnv) -> None:
    login(client, web_env)
    token = csrf_from(client.get("/sessions").text)
    assert (
        client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code
        == 303
    )
    assert web_env.stores.web_sessions.list_sessions(web_env.account.id) == []
    assert client.get("/", follow_redirects=False).headers["location"].startswith("/login")


def test_idle_timeout(client: TestClient, web_env: WebEnv) -> None:
    start = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    web_env.now[:] = [start]
    login(client, web_env)
    idle = web_env.settings.web.session_idle_timeout
    web_env.now[:] = [start + timedelta(seconds=idle - 5)]
    assert client.get("/sessions").status_code == 200  # and counts as activity
    web_env.now[:] = [start + timedelta(seconds=2 * idle - 10)]
    assert client.get("/sessions").status_code == 200
    web_env.now[:] = [start + timedelta(seconds=3 * idle)]
    assert client.get("/sessions", follow_redirects=False).status_code == 303
    assert web_env.stores.web_sessions.list_sessions(web_env.account.id) == []


@pytest.fixture
def web_settings() -> dict[str, Any]:
    return {"session_idle_timeout": 600.0, "session_absolute_timeout": 1800.0}


def test_absolute_timeout(client: TestClient, web_env: WebEnv) -> None:
    start = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    web_env.now[:] = [start]
    login(client, web_env)
    for minutes in (8, 16, 24):  # active all the time
        web_env.now[:] = [start + timedelta(minutes=minutes)]
        assert client.get("/sessions").status_code == 200
    web_env.now[:] = [start + timedelta(minutes=31)]
    assert client.get("/sessions", follow_redirects=False).status_code == 303


def test_sign_out_elsewhere(web_env: WebEnv) -> None:
    loopback = {"base_url": "http://127.0.0.1", "client": ("127.0.0.1", 1)}
    with TestClient(web_env.app, **loopback) as a, TestClient(web_env.app, **loopback) as b:
        login(a, web_env)
        login(b, web_env)
        page = a.get("/sessions")
        assert page.text.count("<tr") == 3  # header + two sessions
        a.post("/sessions/others", data={"csrf_token": csrf_from(page.text)})
        assert a.get("/sessions").status_code == 200
        assert b.get("/sessions", follow_redirects=False).status_code == 303
    assert len(web_env.stores.web_sessions.list_sessions(web_env.account.id)) == 1


def test_new_session_id_at_sign_in(client: TestClient, web_env: WebEnv) -> None:
    first = session_cookie(login(client, web_env)).split(";")[0]
    second = session_cookie(login(client, web_env)).split(";")[0]
    assert first != second
    assert len(web_env.stores.web_sessions.list_sessions(web_env.account.id)) == 1


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil"])
def test_no_open_redirect_after_sign_in(client: TestClient, web_env: WebEnv, target: str) -> None:
    page = client.get("/login")
    response = client.post(
        "/login",
        data={
            "username": web_env.address,
            "password": web_env.password,
            "csrf_token": csrf_from(page.text),
            "next": target,
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"
