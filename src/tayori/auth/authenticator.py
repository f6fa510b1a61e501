"""The one login check every protocol uses: throttle, look up, verify, delay on failure.

Servers hand it what the client typed and get back a typed result; the protocol module maps
that to its own reply (POP3 response code, SMTP 535, a web page), so every protocol refuses
for the same reasons.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from tayori.auth.passwords import verify_password
from tayori.auth.throttle import LoginThrottle
from tayori.config.settings import AuthSettings
from tayori.core.address import AddressError, canonical
from tayori.storage.interfaces import MetadataStore
from tayori.storage.records import Account, AccountStatus

log = logging.getLogger(__name__)


class FailureKind(StrEnum):
    BAD_CREDENTIALS = "bad-credentials"
    LOCKED_OUT = "locked-out"
    ACCOUNT_DISABLED = "account-disabled"


@dataclass(frozen=True, slots=True)
class LoginSuccess:
    account: Account


@dataclass(frozen=True, slots=True)
class LoginFailure:
    kind: FailureKind
    temporary: bool = False
    """For LOCKED_OUT: the lockout ends by itself (throttle lockouts always do)."""
    retry_after: float | None = None
    """Seconds until a temporary lockout ends."""


LoginResult = LoginSuccess | LoginFailure


def _address(username: str) -> str | None:
    try:
        return canonical(username)
    except AddressError:
        return None


def account_key(username: str) -> str:
    """The throttle key for what the client typed: the canonical address when it is one, so
    that `Alice@Example.jp` and `alice@example.jp` share a counter."""
    return _address(username) or username.strip().lower()


class Authenticator:
    """Checks member passwords for POP3, SMTP AUTH and the webmail.

    `sleep` is injectable so that tests of the failure delay do not wait.
    """

    def __init__(
        self,
        metadata: MetadataStore,
        throttle: LoginThrottle,
        settings: AuthSettings,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._metadata = metadata
        self._throttle = throttle
        self._settings = settings
        self._sleep = sleep

    @property
    def throttle(self) -> LoginThrottle:
        return self._throttle

    async def login(self, username: str, password: str, client_ip: str) -> LoginResult:
        """Check a login. Unknown users and wrong passwords look the same from outside
        (same answer, same argon2 cost, same delay); a disabled account is only revealed to
        someone who knows its password.
        """
        address = _address(username)
        key = address or username.strip().lower()
        refusal = self._throttle.check(key, client_ip)
        if refusal is not None:
            # Not verified at all: a locked-out guesser learns nothing and costs no argon2 time.
            log.info(
                "login refused: locked out",
                extra={"event": "auth.locked_out", "scope": refusal.scope, "ip": client_ip},
            )
            await self._sleep(self._settings.failure_delay)
            return LoginFailure(
                FailureKind.LOCKED_OUT, temporary=True, retry_after=refusal.retry_after
            )

        account, valid = await asyncio.to_thread(self._verify, address, password)
        if account is None or not valid:
            self._throttle.record_failure(key, client_ip)
            log.info("login failed", extra={"event": "auth.failed", "ip": client_ip})
            await self._sleep(self._settings.failure_delay)
            return LoginFailure(FailureKind.BAD_CREDENTIALS)
        if account.status == AccountStatus.DISABLED:
            log.info(
                "login refused: account disabled",
                extra={"event": "auth.disabled", "account_id": account.id, "ip": client_ip},
            )
            return LoginFailure(FailureKind.ACCOUNT_DISABLED)
        self._throttle.record_success(key, client_ip)
        log.info(
            "login succeeded",
            extra={"event": "auth.ok", "account_id": account.id, "ip": client_ip},
        )
        return LoginSuccess(account)

    def _verify(self, address: str | None, password: str) -> tuple[Account | None, bool]:
        """Look up and verify in one worker-thread hop. A name that is not an address is
        never looked up, but still pays for one argon2 verification (against a dummy hash),
        as an unknown user does, so timing does not tell them apart."""
        account = self._metadata.get_account(address) if address is not None else None
        password_hash = account.password_hash if account is not None else None
        return account, verify_password(password_hash, password)
