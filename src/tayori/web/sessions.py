"""Server-side sessions: an opaque random cookie, only its hash in the store.

The cookie carries 32 random bytes and nothing else (no account id, no password, no
signature to forge); the store keeps its SHA-256, the account, the CSRF token, and when and
from where it was used. A session ends after `session_idle_timeout` without a request, after
`session_absolute_timeout` whatever happens, at sign-out, or when the member signs it out
from another browser.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tayori.config.settings import WebSettings
from tayori.storage.interfaces import WebSession, WebSessionStore
from tayori.web.security import ClientInfo, is_loopback

COOKIE = "tayori_session"
PRE_LOGIN_COOKIE = "tayori_login_csrf"
"""Double-submit token for the sign-in form, which has no session to keep a token in."""
STAGE_FULL = "full"
TOUCH_EVERY = timedelta(seconds=60)
"""`last_seen` is written at most this often per session: one write per page view would
turn every read into a write transaction."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class LoadedSession:
    session: WebSession
    token: str


class SessionManager:
    """Creates, finds, expires and ends sessions; sets and clears the cookie."""

    def __init__(
        self,
        store: WebSessionStore,
        settings: WebSettings,
        client: ClientInfo,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.settings = settings
        self.client = client
        self.clock = clock
        self.idle = timedelta(seconds=settings.session_idle_timeout)
        self.absolute = timedelta(seconds=settings.session_absolute_timeout)

    def expired(self, session: WebSession, now: datetime) -> bool:
        return now - session.last_seen > self.idle or now - session.created > self.absolute

    async def create(self, request: Request, account_id: int, stage: str) -> LoadedSession:
        token = new_token()
        session = await run_in_threadpool(
            self.store.create_session,
            hash_token(token),
            account_id,
            secrets.token_urlsafe(32),
            stage=stage,
            now=self.clock(),
            user_agent=request.headers.get("user-agent", ""),
            ip=self.client.ip(request),
        )
        return LoadedSession(session, token)

    async def load(self, request: Request) -> LoadedSession | None:
        """The request's live session, or None (no cookie, unknown, or expired: an expired
        one is deleted on the way)."""
        token = request.cookies.get(COOKIE)
        if not token or len(token) > 128:
            return None
        id_hash = hash_token(token)
        session = await run_in_threadpool(self.store.get_session, id_hash)
        if session is None:
            return None
        now = self.clock()
        if self.expired(session, now):
            await run_in_threadpool(self.store.delete_session, id_hash)
            return None
        if now - session.last_seen >= TOUCH_EVERY:
            await run_in_threadpool(self.store.touch_session, id_hash, now, self.client.ip(request))
        return LoadedSession(session, token)

    async def end(self, loaded: LoadedSession) -> None:
        await run_in_threadpool(self.store.delete_session, loaded.session.id_hash)

    async def sweep(self) -> int:
        now = self.clock()
        return await run_in_threadpool(
            self.store.delete_expired, now - self.idle, now - self.absolute
        )

    def secure_cookie(self, request: Request) -> bool:
        """Secure unless this is plain HTTP from loopback and the admin allows that (a
        browser would not send a Secure cookie back over http://127.0.0.1)."""
        if self.client.is_https(request):
            return True
        peer = request.client.host if request.client else ""
        return not (self.settings.insecure_cookies_on_loopback and is_loopback(peer))

    def set_cookie(self, request: Request, response: Response, token: str) -> None:
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(self.absolute.total_seconds()),
            path="/",
            httponly=True,
            secure=self.secure_cookie(request),
            samesite="lax",
        )

    def clear_cookie(self, request: Request, response: Response) -> None:
        response.delete_cookie(
            COOKIE, path="/", httponly=True, secure=self.secure_cookie(request), samesite="lax"
        )
