"""What every web handler needs, built once by `tayori.app` and kept on the ASGI app."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from starlette.requests import Request

from tayori.auth.authenticator import Authenticator, LoginResult
from tayori.config.loader import web_problems
from tayori.config.settings import Settings, WebSettings
from tayori.core.errors import ConfigError
from tayori.core.outcome import utcnow
from tayori.storage.factory import Stores
from tayori.storage.member_records import MemberPreferences

if TYPE_CHECKING:
    from tayori.servers.smtp_submission import SubmissionHandler
    from tayori.spam import SpamEngine
    from tayori.web.i18n import Catalogues

ApiLogin = Callable[[str, str, str], Awaitable[LoginResult]]
"""(username, password, client ip) -> result, for HTTP Basic on the API."""


@dataclass
class WebContext:
    """The collaborators of the web app. `preferences` gives a member's language and time
    zone (default: the member store's). `api_login` checks HTTP
    Basic credentials: the account password by default; with app passwords, the settings
    code replaces it so that an account with two-factor sign-in accepts only those."""

    settings: Settings
    stores: Stores
    authenticator: Authenticator
    clock: Callable[[], datetime] = utcnow
    preferences: Callable[[int], MemberPreferences] | None = None
    api_login: ApiLogin | None = None
    submission: SubmissionHandler | None = None
    """The submission pipeline mail programs use (sender checks, rate limits, queue), for
    sending from the webmail; None in tests that do not send."""
    spam_engine: SpamEngine | None = None
    """The engine `[spam] engine` chose (built-in or rspamd), so that "Spam"/"Not spam"
    train the same engine that scores; None: the built-in one on the store."""
    catalogues: Catalogues = field(init=False)

    def __post_init__(self) -> None:
        from tayori.web.i18n import Catalogues

        check_web_settings(self.settings.web)
        self.catalogues = Catalogues.load()
        if self.api_login is None:
            self.api_login = self.authenticator.login
        if self.preferences is None:
            self.preferences = self.stores.member.get_preferences


def check_web_settings(web: WebSettings) -> None:
    """Refuse at start-up a time zone, a language, a public URL or a proxy network that does
    not work. The first three are the config loader's own checks (`web_problems`), so
    `tayori config check` reports exactly what this refuses; `serve` checks again because a
    context can also be built from settings that never went through the loader."""
    problems = [str(problem) for problem in web_problems(web)]
    for item in web.trusted_proxies:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            problems.append(f"web.trusted_proxies: {item!r} is not an address or network")
    if problems:
        raise ConfigError("; ".join(problems))


def web_context(request: Request) -> WebContext:
    context: WebContext = request.app.state.tayori
    return context
