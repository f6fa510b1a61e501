"""Settings and compose pages over HTTP (in-process app, real stores on both back ends): forms
post with CSRF tokens, settings persist in the stores, errors come back in the member's
language, and the TOTP step of signing in."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from tayori.auth import totp
from tayori.auth.authenticator import Authenticator
from tayori.auth.throttle import LoginThrottle
from tayori.rules.model import RuleList, RuleOwner
from tayori.storage.records import SpecialUse
from tests.web.conftest import WebEnv, csrf_from, login


@pytest.fixture
def app(web_env: WebEnv) -> Any:
    """The app as `tayori.app` builds it: the authenticator knows TOTP and app passwords,
    and pages read the member's language from the member store."""
    from tayori.web import WebContext, create_app

    settings = web_env.settings
    authenticator = Authenticator(
        web_env.stores.metadata,
        LoginThrottle(settings.auth),
        settings.auth,
        member=web_env.stores.member,
    )
    context = WebContext(
        settings=settings,
        stores=web_env.stores,
        authenticator=authenticator,
        preferences=web_env.stores.member.get_preferences,
    )
    return create_app(context)


@pytest.fixture
def member_client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000)) as c:
        yield c


def signed_in(client: TestClient, env: WebEnv) -> None:
    response = login(client, env)
    assert response.status_code == 303, response.text


def post(client: TestClient, page: str, action: str, data: dict[str, Any]) -> Any:
    token = csrf_from(client.get(page).text)
    return client.post(action, data={**data, "csrf_token": token}, follow_redirects=False)


def test_reject_list_and_spam_settings(member_client: TestClient, web_env: WebEnv) -> None:
    signed_in(member_client, web_env)
    page = member_client.get("/settings/spam")
    assert page.status_code == 200 and "<main" in page.text
    added = post(
        member_client,
        "/settings/spam",
        "/settings/rules/add",
        {"list": "reject", "pattern": "Spammer@Remote.test", "action": "reject"},
    )
    assert added.status_code == 303 and added.headers["location"] == "/settings/spam?done=added"
    owner = RuleOwner.account(web_env.account.id)
    [rule] = web_env.stores.rules.list_rules(owner, RuleList.REJECT)
    assert rule.pattern == "spammer@remote.test"
    shown = member_client.get("/settings/spam?done=added")
    assert "spammer@remote.test" in shown.text
    bad = post(
        member_client,
        "/settings/spam",
        "/settings/rules/add",
        {"list": "reject", "pattern": "no good!", "action": "reject"},
    )
    assert bad.status_code == 400
    assert "アドレスでもドメインでもありません" in bad.text  # Accept-Language absent: ja
    removed = post(
        member_client, "/settings/spam", f"/settings/rules/{rule.id}/remove", {"list": "reject"}
    )
    assert removed.status_code == 303
    assert web_env.stores.rules.list_rules(owner) == []
    saved = post(member_client, "/settings/spam", "/settings/spam", {"sensitivity": "high"})
    assert saved.status_code == 303
    spam = web_env.stores.rules.get_spam_settings(web_env.account.id)
    assert not spam.enabled and spam.sensitivity == "high"


def test_forms_need_the_csrf_token(member_client: TestClient, web_env: WebEnv) -> None:
    signed_in(member_client, web_env)
    response = member_client.post(
        "/settings/forwarding/add", data={"address": "x@remote.test"}, follow_redirects=False
    )
    assert response.status_code == 403
    assert web_env.stores.rules.get_forwarding(web_env.account.id).targets == ()


def test_forwarding_and_profile(member_client: TestClient, web_env: WebEnv) -> None:
    signed_in(member_client, web_env)
    post(
        member_client,
        "/settings/forwarding",
        "/settings/forwarding/add",
        {"address": "me@remote.test"},
    )
    post(member_client, "/settings/forwarding", "/settings/forwarding/options", {})
    forwarding = web_env.stores.rules.get_forwarding(web_env.account.id)
    assert forwarding.targets == ("me@remote.test",)
    assert not forwarding.keep_copy and forwarding.skip_spam
    post(
        member_client,
        "/settings",
        "/settings/profile",
        {"display_name": "山田 太郎", "signature": "--\n太郎"},
    )
    post(member_client, "/settings", "/settings/locale", {"language": "en", "time_zone": "UTC"})
    prefs = web_env.stores.member.get_preferences(web_env.account.id)
    assert (prefs.display_name, prefs.language, prefs.time_zone) == ("山田 太郎", "en", "UTC")
    english = member_client.get("/settings")
    assert '<html lang="en">' in english.text and "Name and signature" in english.text
    compose = member_client.get("/compose")
    assert "--\n太郎" in compose.text  # the signature starts a new message


