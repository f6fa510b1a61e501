"""Authenticator: one login check for every protocol, with throttling and a failure delay."""

from __future__ import annotations

import asyncio

import pytest
from argon2 import PasswordHasher

from tayori.auth.authenticator import (
    Authenticator,
    FailureKind,
    LoginFailure,
    LoginSuccess,
    account_key,
)
from tayori.auth.throttle import LoginThrottle
from tayori.config.settings import AuthSettings
from tayori.storage.records import AccountStatus
from tests.fakes import FakeMetadataStore

# Cheap parameters keep tests fast; verification reads the parameters from the hash.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
SETTINGS = AuthSettings(
    failure_delay=1.5,
    max_failures_per_account=3,
    max_failures_per_ip=100,
    failure_window=60.0,
    lockout=600.0,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Env:
    def __init__(self) -> None:
        self.store = FakeMetadataStore()
        self.account = self.store.add_account("alice@example.jp", FAST_HASHER.hash("right"))
        self.clock = Clock()
        self.throttle = LoginThrottle(SETTINGS, clock=self.clock)
        self.sleeps: list[float] = []
        self.auth = Authenticator(self.store, self.throttle, SETTINGS, sleep=self._sleep)

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def login(self, username: str, password: str, ip: str = "192.0.2.1") -> object:
        return asyncio.run(self.auth.login(username, password, ip))


@pytest.fixture
def env() -> Env:
    return Env()


def test_success(env: Env) -> None:
    assert env.login("alice@example.jp", "right") == LoginSuccess(env.account)
    assert env.sleeps == []


def test_username_is_matched_case_insensitively(env: Env) -> None:
    assert env.login(" Alice@Example.JP ", "right") == LoginSuccess(env.account)


def test_wrong_password_is_delayed(env: Env) -> None:
    assert env.login("alice@example.jp", "wrong") == LoginFailure(FailureKind.BAD_CREDENTIALS)
    assert env.sleeps == [1.5]


def test_unknown_users_look_like_wrong_passwords(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    looked_up: list[str] = []
    find = env.store.get_account

    def recording_get_account(address: str) -> object:
        looked_up.append(address)
        return find(address)

    monkeypatch.setattr(env.store, "get_account", recording_get_account)
    assert env.login("nobody@example.jp", "right") == LoginFailure(FailureKind.BAD_CREDENTIALS)
    assert env.login("not an address", "right") == LoginFailure(FailureKind.BAD_CREDENTIALS)
    assert env.login("a@b", "right") == LoginFailure(FailureKind.BAD_CREDENTIALS)
    assert env.sleeps == [1.5, 1.5, 1.5]
    # Names that are not addresses never reach the store (which would reject them).
    assert looked_up == ["nobody@example.jp"]


def test_disabled_account_is_told_only_with_the_right_password(env: Env) -> None:
    env.store.set_status(env.account.id, AccountStatus.DISABLED)
    assert env.login("alice@example.jp", "wrong") == LoginFailure(FailureKind.BAD_CREDENTIALS)
    assert env.login("alice@example.jp", "right") == LoginFailure(FailureKind.ACCOUNT_DISABLED)


def test_lockout_refuses_even_the_right_password_until_it_ends(env: Env) -> None:
    for _ in range(3):
        env.login("ALICE@example.jp", "wrong")
    env.clock.now += 60
    result = env.login("alice@example.jp", "right", ip="198.51.100.7")
    assert result == LoginFailure(FailureKind.LOCKED_OUT, temporary=True, retry_after=540.0)
    assert env.sleeps == [1.5] * 4
    env.clock.now += 540
    assert env.login("alice@example.jp", "right") == LoginSuccess(env.account)


def test_success_clears_earlier_failures(env: Env) -> None:
    env.login("alice@example.jp", "wrong")
    env.login("alice@example.jp", "wrong")
    env.login("alice@example.jp", "right")
    env.login("alice@example.jp", "wrong")
    env.login("alice@example.jp", "wrong")
    assert env.login("alice@example.jp", "right") == LoginSuccess(env.account)


def test_account_keys() -> None:
    assert account_key("Alice@Example.JP") == "alice@example.jp"
    assert account_key(" Someone ") == "someone"
