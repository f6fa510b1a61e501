"""The settings service on real SQLite stores: the rules store's validation turned into
member-facing sentences, forwarding, profile and locale, password change, TOTP enrolment and
app passwords (which then work for mail programs while the account password does not)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from argon2 import PasswordHasher

from tayori.auth import totp
from tayori.auth.authenticator import Authenticator, LoginPurpose, LoginSuccess
from tayori.auth.throttle import LoginThrottle
from tayori.config.settings import AuthSettings
from tayori.rules.model import RuleAction, RuleList, Sensitivity
from tayori.storage.factory import Stores, migrate, open_stores
from tayori.storage.records import Account
from tayori.web.i18n import Catalogues
from tayori.web.services.errors import UserError
from tayori.web.services.member_settings import MemberSettings

T = TypeVar("T")
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def run(awaitable: Awaitable[T]) -> T:
    """Run on a loop of its own in another thread: the browser tests' Playwright keeps an
    event loop running in this one for the rest of the session."""

    async def wrapper() -> T:
        return await awaitable

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, wrapper()).result()


@dataclass
class Env:
    stores: Stores
    settings: MemberSettings
    alice: Account


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    migrate("", tmp_path)
    stores = open_stores("", tmp_path)
    stores.metadata.add_domain("example.test")
    alice = stores.metadata.add_account("alice@example.test", FAST.hash("old password"), 0)
    stores.metadata.add_alias("info@example.test", ["alice@example.test"])
    try:
        yield Env(stores, MemberSettings(stores.metadata, stores.rules, stores.member), alice)
    finally:
        stores.close()


def ja(error: UserError) -> str:
    return error.text(Catalogues.load().translator("ja"))


def test_reject_list_validation(env: Env) -> None:
    rule = run(env.settings.add_rule(env.alice, RuleList.REJECT, " Spam@Example.COM ", "junk"))
    assert rule.pattern == "spam@example.com" and rule.action is RuleAction.JUNK
    with pytest.raises(UserError) as duplicate:
        run(env.settings.add_rule(env.alice, RuleList.REJECT, "spam@example.com", "junk"))
    assert "すでにリストにあります" in ja(duplicate.value)
    with pytest.raises(UserError) as bad:
        run(env.settings.add_rule(env.alice, RuleList.REJECT, "not a pattern!", ""))
    assert "アドレスでもドメインでもありません" in ja(bad.value)
    with pytest.raises(UserError):
        run(env.settings.add_rule(env.alice, RuleList.REJECT, "   ", ""))
    with pytest.raises(UserError):  # the safe list has no "reject" action
        run(env.settings.add_rule(env.alice, RuleList.SAFE, "a@b.example", "reject"))
    page = run(env.settings.filters(env.alice))
    assert [r.pattern for r in page.reject] == ["spam@example.com"]
    run(env.settings.remove_rule(env.alice, rule.id))
    with pytest.raises(UserError):
        run(env.settings.remove_rule(env.alice, rule.id))


def test_spam_settings(env: Env) -> None:
    changed = run(env.settings.set_spam(env.alice, enabled=False, sensitivity="high"))
    assert not changed.enabled and changed.sensitivity is Sensitivity.HIGH
    with pytest.raises(UserError):
        run(env.settings.set_spam(env.alice, enabled=True, sensitivity="extreme"))


def test_forwarding(env: Env) -> None:
    settings = run(env.settings.add_forward(env.alice, "Me@Elsewhere.example"))
    assert settings.targets == ("me@elsewhere.example",)
    with pytest.raises(UserError) as own:
        run(env.settings.add_forward(env.alice, "info@example.test"))  # an alias of hers
    assert "自分自身" in ja(own.value)
    with pytest.raises(UserError):
        run(env.settings.add_forward(env.alice, "me@elsewhere.example"))
    with pytest.raises(UserError):
        run(env.settings.add_forward(env.alice, "nonsense"))
    options = run(env.settings.set_forward_options(env.alice, keep_copy=False, skip_spam=True))
    assert not options.keep_copy
    skip = run(env.settings.add_rule(env.alice, RuleList.FORWARD, "news.example", ""))
    assert skip.action is RuleAction.SKIP_FORWARD
    assert run(env.settings.remove_forward(env.alice, "me@elsewhere.example")).targets == ()


def test_profile_and_locale(env: Env) -> None:
    prefs = run(env.settings.set_profile(env.alice, display_name="有子", signature="-- \n有子"))
    assert prefs.display_name == "有子"
    with pytest.raises(UserError):
        run(env.settings.set_profile(env.alice, display_name="<evil>", signature=""))
    prefs = run(env.settings.set_locale(env.alice, language="en", time_zone="Europe/Paris"))
    assert (prefs.language, prefs.time_zone) == ("en", "Europe/Paris")
    with pytest.raises(UserError):
        run(env.settings.set_locale(env.alice, language="en", time_zone="Mars/Olympus"))
    with pytest.raises(UserError):
        run(env.settings.set_locale(env.alice, language="fr", time_zone=""))


def test_password_change(env: Env) -> None:
    with pytest.raises(UserError) as wrong:
        run(env.settings.change_password(env.alice, current="nope", new="n" * 9, repeat="n" * 9))
    assert "現在のパスワード" in ja(wrong.value)
    with pytest.raises(UserError):
        run(
            env.settings.change_password(
                env.alice, current="old password", new="short", repeat="short"
            )
        )
    with pytest.raises(UserError):
        run(
            env.settings.change_password(
                env.alice, current="old password", new="a" * 9, repeat="b" * 9
            )
        )
    run(
        env.settings.change_password(
            env.alice, current="old password", new="new password", repeat="new password"
        )
    )
    fresh = env.stores.metadata.get_account_by_id(env.alice.id)
    assert fresh is not None and FAST.verify(fresh.password_hash, "new password")


def test_totp_and_app_passwords_for_mail_programs(env: Env) -> None:
    auth_settings = AuthSettings(failure_delay=0.0)
    authenticator = Authenticator(
        env.stores.metadata,
        LoginThrottle(auth_settings),
        auth_settings,
        member=env.stores.member,
    )

    def login(password: str, purpose: LoginPurpose = LoginPurpose.MAIL) -> object:
        return run(
            authenticator.login("alice@example.test", password, "192.0.2.1", purpose=purpose)
        )

    record, app_password = run(env.settings.create_app_password(env.alice, "Thunderbird"))
    assert isinstance(login("old password"), LoginSuccess)  # 2FA off: both work
    enrolment = run(env.settings.begin_totp(env.alice))
    assert enrolment.uri.startswith("otpauth://totp/") and " " in enrolment.grouped_secret
    stale = totp.code_at(enrolment.secret, totp.step_at(time.time()) - 5)
    with pytest.raises(UserError):
        run(env.settings.confirm_totp(env.alice, stale))
    assert not run(env.settings.preferences(env.alice)).totp_enabled
    code = totp.code_at(enrolment.secret, totp.step_at(time.time()))
    run(env.settings.confirm_totp(env.alice, code))
    assert run(env.settings.preferences(env.alice)).totp_enabled
    assert not isinstance(login("old password"), LoginSuccess)  # POP3/SMTP: no
    mail = login(app_password)
    assert isinstance(mail, LoginSuccess) and mail.app_password == "Thunderbird"
    web = login("old password", LoginPurpose.WEB)
    assert isinstance(web, LoginSuccess) and web.second_factor
    assert [p.name for p in run(env.settings.app_passwords(env.alice))] == ["Thunderbird"]
    run(env.settings.revoke_app_password(env.alice, record.id))
    assert not isinstance(login(app_password), LoginSuccess)
    with pytest.raises(UserError):
        run(env.settings.disable_totp(env.alice, "wrong"))
    run(env.settings.disable_totp(env.alice, "old password"))
    assert isinstance(login("old password"), LoginSuccess)
