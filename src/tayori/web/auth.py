"""Signing in to the webmail, and where a second factor (TOTP) plugs in.

`sign_in` checks the password through the shared `Authenticator` (the same throttle as POP3
and SMTP AUTH), then asks each function in `SECOND_FACTOR_CHECKS` whether the account owes
another step. The session is created either way, but with the first owed step as its
`stage` instead of "full": such a session reaches no page except that step's.

For the TOTP helper:

    from tayori.web import auth

    async def totp_needed(context: WebContext, account: Account) -> str | None:
        return "totp" if (await prefs(account)).totp_enabled else None

    auth.SECOND_FACTOR_CHECKS.append(totp_needed)

then serve `GET/POST /login/totp` (the sign-in page redirects there: `/login/<stage>`), read
the half-signed-in session with `await pending_session(request, "totp")`, and on a good code
call `await complete_stage(request, response, loaded)`, which swaps the session for a new
full one (a new cookie value, so the half-signed-in id is worthless afterwards).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from tayori.auth.authenticator import FailureKind, LoginFailure, LoginPurpose
from tayori.storage.records import Account
from tayori.web.context import WebContext, web_context
from tayori.web.deps import load_session
from tayori.web.sessions import STAGE_FULL, LoadedSession, SessionManager

SecondFactorCheck = Callable[[WebContext, Account], Awaitable[str | None]]

SECOND_FACTOR_CHECKS: list[SecondFactorCheck] = []
"""Each returns the stage the account still owes ("totp"), or None."""


@dataclass(frozen=True, slots=True)
class SignedIn:
    loaded: LoadedSession

    @property
    def stage(self) -> str:
        return self.loaded.session.stage


@dataclass(frozen=True, slots=True)
class Refused:
    kind: FailureKind
    retry_after: float | None = None


def sessions(request: Request) -> SessionManager:
    manager: SessionManager = request.app.state.sessions
    return manager


async def sign_in(request: Request, username: str, password: str) -> SignedIn | Refused:
    """Check the password and start a session (full, or with the owed step as stage). The
    caller sets the cookie with `sessions(request).set_cookie`."""
    context = web_context(request)
    client_ip = request.app.state.client.ip(request)
    # WEB: the account password (never an app password); TOTP is asked as the next stage.
    result = await context.authenticator.login(
        username, password, client_ip, purpose=LoginPurpose.WEB
    )
    if isinstance(result, LoginFailure):
        return Refused(result.kind, result.retry_after)
    stage = STAGE_FULL
    for check in SECOND_FACTOR_CHECKS:
        owed = await check(context, result.account)
        if owed:
            stage = owed
            break
    # A session cookie the browser had before signing in is never reused (fixation).
    previous = await load_session(request)
    if previous is not None:
        await sessions(request).end(previous)
    loaded = await sessions(request).create(request, result.account.id, stage)
    request.state.tayori_session = loaded
    return SignedIn(loaded)


async def pending_session(request: Request, stage: str) -> LoadedSession | None:
    """The request's session if it is waiting for `stage`, else None."""
    loaded = await load_session(request)
    if loaded is None or loaded.session.stage != stage:
        return None
    return loaded


async def complete_stage(request: Request, response: Response, loaded: LoadedSession) -> None:
    """The owed step is done: replace the session by a full one and set its cookie."""
    manager = sessions(request)
    await manager.end(loaded)
    fresh = await manager.create(request, loaded.session.account_id, STAGE_FULL)
    request.state.tayori_session = fresh
    manager.set_cookie(request, response, fresh.token)


async def sign_out(request: Request, response: Response) -> None:
    loaded = await load_session(request)
    if loaded is not None:
        await sessions(request).end(loaded)
    sessions(request).clear_cookie(request, response)