def test_image_senders_are_listed_and_removed(member_client: TestClient, web_env: WebEnv) -> None:
    """A sender added with "Always show images from this sender" is listed on /settings with
    a remove button; removing it blocks that sender's images again."""
    raw = (
        b"From: News <News@Remote.test>\r\nSubject: html\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b'<p>hi<img src="https://t.example/p.gif"></p>\r\n'
    )
    stored = web_env.put(raw)
    web_env.stores.member.add_image_sender(web_env.account.id, "keep@remote.test")
    signed_in(member_client, web_env)
    ja = {"accept-language": "ja"}
    empty_list = member_client.get("/settings", headers=ja).text
    assert "news@remote.test" not in empty_list
    post(member_client, f"/message/{stored.id}", f"/message/{stored.id}/images/always", {})
    page = member_client.get("/settings", headers=ja).text
    senders = page[page.index('<ul id="image-senders">') :]
    senders = senders[: senders.index("</ul>")]
    assert re.findall(r'<span class="address">([^<]+)</span>', senders) == [
        "keep@remote.test",
        "news@remote.test",
    ]
    assert 'aria-label="news@remote.test を削除"' in senders
    assert "画像を常に表示する差出人" in page
    english = member_client.get("/settings", headers={"accept-language": "en"}).text
    assert 'aria-label="Remove news@remote.test"' in english
    assert "Remote images in mail from these senders are shown without asking." in english

    without_token = member_client.post(
        "/settings/images/remove", data={"address": "news@remote.test"}, follow_redirects=False
    )
    assert without_token.status_code == 403
    removed = post(
        member_client, "/settings", "/settings/images/remove", {"address": "News@Remote.test"}
    )
    assert removed.status_code == 303
    assert removed.headers["location"] == "/settings?done=images-removed"
    prefs = web_env.stores.member.get_preferences(web_env.account.id)
    assert prefs.image_senders == ("keep@remote.test",)
    done = member_client.get(removed.headers["location"], headers=ja).text
    assert "その差出人の画像は、表示を選ぶまで再びブロックされます。" in done
    assert "news@remote.test" not in done and "keep@remote.test" in done
    message = member_client.get(f"/message/{stored.id}").text
    assert 'id="show-images"' in message

    post(member_client, "/settings", "/settings/images/remove", {"address": "keep@remote.test"})
    cleared = member_client.get("/settings", headers={"accept-language": "en"}).text
    assert "No senders yet." in cleared and 'class="address"' not in cleared


def test_totp_sign_in_step(member_client: TestClient, web_env: WebEnv) -> None:
    signed_in(member_client, web_env)
    post(member_client, "/settings/security", "/settings/totp/begin", {})
    page = member_client.get("/settings/security")
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page.text)
    assert secret is not None
    key = secret.group(1).replace(" ", "")
    qr = member_client.get("/settings/totp/qr.svg")
    assert qr.status_code == 200 and "<svg" in qr.text
    now = totp.step_at(time.time())
    post(
        member_client,
        "/settings/security",
        "/settings/totp/confirm",
        {"code": totp.code_at(key, now)},
    )
    assert web_env.stores.member.get_preferences(web_env.account.id).totp_enabled
    created = post(
        member_client, "/settings/security", "/settings/app-passwords", {"name": "phone"}
    )
    assert created.headers["cache-control"] == "no-store"
    assert re.search(r'id="new-app-password">[a-z2-9-]{19}<', created.text)
    member_client.cookies.clear()

    first = login(member_client, web_env)
    assert first.headers["location"] == "/login/totp"
    assert member_client.get("/", follow_redirects=False).headers["location"] == "/login/totp"
    form = member_client.get("/login/totp")
    wrong = member_client.post(
        "/login/totp",
        data={"code": totp.code_at(key, now - 5), "csrf_token": csrf_from(form.text)},
        follow_redirects=False,
    )
    assert wrong.status_code == 401
    good = member_client.post(
        "/login/totp",
        data={"code": totp.code_at(key, now + 1), "csrf_token": csrf_from(form.text)},
        follow_redirects=False,
    )
    assert good.status_code == 303 and good.headers["location"] == "/"
    inbox = member_client.get("/", follow_redirects=True)
    assert inbox.status_code == 200 and "/login" not in str(inbox.url)


