"""Passwords that passed argon2 a short while ago, so that checking them again is cheap.

An argon2id verification costs ~0.1 s of CPU by design. Mail programs log in again and
again with the same password: POP3 clients poll every few minutes, IMAP clients open several
connections, API scripts send HTTP Basic on every request. Without a cache, 10,000 members
polling every five minutes keep about four cores busy hashing. Dovecot (`auth_cache`) and
directory servers do the same as this module.

What is kept: for each stored hash that a password matched, a SHA-256 HMAC of that password
under a random key made at process start (never written anywhere), and when it expires. A
later login with the same password and the same stored hash is accepted on the HMAC alone.
Only successes are kept: a wrong password always pays the full argon2 cost, so guessing is
as slow as before and a wrong guess takes as long whether or not the right one is cached.
A changed password has a new stored hash (a new salt), so the old entry can never match.
The trade-off, stated in the config reference: whoever can read the process's memory could
test guesses against the HMACs of recently used passwords quickly.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from tayori.auth.passwords import verify_password

__all__ = ["RecentlyVerified"]


class RecentlyVerified:
    """`verify(hash, password)` like `passwords.verify_password`, remembering successes for
    `ttl` seconds (0: remember nothing). Called from worker threads, hence the lock."""

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
        verify: Callable[[str | None, str], bool] = verify_password,
    ) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._verify = verify
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def verify(self, password_hash: str | None, password: str) -> bool:
        if self._ttl <= 0 or password_hash is None:
            return self._verify(password_hash, password)
        digest = hmac.new(
            self._key, password.encode("utf-8", "surrogatepass"), hashlib.sha256
        ).digest()
        now = self._clock()
        with self._lock:
            entry = self._entries.get(password_hash)
        if entry is not None and entry[1] > now and hmac.compare_digest(entry[0], digest):
            return True
        if not self._verify(password_hash, password):
            return False
        with self._lock:
            self._entries[password_hash] = (digest, now + self._ttl)
            self._entries.move_to_end(password_hash)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return True
