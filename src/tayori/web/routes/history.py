"""The delivery history page (配信履歴): the member's own outcomes, newest first, filtered,
each in plain words from the reason catalogue with what to do and a link.

The rows come from `tayori.diagnostics.history`, which decides which outcomes are the
member's and leaves out every private detail; this module only reads the filters from the
query string and renders. `/api/v1/history` gives the same rows as JSON.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tayori.core.outcome import OutcomeKind
from tayori.diagnostics.findings import iso
from tayori.diagnostics.history import HistoryEntry, HistoryFilter, member_history
from tayori.web.context import web_context
from tayori.web.deps import Member, api_member, current_member
from tayori.web.render import NAV_LINKS, render

router = APIRouter()
MemberDep = Annotated[Member, Depends(current_member)]
ApiMemberDep = Annotated[Member, Depends(api_member)]
PAGE_SIZE = 50

if ("Delivery history", "/history") not in NAV_LINKS:
    NAV_LINKS.append(("Delivery history", "/history"))

OUTCOME_LABELS: dict[str, str] = {
    OutcomeKind.DELIVERED: "Delivered",
    OutcomeKind.JUNKED: "Filed in Junk",
    OutcomeKind.REJECTED: "Refused",
    OutcomeKind.DEFERRED: "Delayed",
    OutcomeKind.BOUNCED: "Returned",
    OutcomeKind.FORWARDED: "Forwarded",
    OutcomeKind.DISCARDED: "Discarded",
}
"""msgids of the outcome kinds, for the filter and the rows."""
FILTER_FIELDS = ("direction", "party", "subject", "since", "until", "outcome")


def _day(text: str, tz: ZoneInfo, *, end: bool = False) -> datetime | None:
    """A `YYYY-MM-DD` date in the member's time zone: its start, or (end) the next day's."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        return None
    if end:
        day += timedelta(days=1)
    return datetime.combine(day, time.min, tzinfo=tz)


def read_filters(request: Request, tz: ZoneInfo) -> tuple[HistoryFilter, dict[str, str]]:
    """The filter from the query string, and the values to show back in the form."""
    values = {name: request.query_params.get(name, "")[:200] for name in FILTER_FIELDS}
    direction = values["direction"] if values["direction"] in ("in", "out") else ""
    values["direction"] = direction
    filters = HistoryFilter(
        direction=direction,
        party=values["party"],
        subject=values["subject"],
        since=_day(values["since"], tz),
        until=_day(values["until"], tz, end=True),
        outcome=values["outcome"],
    )
    return filters, values


def _page(request: Request) -> int:
    try:
        return max(1, min(int(request.query_params.get("page", "1")), 10_000))
    except ValueError:
        return 1


async def _rows(
    request: Request, member: Member, filters: HistoryFilter, page: int
) -> list[HistoryEntry]:
    metadata = web_context(request).stores.metadata
    return await run_in_threadpool(
        lambda: member_history(
            metadata,
            member.account,
            filters,
            lang=member.language,
            limit=PAGE_SIZE + 1,
            offset=(page - 1) * PAGE_SIZE,
        )
    )


@router.get("/history", include_in_schema=False)
async def history_page(request: Request, member: MemberDep) -> Response:
    filters, values = read_filters(request, member.tz)
    page = _page(request)
    rows = await _rows(request, member, filters, page)
    kept = {name: value for name, value in values.items() if value}

    def page_link(number: int) -> str:
        return "/history?" + urlencode({**kept, "page": number})

    return await render(
        request,
        member,
        "history.html",
        title=member.t("Delivery history"),
        rows=rows[:PAGE_SIZE],
        values=values,
        outcomes=OUTCOME_LABELS,
        page=page,
        previous=page_link(page - 1) if page > 1 else "",
        next=page_link(page + 1) if len(rows) > PAGE_SIZE else "",
        filtered=bool(kept),
    )


def entry_json(row: HistoryEntry) -> dict[str, Any]:
    return {
        "id": row.id,
        "time": iso(row.time),
        "direction": row.direction,
        "sender": row.sender,
        "recipient": row.recipient,
        "subject": row.subject,
        "outcome": row.outcome,
        "reason": row.reason,
        "summary": row.summary,
        "action": row.action,
        "link": row.link,
    }


@router.get("/api/v1/history", tags=["diagnostics"])
async def history_api(request: Request, member: ApiMemberDep) -> JSONResponse:
    """The member's delivery history, newest first: the same filters as the page
    (`direction`, `party`, `subject`, `since`, `until` as YYYY-MM-DD, `outcome`, `page`)."""
    filters, _values = read_filters(request, member.tz)
    page = _page(request)
    rows = await _rows(request, member, filters, page)
    return JSONResponse(
        {
            "entries": [entry_json(row) for row in rows[:PAGE_SIZE]],
            "page": page,
            "more": len(rows) > PAGE_SIZE,
        }
    )
