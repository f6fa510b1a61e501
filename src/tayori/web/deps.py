"""Who is asking: the signed-in member of a page or API request, and the CSRF check.

`current_member` is the dependency every page route takes; `api_member` is the API's (a
session cookie, or HTTP Basic credentials checked like a mail program's). Neither keeps a
password anywhere: Basic credentials are checked on each request and forgotten.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from tayori.auth.authenticator import LoginFailure
from tayori.storage.member_records import MemberPreferences
from tayori.storage.records import Account
from tayori.web.context import WebContext, web_context
from tayori.web.i18n import Translator, choose_language, zone
from tayori.web.security import SAFE_METHODS, same_origin, tokens_match
from tayori.web.sessions import PRE_LOGIN_COOKIE, STAGE_FULL, LoadedSession


class LoginRequired(Exception):
    """Nobody (or nobody fully) is signed in: pages redirect to the sign-in form, the API
    answers 401."""

    def __init__(self, stage: str | None = None) -> None:
        super().__init__(stage or "login")
        self.stage = stage


class CsrfFailure(Exception):
    """A state-changing request without the right token, or from another site."""


class AccountGone(Exception):
    """The session's account was removed or disabled meanwhile."""


@dataclass
class Member:
    """The signed-in member of one request: a fresh account row (quota is current), the
    session (None with HTTP Basic), language and time zone."""

    account: Account
    session: LoadedSession | None
    preferences: MemberPreferences
    language: str
    tz: ZoneInfo
    t: Translator

    @property
    def csrf_token(self) -> str:
        return self.session.session.csrf_token if self.session else ""


async def load_session(request: Request) -> LoadedSession | None:
    """The request's session, looked up once per request (the CSRF check and the member
    dependency both need it)."""
    if hasattr(request.state, "tayori_session"):
        loaded: LoadedSession | None = request.state.tayori_session
        return loaded
    manager = request.app.state.sessions
    loaded = await manager.load(request)
    request.state.tayori_session = loaded
    return loaded


def translator_for(request: Request, preference: str = "") -> Translator:
    context = web_context(request)
    language = choose_language(
        preference, request.headers.get("accept-language"), context.settings.web.language
    )
    return context.catalogues.translator(language)


async def _member(
    context: WebContext, account_id: int, loaded: LoadedSession | None, request: Request
) -> Member:
    account = await run_in_threadpool(context.stores.metadata.get_account_by_id, account_id)
    if account is None or account.status != "active":
        raise AccountGone()
    assert context.preferences is not None
    preferences = await run_in_threadpool(context.preferences, account.id)
    t = translator_for(request, preferences.language)
    tz = zone(preferences.time_zone, context.settings.web.time_zone)
    member = Member(account, loaded, preferences, t.language, tz, t)
    request.state.tayori_member = member
    return member


async def current_member(request: Request) -> Member:
    """The signed-in member, or LoginRequired (pages: redirect to /login)."""
    loaded = await load_session(request)
    if loaded is None:
        raise LoginRequired()
    if loaded.session.stage != STAGE_FULL:
        raise LoginRequired(loaded.session.stage)
    return await _member(web_context(request), loaded.session.account_id, loaded, request)


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    return (username, password) if colon else None


async def api_member(request: Request) -> Member:
    """The API's member: session cookie first, else HTTP Basic (checked through the same
    authenticator and throttle as POP3 and SMTP AUTH)."""
    loaded = await load_session(request)
    context = web_context(request)
    if loaded is not None and loaded.session.stage == STAGE_FULL:
        return await _member(context, loaded.session.account_id, loaded, request)
    credentials = _basic_credentials(request)
    if credentials is None:
        raise LoginRequired()
    client_ip = request.app.state.client.ip(request)
    assert context.api_login is not None
    result = await context.api_login(credentials[0], credentials[1], client_ip)
    if isinstance(result, LoginFailure):
        raise LoginRequired()
    return await _member(context, result.account.id, None, request)


async def _submitted_token(request: Request) -> str | None:
    header = request.headers.get("x-csrf-token")
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()  # cached on the request: the handler reads it again
        value = form.get("csrf_token")
        return value if isinstance(value, str) else None
    return None


async def csrf_protect(request: Request) -> None:
    """App-wide dependency: every POST/PUT/PATCH/DELETE must carry the session's token
    (form field `csrf_token` or header `X-CSRF-Token`), or, before sign-in, the sign-in
    form's double-submit cookie. API calls with HTTP Basic and no session are exempt only
    when they send JSON, which a cross-site form cannot."""
    if request.method in SAFE_METHODS:
        return
    context = web_context(request)
    if not same_origin(request, context.settings.web.public_url):
        raise CsrfFailure()
    loaded = await load_session(request)
    if loaded is not None:
        if not tokens_match(loaded.session.csrf_token, await _submitted_token(request)):
            raise CsrfFailure()
        return
    if _basic_credentials(request) is not None:
        if request.headers.get("content-type", "").startswith("application/json"):
            return
        raise CsrfFailure()
    if not tokens_match(request.cookies.get(PRE_LOGIN_COOKIE, ""), await _submitted_token(request)):
        raise CsrfFailure()
