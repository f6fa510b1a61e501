"""Pages: one Jinja2 environment with autoescaping on, and the values every page shows.

Autoescaping is on for every template, so a subject or a sender's name is text, never
markup; nothing derived from mail is marked safe anywhere (the one HTML body we show is a
separate, sandboxed document, see `tayori.web.security.BODY_CSP`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse

from tayori.storage.records import MailboxStatus, SpecialUse
from tayori.web.context import web_context
from tayori.web.deps import Member
from tayori.web.i18n import Translator, format_datetime, format_full_datetime, format_size

QUOTA_WARNING = 90

NAV_LINKS: list[tuple[str, str]] = []
"""(msgid, path) links the layout shows beside the folders; other route modules append
theirs on import (e.g. ("Compose", "/compose"), ("Settings", "/settings"))."""

_ENVIRONMENT = Environment(
    loader=PackageLoader("tayori.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)

FOLDER_NAMES = {
    SpecialUse.INBOX: "Inbox",
    SpecialUse.JUNK: "Junk",
    SpecialUse.SENT: "Sent",
    SpecialUse.DRAFTS: "Drafts",
    SpecialUse.TRASH: "Trash",
}
"""msgids of the special-use folders' names (受信箱, 迷惑メール, ...)."""


def folder_label(
    t: Translator, status_or_name: MailboxStatus | str, special: SpecialUse | None = None
) -> str:
    if isinstance(status_or_name, MailboxStatus):
        special = status_or_name.mailbox.special_use
        name = status_or_name.mailbox.name
    else:
        name = status_or_name
    return t(FOLDER_NAMES[special]) if special is not None else name


@dataclass(frozen=True, slots=True)
class Quota:
    used: int
    limit: int

    @property
    def percent(self) -> int:
        if self.limit <= 0:
            return 0
        return min(100, self.used * 100 // self.limit)

    @property
    def warning(self) -> bool:
        return self.limit > 0 and self.percent >= QUOTA_WARNING

    @property
    def full(self) -> bool:
        return self.limit > 0 and self.used >= self.limit


def environment() -> Environment:
    return _ENVIRONMENT


async def page_values(request: Request, member: Member) -> dict[str, Any]:
    """What the layout needs: folders with unread counts, the quota, formatters."""
    context = web_context(request)
    statuses = await run_in_threadpool(context.stores.metadata.mailbox_statuses, member.account.id)
    language = member.language
    now = context.clock()
    return {
        "member": member,
        "nav_links": NAV_LINKS,
        "folders": [(status, folder_label(member.t, status)) for status in statuses],
        "quota": Quota(member.account.used_bytes, member.account.quota_bytes),
        "csrf_token": member.csrf_token,
        "fmt_date": lambda value: format_datetime(value, member.tz, language, now=now),
        "fmt_full_date": lambda value: format_full_datetime(value, member.tz, language),
        "fmt_size": lambda size: format_size(size, language),
    }


def render_template(
    t: Translator, template: str, values: dict[str, Any], status: int = 200
) -> HTMLResponse:
    body = _ENVIRONMENT.get_template(template).render(_=t, lang=t.language, **values)
    return HTMLResponse(body, status_code=status)


async def render(
    request: Request, member: Member, template: str, *, status: int = 200, **values: Any
) -> HTMLResponse:
    """A page for a signed-in member: the layout's values plus the route's."""
    base = await page_values(request, member)
    base.update(values)
    return render_template(member.t, template, base, status)


def render_public(
    request: Request, t: Translator, template: str, *, status: int = 200, **values: Any
) -> HTMLResponse:
    """A page shown before sign-in (no folders, no quota)."""
    return render_template(t, template, {"member": None, **values}, status)


def now_value(request: Request) -> datetime:
    return web_context(request).clock()