def test_compose_without_a_submission_path_saves_drafts(
    member_client: TestClient, web_env: WebEnv
) -> None:
    signed_in(member_client, web_env)
    page = member_client.get("/compose")
    assert page.status_code == 200 and 'name="to"' in page.text
    response = member_client.post(
        "/compose",
        data={
            "csrf_token": csrf_from(page.text),
            "action": "save",
            "to": "someone@remote.test",
            "subject": "下書き",
            "body": "本文",
        },
        files=[("attachments", ("メモ.txt", b"memo", "text/plain"))],
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    draft_id = int(response.headers["location"].split("draft=")[1].split("&")[0])
    drafts = web_env.stores.metadata.get_mailbox(web_env.account.id, SpecialUse.DRAFTS)
    assert [m.id for m in web_env.stores.metadata.list_messages(drafts.id)] == [draft_id]
    reopened = member_client.get(response.headers["location"])
    assert "メモ.txt" in reopened.text and "下書きを保存しました" in reopened.text
    sent = member_client.post(
        "/compose",
        data={"csrf_token": csrf_from(page.text), "action": "send", "to": "x@remote.test"},
        follow_redirects=False,
    )
    assert sent.status_code == 400 and "このサーバーでは送信できません" in sent.text


def test_compose_offers_the_members_aliases_as_from(
    member_client: TestClient, web_env: WebEnv
) -> None:
    signed_in(member_client, web_env)
    single = member_client.get("/compose").text
    assert '<output id="from">' in single and 'name="from_address"' not in single
    domain = web_env.address.rpartition("@")[2]
    web_env.stores.metadata.add_alias(f"shop@{domain}", [web_env.address])
    page = member_client.get("/compose").text
    options = re.findall(r'<option value="([^"]+)"( selected)?>', page.split('id="from"')[1])
    assert options[:2] == [(web_env.address, " selected"), (f"shop@{domain}", "")]
    saved = member_client.post(
        "/compose",
        data={
            "csrf_token": csrf_from(page),
            "action": "save",
            "from_address": f"shop@{domain}",
            "subject": "from the shop",
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    reopened = member_client.get(saved.headers["location"]).text
    assert f'<option value="shop@{domain}" selected>' in reopened
    refused = member_client.post(
        "/compose",
        data={
            "csrf_token": csrf_from(page),
            "action": "save",
            "from_address": "someone@remote.test",
        },
        follow_redirects=False,
    )
    assert refused.status_code == 400
    assert (
        "someone@remote.test" in refused.text and "このアカウントのアドレスではない" in refused.text
    )


def test_password_change_signs_out_other_browsers(app: Any, web_env: WebEnv) -> None:
    def client() -> TestClient:
        return TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000))

    with client() as mine, client() as other:
        signed_in(mine, web_env)
        signed_in(other, web_env)
        wrong = post(
            mine,
            "/settings/security",
            "/settings/password",
            {"current_password": "nope", "new_password": "n" * 10, "new_password_again": "n" * 10},
        )
        assert wrong.status_code == 400 and "現在のパスワードが正しくありません" in wrong.text
        changed = post(
            mine,
            "/settings/security",
            "/settings/password",
            {
                "current_password": web_env.password,
                "new_password": "a new long password",
                "new_password_again": "a new long password",
            },
        )
        assert changed.status_code == 303
        assert mine.get("/settings", follow_redirects=False).status_code == 200
        assert other.get("/settings", follow_redirects=False).status_code == 303  # to /login
        assert login(mine, web_env).status_code == 401  # the old password is gone
        assert login(mine, web_env, "a new long password").status_code == 303
