"""Login throttling shared by every protocol that takes a password (POP3, SMTP AUTH, webmail).

Two counters, because guessing comes in two shapes: many passwords against one account
(counted per account, from any address) and one address trying many accounts (counted per
client address). Either passing its limit within the sliding window locks that key out for
`lockout` seconds. A successful login clears the account's counter, so a member who mistypes
a few times is not punished later; the address counter is kept, so a guesser cannot reset it
by logging in to an account of their own.

The state is in memory and per process: with several nodes each counts on its own, which
still bounds guessing to nodes × limit per window.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from tayori.config.settings import AuthSettings


@dataclass(frozen=True, slots=True)
class Refusal:
    """A login refused without checking the password."""

    scope: Literal["account", "ip"]
    retry_after: float
    """Seconds until the lockout ends."""


class _Counter:
    __slots__ = ("failures", "locked_until")

    def __init__(self, limit: int) -> None:
        self.failures: deque[float] = deque(maxlen=limit)
        self.locked_until = 0.0


def ip_key(ip: str) -> str:
    """The key an address is counted under: IPv4 as is, IPv6 by its /64, since one
    subscriber usually gets a whole /64 and could otherwise rotate through it."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class LoginThrottle:
    """Counts failed logins per account and per client address; see the module docstring.

    `clock` is monotonic seconds (injectable so tests need no sleeps). Thread-safe, so the
    web app may share it even if it runs handlers in threads. Memory is bounded by
    `max_tracked` keys per kind: expired keys are swept first, then the oldest dropped.
    A limit of 0 in the settings turns that counter off.
    """

    def __init__(
        self,
        settings: AuthSettings,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = 100_000,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._max_tracked = max_tracked
        self._accounts: dict[str, _Counter] = {}
        self._ips: dict[str, _Counter] = {}
        self._lock = threading.Lock()

    def check(self, account_key: str, ip: str) -> Refusal | None:
        """A Refusal when the account or the address is locked out now, else None."""
        now = self._clock()
        with self._lock:
            waits: list[Refusal] = []
            account = self._accounts.get(account_key.lower())
            if account is not None and account.locked_until > now:
                waits.append(Refusal("account", account.locked_until - now))
            address = self._ips.get(ip_key(ip))
            if address is not None and address.locked_until > now:
                waits.append(Refusal("ip", address.locked_until - now))
        return max(waits, key=lambda refusal: refusal.retry_after, default=None)

    def record_failure(self, account_key: str, ip: str) -> None:
        now = self._clock()
        with self._lock:
            self._count(
                self._accounts, account_key.lower(), self._settings.max_failures_per_account, now
            )
            self._count(self._ips, ip_key(ip), self._settings.max_failures_per_ip, now)

    def record_success(self, account_key: str, ip: str) -> None:
        with self._lock:
            self._accounts.pop(account_key.lower(), None)

    def _count(self, counters: dict[str, _Counter], key: str, limit: int, now: float) -> None:
        counter = counters.get(key)
        if counter is None:
            if len(counters) >= self._max_tracked:
                self._sweep(counters, now)
            counter = counters[key] = _Counter(max(limit, 1))
        if counter.locked_until > now:
            return  # refused logins are not counted, so a lockout does not extend itself
        failures = counter.failures
        horizon = now - self._settings.failure_window
        while failures and failures[0] <= horizon:
            failures.popleft()
        failures.append(now)
        if limit > 0 and len(failures) >= limit:
            counter.locked_until = now + self._settings.lockout
            failures.clear()

    def _sweep(self, counters: dict[str, _Counter], now: float) -> None:
        horizon = now - self._settings.failure_window
        for key in [
            key
            for key, counter in counters.items()
            if counter.locked_until <= now
            and (not counter.failures or counter.failures[-1] <= horizon)
        ]:
            del counters[key]
        while len(counters) >= self._max_tracked:
            del counters[next(iter(counters))]  # oldest first: dicts keep insertion order
