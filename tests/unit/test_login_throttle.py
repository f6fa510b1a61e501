"""LoginThrottle: sliding windows, lockouts and resets, driven by a fake clock."""

from __future__ import annotations

import pytest

from tayori.auth.throttle import LoginThrottle, Refusal, ip_key
from tayori.config.settings import AuthSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


SETTINGS = AuthSettings(
    max_failures_per_account=3, max_failures_per_ip=5, failure_window=60.0, lockout=300.0
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def throttle(clock: Clock) -> LoginThrottle:
    return LoginThrottle(SETTINGS, clock=clock)


def test_account_is_locked_after_the_limit(throttle: LoginThrottle, clock: Clock) -> None:
    for _ in range(2):
        throttle.record_failure("alice@example.jp", "192.0.2.1")
        assert throttle.check("alice@example.jp", "192.0.2.1") is None
    throttle.record_failure("alice@example.jp", "192.0.2.1")
    assert throttle.check("alice@example.jp", "198.51.100.9") == Refusal("account", 300.0)
    clock.now += 100
    assert throttle.check("Alice@Example.JP", "198.51.100.9") == Refusal("account", 200.0)
    assert throttle.check("bob@example.jp", "198.51.100.9") is None


def test_lockout_ends_and_counting_starts_again(throttle: LoginThrottle, clock: Clock) -> None:
    for _ in range(3):
        throttle.record_failure("alice@example.jp", "192.0.2.1")
    clock.now += 300
    assert throttle.check("alice@example.jp", "192.0.2.1") is None
    throttle.record_failure("alice@example.jp", "192.0.2.1")
    assert throttle.check("alice@example.jp", "192.0.2.1") is None


def test_failures_outside_the_window_do_not_count(throttle: LoginThrottle, clock: Clock) -> None:
    for _ in range(10):
        throttle.record_failure("alice@example.jp", "192.0.2.1")
        clock.now += 31  # never three failures within one 60 s window
        assert throttle.check("alice@example.jp", "192.0.2.1") is None


def test_refused_attempts_do_not_extend_the_lockout(throttle: LoginThrottle, clock: Clock) -> None:
    for _ in range(3):
        throttle.record_failure("alice@example.jp", "192.0.2.1")
    clock.now += 200
    throttle.record_failure("alice@example.jp", "192.0.2.1")
    assert throttle.check("alice@example.jp", "192.0.2.1") == Refusal("account", 100.0)


def test_success_resets_the_account_but_not_the_address(throttle: LoginThrottle) -> None:
    for account in ("a@example.jp", "b@example.jp"):
        throttle.record_failure(account, "192.0.2.1")
        throttle.record_failure(account, "192.0.2.1")
    throttle.record_success("a@example.jp", "192.0.2.1")
    throttle.record_failure("a@example.jp", "192.0.2.2")
    throttle.record_failure("a@example.jp", "192.0.2.2")
    assert throttle.check("a@example.jp", "192.0.2.2") is None
    # The fifth failure from 192.0.2.1 locks the address, whatever the account.
    throttle.record_failure("c@example.jp", "192.0.2.1")
    assert throttle.check("d@example.jp", "192.0.2.1") == Refusal("ip", 300.0)
    assert throttle.check("d@example.jp", "192.0.2.3") is None


def test_the_longer_refusal_wins(throttle: LoginThrottle, clock: Clock) -> None:
    for _ in range(3):
        throttle.record_failure("a@example.jp", "192.0.2.1")
    clock.now += 10
    for account in ("b@example.jp", "c@example.jp"):
        throttle.record_failure(account, "192.0.2.1")
    assert throttle.check("a@example.jp", "192.0.2.1") == Refusal("ip", 300.0)


def test_ipv6_addresses_count_per_64(throttle: LoginThrottle) -> None:
    for host in range(5):
        throttle.record_failure(f"u{host}@example.jp", f"2001:db8:1:2::{host + 1}")
    assert throttle.check("x@example.jp", "2001:db8:1:2:ffff::1") == Refusal("ip", 300.0)
    assert throttle.check("x@example.jp", "2001:db8:1:3::1") is None


def test_ip_keys() -> None:
    assert ip_key("192.0.2.1") == "192.0.2.1"
    assert ip_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert ip_key("2001:db8::1") == "2001:db8::/64"
    assert ip_key("fe80::1%eth0") == "fe80::/64"
    assert ip_key("not-an-ip") == "not-an-ip"


def test_a_zero_limit_turns_the_counter_off(clock: Clock) -> None:
    throttle = LoginThrottle(
        AuthSettings(max_failures_per_account=0, max_failures_per_ip=0), clock=clock
    )
    for _ in range(100):
        throttle.record_failure("a@example.jp", "192.0.2.1")
    assert throttle.check("a@example.jp", "192.0.2.1") is None


def test_memory_is_bounded(clock: Clock) -> None:
    throttle = LoginThrottle(SETTINGS, clock=clock, max_tracked=10)
    for number in range(50):
        throttle.record_failure(f"user{number}@example.jp", f"192.0.2.{number}")
        clock.now += 1
    assert len(throttle._accounts) <= 10
    assert len(throttle._ips) <= 10
    # Expired entries go first: after the window only fresh keys remain.
    clock.now += 61
    throttle.record_failure("new@example.jp", "198.51.100.1")
    assert list(throttle._accounts) == ["new@example.jp"]
