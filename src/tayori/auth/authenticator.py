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

from tayori.auth import totp
from tayori.auth.app_passwords import find_app_password, looks_like_app_password
from tayori.auth.throttle import LoginThrottle
from tayori.auth.verified_cache import RecentlyVerified
from tayori.config.settings import AuthSettings
from tayori.core.address import AddressError, canonical
from tayori.core.outcome import utcnow
from tayori.storage.interfaces import MemberStore, MetadataStore
from tayori.storage.records import Account, AccountStatus

log = logging.getLogger(__name__)


class FailureKind(StrEnum):
    BAD_CREDENTIALS = "bad-credentials"
    LOCKED_OUT = "locked-out"
    ACCOUNT_DISABLED = "account-disabled"


class LoginPurpose(StrEnum):
    """What the login is for, which decides the passwords accepted.

    A member with two-step login (TOTP) on can sign in to mail programs (POP3, SMTP AUTH)
    and the API only with app passwords: those programs cannot ask for a code, so accepting
    the account password there would make the second factor decoration. The webmail form
    takes the account password only and then asks for the code (`LoginSuccess.second_factor`).
    """

    MAIL = "mail"
    WEB = "web"
    API = "api"


@dataclass(frozen=True, slots=True)
class LoginSuccess:
    account: Account
    second_factor: bool = False
    """WEB logins: the member has TOTP on, so the session is not usable until
    `Authenticator.check_second_factor` accepts a code."""
    app_password: str | None = None
    """The name of the app password used, when one was (for the log and "last used")."""


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
        member: MemberStore | None = None,
        verified: RecentlyVerified | None = None,
    ) -> None:
        """`member`: where TOTP and app passwords live; without it, account passwords only.
        `verified`: the passwords that passed recently (default: from `settings`)."""
        self._member = member
        self._verified = (
            RecentlyVerified(settings.verified_password_ttl) if verified is None else verified
        )
        self._metadata = metadata
        self._throttle = throttle
        self._settings = settings
        self._sleep = sleep

    @property
    def throttle(self) -> LoginThrottle:
        return self._throttle

    async def login(
        self,
        username: str,
        password: str,
        client_ip: str,
        *,
        purpose: LoginPurpose = LoginPurpose.MAIL,
    ) -> LoginResult:
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

        account, valid, extra = await asyncio.to_thread(self._verify, address, password, purpose)
        if account is not None and extra.account_password:
            log.info(
                "login refused: app password required",
                extra={"event": "auth.app_password_required", "account_id": account.id},
            )
            await self._sleep(self._settings.failure_delay)
            return LoginFailure(FailureKind.BAD_CREDENTIALS)
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
        return LoginSuccess(account, second_factor=extra.second_factor, app_password=extra.name)

    async def check_second_factor(self, account: Account, code: str, client_ip: str) -> bool:
        """The webmail's second step: a TOTP code of the member's, never accepted twice.
        Wrong codes count towards the same lockout as wrong passwords."""
        key = account.address
        if self._member is None or self._throttle.check(key, client_ip) is not None:
            await self._sleep(self._settings.failure_delay)
            return False
        member = self._member

        def verify() -> bool:
            state = member.get_totp(account.id)
            if state is None or not state.enabled:
                return False
            step = totp.matching_step(state.secret, code)
            return step is not None and member.use_totp_step(account.id, step)

        if await asyncio.to_thread(verify):
            self._throttle.record_success(key, client_ip)
            return True
        self._throttle.record_failure(key, client_ip)
        log.info("second factor failed", extra={"event": "auth.totp_failed", "ip": client_ip})
        await self._sleep(self._settings.failure_delay)
        return False

    def _verify(
        self, address: str | None, password: str, purpose: LoginPurpose
    ) -> tuple[Account | None, bool, _Extra]:
        """Look up and verify in one worker-thread hop. A name that is not an address is
        never looked up, but still pays for one argon2 verification (against a dummy hash),
        as an unknown user does, so timing does not tell them apart."""
        account = self._metadata.get_account(address) if address is not None else None
        password_hash = account.password_hash if account is not None else None
        state = (
            self._member.get_totp(account.id)
            if account is not None and self._member is not None
            else None
        )
        totp_on = state is not None and state.enabled
        verify = self._verified.verify
        if purpose is LoginPurpose.WEB:
            return account, verify(password_hash, password), _Extra(totp_on)
        # Mail programs and the API: app passwords always; the account password only
        # while two-step login is off.
        if not totp_on and verify(password_hash, password):
            return account, True, _Extra()
        if account is not None and self._member is not None:
            found = find_app_password(self._member, account.id, password, utcnow(), verify)
            if found is not None:
                return account, True, _Extra(name=found.name)
        if totp_on and not looks_like_app_password(password):
            # Same cost as a wrong password; the right account password is still refused,
            # but is not counted as a guess (see `login`).
            return account, False, _Extra(account_password=verify(password_hash, password))
        return account, False, _Extra()


@dataclass(frozen=True, slots=True)
class _Extra:
    second_factor: bool = False
    name: str | None = None
    account_password: bool = False
    """Refused only because two-step login is on: the member's mail program still has the
    account password. Not a guess, so it does not count towards the lockout, which would
    otherwise lock the member out of the webmail where app passwords are made."""
