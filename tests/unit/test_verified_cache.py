"""RecentlyVerified: recent successes skip argon2; failures, expiry and new hashes never do."""

from __future__ import annotations

import asyncio
import threading

from argon2 import PasswordHasher

from tayori.auth.authenticator import Authenticator, LoginSuccess
from tayori.auth.passwords import verify_password
from tayori.auth.throttle import LoginThrottle
from tayori.auth.verified_cache import RecentlyVerified
from tayori.config.settings import AuthSettings
from tests.fakes import FakeMetadataStore

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class CountingVerify:
    """The real argon2 check, counted."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, password_hash: str | None, password: str) -> bool:
        self.calls += 1
        return verify_password(password_hash, password)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(ttl: float = 60.0, **kwargs: object) -> tuple[RecentlyVerified, CountingVerify, Clock]:
    counting, clock = CountingVerify(), Clock()
    cache = RecentlyVerified(ttl, clock=clock, verify=counting, **kwargs)  # type: ignore[arg-type]
    return cache, counting, clock


def test_a_password_that_passed_is_not_hashed_again_within_the_ttl() -> None:
    cache, counting, clock = make()
    stored = FAST_HASHER.hash("right")
    assert cache.verify(stored, "right")
    clock.now += 59
    assert cache.verify(stored, "right")
    assert counting.calls == 1


def test_wrong_passwords_always_pay_the_full_check_even_when_the_right_one_is_remembered() -> None:
    cache, counting, _ = make()
    stored = FAST_HASHER.hash("right")
    assert cache.verify(stored, "right")
    for _ in range(3):
        assert not cache.verify(stored, "wrong")
        assert not cache.verify(stored, "Right")
    assert counting.calls == 7
    assert cache.verify(stored, "right")  # the failures did not evict the success
    assert counting.calls == 7


def test_failures_are_not_remembered() -> None:
    cache, counting, _ = make()
    stored = FAST_HASHER.hash("right")
    assert not cache.verify(stored, "wrong")
    assert not cache.verify(stored, "wrong")
    assert counting.calls == 2
    assert len(cache) == 0


def test_an_entry_expires() -> None:
    cache, counting, clock = make(ttl=60.0)
    stored = FAST_HASHER.hash("right")
    assert cache.verify(stored, "right")
    clock.now += 60
    assert cache.verify(stored, "right")
    assert counting.calls == 2


def test_a_changed_password_is_a_new_hash_and_the_old_password_no_longer_passes() -> None:
    cache, counting, _ = make()
    old = FAST_HASHER.hash("old secret")
    assert cache.verify(old, "old secret")
    new = FAST_HASHER.hash("new secret")
    assert not cache.verify(new, "old secret")
    assert cache.verify(new, "new secret")
    assert counting.calls == 3


def test_the_same_password_for_two_accounts_is_checked_for_each() -> None:
    cache, counting, _ = make()
    first, second = FAST_HASHER.hash("shared"), FAST_HASHER.hash("shared")
    assert cache.verify(first, "shared")
    assert cache.verify(second, "shared")
    assert counting.calls == 2


def test_ttl_zero_remembers_nothing_and_a_missing_hash_is_never_remembered() -> None:
    cache, counting, _ = make(ttl=0)
    stored = FAST_HASHER.hash("right")
    assert cache.verify(stored, "right")
    assert cache.verify(stored, "right")
    assert counting.calls == 2
    cache, counting, _ = make()
    assert not cache.verify(None, "anything")
    assert not cache.verify(None, "anything")
    assert counting.calls == 2


def test_the_oldest_entries_make_room() -> None:
    cache, counting, _ = make(max_entries=2)
    hashes = [FAST_HASHER.hash(f"pw{i}") for i in range(3)]
    for i, stored in enumerate(hashes):
        assert cache.verify(stored, f"pw{i}")
    assert len(cache) == 2
    assert cache.verify(hashes[2], "pw2")
    assert counting.calls == 3
    assert cache.verify(hashes[0], "pw0")  # evicted: checked again
    assert counting.calls == 4


def test_passwords_that_are_not_valid_utf8_text_are_handled() -> None:
    cache, counting, _ = make()
    odd = "caf\udce9"  # a lone surrogate, as surrogateescape decoding of Latin-1 makes
    stored = FAST_HASHER.hash(odd.encode("utf-8", "surrogatepass"))
    assert cache.verify(stored, odd)
    assert cache.verify(stored, odd)
    assert counting.calls == 1


def test_worker_threads_may_verify_at_once() -> None:
    cache, _, _ = make(max_entries=8)
    hashes = [FAST_HASHER.hash(f"pw{i}") for i in range(16)]
    failures: list[int] = []

    def work(offset: int) -> None:
        for round_ in range(20):
            i = (offset + round_) % 16
            if not cache.verify(hashes[i], f"pw{i}"):
                failures.append(i)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(cache) <= 8


def test_the_authenticator_uses_it_for_repeated_logins() -> None:
    store = FakeMetadataStore()
    store.add_account("alice@example.jp", FAST_HASHER.hash("right"))
    settings = AuthSettings(failure_delay=0)
    cache, counting, _ = make()

    async def sleep(_: float) -> None:
        return None

    auth = Authenticator(store, LoginThrottle(settings), settings, sleep=sleep, verified=cache)
    for _ in range(3):
        result = asyncio.run(auth.login("alice@example.jp", "right", "192.0.2.1"))
        assert isinstance(result, LoginSuccess)
    assert counting.calls == 1
    assert not isinstance(
        asyncio.run(auth.login("alice@example.jp", "wrong", "192.0.2.1")), LoginSuccess
    )
    assert counting.calls == 2
