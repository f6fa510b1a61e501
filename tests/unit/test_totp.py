"""TOTP (RFC 6238) codes and app passwords: the arithmetic against the RFC's vectors, and the
login rules an account with two-step login gets (app passwords only for mail programs)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest
from argon2 import PasswordHasher

from tayori.auth import app_passwords, totp
from tayori.auth.authenticator import Authenticator, LoginPurpose, LoginSuccess
from tayori.auth.throttle import LoginThrottle
from tayori.config.settings import AuthSettings
from tayori.core.outcome import utcnow
from tayori.storage.member_records import AppPassword, TotpState
from tests.fakes import FakeMetadataStore

RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
T = TypeVar("T")


def run(awaitable: Coroutine[Any, Any, T]) -> T:
    """On a loop of its own in another thread, so that it works whatever ran before (the
    browser tests' Playwright keeps a loop running in the main thread)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, awaitable).result()


@pytest.mark.parametrize(
    ("when", "code"),
    [(59, "287082"), (1111111109, "081804"), (1234567890, "005924"), (2000000000, "279037")],
)
def test_rfc6238_vectors(when: int, code: str) -> None:
    assert totp.code_at(RFC_SECRET, totp.step_at(when)) == code


def test_matching_step_allows_one_step_of_drift() -> None:
    now = 1_700_000_000.0
    step = totp.step_at(now)
    for offset in (-1, 0, 1):
        code = totp.code_at(RFC_SECRET, step + offset)
        assert totp.matching_step(RFC_SECRET, code[:3] + " " + code[3:], now) == step + offset
    assert totp.matching_step(RFC_SECRET, totp.code_at(RFC_SECRET, step + 2), now) is None
    assert totp.matching_step(RFC_SECRET, "12345", now) is None
    assert totp.matching_step(RFC_SECRET, "abcdef", now) is None


def test_new_secret_and_uri() -> None:
    secret = totp.new_secret()
    assert len(secret) == 32 and secret != totp.new_secret()
    base64.b32decode(secret)
    uri = totp.provisioning_uri(secret, "alice@example.jp", "Tayori")
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth" and parts.netloc == "totp"
    assert parts.path == "/Tayori:alice@example.jp"
    query = parse_qs(parts.query)
    assert query["secret"] == [secret] and query["issuer"] == ["Tayori"]


def test_app_password_format() -> None:
    password = app_passwords.generate()
    assert len(password) == 19 and password.count("-") == 3
    assert app_passwords.looks_like_app_password(password.upper().replace("-", " "))
    assert not app_passwords.looks_like_app_password("hunter2")
    assert app_passwords.normalise(" AbCd-eFgh ") == "abcdefgh"


# --- the authenticator with a member store ---------------------------------------------------

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class FakeMemberStore:
    """The parts of MemberStore the authenticator uses, in memory."""

    def __init__(self) -> None:
        self.totp: dict[int, TotpState] = {}
        self.passwords: list[AppPassword] = []

    def get_totp(self, account_id: int) -> TotpState | None:
        return self.totp.get(account_id)

    def use_totp_step(self, account_id: int, step: int) -> bool:
        state = self.totp.get(account_id)
        if state is None or not state.enabled or step <= state.last_step:
            return False
        self.totp[account_id] = replace(state, last_step=step)
        return True

    def add_app_password(self, account_id: int, name: str, password_hash: str) -> AppPassword:
        record = AppPassword(
            len(self.passwords) + 1, account_id, name, password_hash, utcnow(), None
        )
        self.passwords.append(record)
        return record

    def list_app_passwords(self, account_id: int) -> list[AppPassword]:
        return [p for p in self.passwords if p.account_id == account_id]

    def touch_app_password(self, password_id: int, when: datetime) -> None:
        self.passwords = [
            replace(p, last_used=when) if p.id == password_id else p for p in self.passwords
        ]


class Env:
    def __init__(self) -> None:
        self.metadata = FakeMetadataStore()
        self.account = self.metadata.add_account("alice@example.jp", FAST.hash("right"))
        self.member = FakeMemberStore()
        settings = AuthSettings(failure_delay=0.0, max_failures_per_account=3)
        self.auth = Authenticator(
            self.metadata,
            LoginThrottle(settings),
            settings,
            sleep=self._sleep,
            member=self.member,  # type: ignore[arg-type]
        )

    async def _sleep(self, seconds: float) -> None:
        return None

    def login(self, password: str, purpose: LoginPurpose = LoginPurpose.MAIL) -> object:
        return run(self.auth.login("alice@example.jp", password, "192.0.2.1", purpose=purpose))

    def app_password(self) -> str:
        _, password = app_passwords.create_app_password(
            self.member,  # type: ignore[arg-type]
            self.account.id,
            "phone",
        )
        return password

    def turn_on_totp(self) -> None:
        self.member.totp[self.account.id] = TotpState(RFC_SECRET, True, 0)


def test_without_2fa_both_passwords_work_for_mail() -> None:
    env = Env()
    password = env.app_password()
    assert isinstance(env.login("right"), LoginSuccess)
    result = env.login(password)
    assert isinstance(result, LoginSuccess) and result.app_password == "phone"
    assert env.member.passwords[0].last_used is not None
    assert not isinstance(env.login("wrong"), LoginSuccess)


def test_with_2fa_mail_takes_app_passwords_only() -> None:
    env = Env()
    password = env.app_password()
    env.turn_on_totp()
    assert not isinstance(env.login("right"), LoginSuccess)
    assert not isinstance(env.login("right", LoginPurpose.API), LoginSuccess)
    assert isinstance(env.login(password), LoginSuccess)
    assert isinstance(env.login(password, LoginPurpose.API), LoginSuccess)


def test_web_login_asks_for_the_second_factor() -> None:
    env = Env()
    password = env.app_password()
    first = env.login("right", LoginPurpose.WEB)
    assert isinstance(first, LoginSuccess) and not first.second_factor
    assert not isinstance(env.login(password, LoginPurpose.WEB), LoginSuccess)
    env.turn_on_totp()
    result = env.login("right", LoginPurpose.WEB)
    assert isinstance(result, LoginSuccess) and result.second_factor
    code = totp.code_at(RFC_SECRET, totp.step_at(time.time()))
    check = env.auth.check_second_factor
    assert run(check(env.account, code, "192.0.2.1"))
    assert not run(check(env.account, code, "192.0.2.1"))  # never twice
    assert not run(check(env.account, "000000", "192.0.2.1"))


def test_an_old_mail_program_does_not_lock_the_member_out() -> None:
    """With 2FA on, a mail program still sending the account password is refused but not
    counted as guessing: the member can still sign in to the webmail to make app passwords."""
    env = Env()
    env.turn_on_totp()
    for _ in range(5):  # the lockout is after 3 failures
        assert not isinstance(env.login("right"), LoginSuccess)
    assert isinstance(env.login("right", LoginPurpose.WEB), LoginSuccess)
    for _ in range(3):
        env.login("wrong")
    assert not isinstance(env.login("right", LoginPurpose.WEB), LoginSuccess)  # guesses do count
