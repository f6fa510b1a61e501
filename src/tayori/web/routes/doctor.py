"""The mail doctor page (メール診断): the help desk's three questions as entry points —
"I can't receive mail", "Mail sent to me doesn't arrive" (with the sender or subject),
"My mail doesn't get through" — answered with the member's own findings, most likely
first, each with what to do, a link and the evidence.

The checks are `tayori.diagnostics.doctor`'s, the same `tayori doctor` runs for the help
desk; the member's current network is this request's client address. `/api/v1/doctor`
gives the findings as JSON.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tayori.core.outcome import Direction
from tayori.diagnostics.doctor import Doctor, DoctorQuery
from tayori.diagnostics.findings import Fact, Finding, Problem
from tayori.diagnostics.remote_reply import RemoteRefusal
from tayori.dns.resolver import DnsPythonResolver
from tayori.rules.model import Scope
from tayori.web.context import WebContext, web_context
from tayori.web.deps import Member, api_member, current_member
from tayori.web.i18n import Translator
from tayori.web.render import NAV_LINKS, render
from tayori.web.routes.history import OUTCOME_LABELS

router = APIRouter()
MemberDep = Annotated[Member, Depends(current_member)]
ApiMemberDep = Annotated[Member, Depends(api_member)]

if ("Mail doctor", "/doctor") not in NAV_LINKS:
    NAV_LINKS.append(("Mail doctor", "/doctor"))

ENTRY_POINTS = (
    (Problem.RECEIVE, "I can't receive mail"),
    (Problem.MISSING, "Mail sent to me doesn't arrive"),
    (Problem.SEND, "My mail doesn't get through"),
)
"""(problem, msgid): the questions of `tayori.diagnostics.findings.PROBLEM_TITLES`."""

EVIDENCE_LABELS: dict[str, str] = {
    # an outcome (`tayori.diagnostics.findings.outcome_evidence`) and its extras
    "time": "Time",
    "direction": "Direction",
    "outcome": "Result",
    "reason": "Reason code",
    "sender": "Sender",
    "recipient": "Recipient",
    "subject": "Subject",
    "message_id": "Message-ID",
    "size": "Size",
    "remote_reply": "Remote server's reply",
    "refusal": "Kind of refusal",
    "score": "Spam score",
    "top_reasons": "Main spam signs",
    # the quota
    "used": "Space used",
    "quota": "Mailbox size limit",
    "percent": "Percent used",
    "refused_in_period": "Refused in this period",
    "last_refused": "Last refused",
    # a rule, forwarding
    "id": "Number",
    "scope": "Scope",
    "pattern": "Pattern",
    "matches": "Matches",
    "matched": "Matched",
    "targets": "Forwarding addresses",
    "keep_copy": "Keep a copy",
    # the sender address, the network, the search, counts
    "address": "E-mail address",
    "domain": "Domain",
    "dns": "DNS answer",
    "ip": "IP address",
    "zone": "Blocklist",
    "listed": "Listed",
    "codes": "Blocklist codes",
    "since": "Searched from",
    "until": "Searched until",
    "count": "Count",
    "last": "Latest",
    # a stored message
    "mailbox": "Folder",
    "uid": "Message number (UID)",
    "from": "From",
    "date": "Date",
    "received": "Received",
    "threshold": "Large message size",
    "defects": "Format problems",
}
"""Evidence fact name -> msgid of its label on the page. The names stay as they are in the
JSON API and `tayori doctor --json` (a public interface); only the page shows them in the
member's language. A name missing here shows as itself with spaces for underscores."""


_YES_NO = {"yes": "Yes", "no": "No"}

EVIDENCE_VALUES: dict[str, dict[str, str]] = {
    "direction": {Direction.INBOUND: "Mail to me", Direction.OUTBOUND: "Mail I sent"},
    "outcome": OUTCOME_LABELS,
    "refusal": {
        RemoteRefusal.USER_UNKNOWN: "The address does not exist there",
        RemoteRefusal.MAILBOX_FULL: "The recipient's mailbox is full",
        RemoteRefusal.REPUTATION: "Refused for the sending server's reputation",
        RemoteRefusal.BLOCKED: "Blocked by the receiving side",
        RemoteRefusal.REJECTED: "Refused by the receiving server",
        "queue.expired": "Could not be delivered in time",
        "remote.null_mx": "The domain accepts no mail",
    },
    "dns": {
        "exists": "The domain exists",
        "nxdomain": "No such domain",
        "null_mx": "The domain accepts no mail",
        "tempfail": "DNS did not answer",
    },
    "scope": {
        Scope.ACCOUNT: "Your own rule",
        Scope.DOMAIN: "Domain rule",
        Scope.GLOBAL: "Service-wide rule",
    },
    "pattern": {"(admin)": "(set by the administrator)"},
    "matched": {"envelope sender": "Envelope sender", "From:": "From: header"},
    "listed": _YES_NO,
    "keep_copy": _YES_NO,
}
"""Evidence values that are words of ours (not the member's data) -> msgid, per fact name.
The API and `tayori doctor --json` keep the plain values; the page shows them translated."""


def evidence_rows(t: Translator, finding: Finding) -> list[list[tuple[str, str, Fact]]]:
    """Each evidence item as (name, label, value) facts, empty values left out; the name is
    kept for the page's `data-key` so scripts and tests need not read the label. Values of
    ours (directions, results, DNS answers…) are in the member's language too."""
    return [
        [
            (key, t(EVIDENCE_LABELS.get(key, key.replace("_", " "))), _value(t, key, value))
            for key, value in item.facts.items()
            if value != ""
        ]
        for item in finding.evidence
    ]


def _value(t: Translator, key: str, value: Fact) -> Fact:
    msgid = EVIDENCE_VALUES.get(key, {}).get(str(value))
    return value if msgid is None else t(msgid)


def _doctor(request: Request) -> Doctor:
    """One doctor per app, built on first use from the app's stores and settings."""
    state = request.app.state
    doctor: Doctor | None = getattr(state, "tayori_doctor", None)
    if doctor is None:
        context: WebContext = web_context(request)
        settings = context.settings
        stores = context.stores
        doctor = Doctor(
            stores.metadata,
            stores.blobs,
            stores.rules,
            DnsPythonResolver(settings.dns),
            settings.doctor,
            settings.submission.dnsbl,
        )
        state.tayori_doctor = doctor
    return doctor


def _query(request: Request) -> DoctorQuery | None:
    params = request.query_params
    problem = params.get("problem", "")
    if problem not in {str(p) for p in Problem}:
        return None
    return DoctorQuery(
        problems=frozenset({Problem(problem)}),
        sender=params.get("sender", "")[:200].strip(),
        subject=params.get("subject", "")[:200].strip(),
        now=web_context(request).clock(),
        client_ip=request.app.state.client.ip(request),
    )


@router.get("/doctor", include_in_schema=False)
async def doctor_page(request: Request, member: MemberDep) -> Response:
    query = _query(request)
    findings: list[Finding] = []
    if query is not None:
        findings = await _doctor(request).examine(member.account, query)
    problem = next(iter(query.problems)) if query is not None else None
    return await render(
        request,
        member,
        "doctor.html",
        title=member.t("Mail doctor"),
        entry_points=ENTRY_POINTS,
        asked=problem.value if problem is not None else "",
        sender=query.sender if query else "",
        subject=query.subject if query else "",
        findings=[
            (f, f.summary(member.language), f.action(member.language), evidence_rows(member.t, f))
            for f in findings
        ],
    )


@router.get("/api/v1/doctor", tags=["diagnostics"])
async def doctor_api(request: Request, member: ApiMemberDep) -> JSONResponse:
    """Findings for `problem` (receive, missing or send; all three when left out), with
    `sender` / `subject` for missing mail: a list, most likely first, each with `reason`,
    `summary`, `action`, `evidence` and `link`, in the member's language."""
    query = _query(request) or DoctorQuery(
        sender=request.query_params.get("sender", "")[:200].strip(),
        subject=request.query_params.get("subject", "")[:200].strip(),
        now=web_context(request).clock(),
        client_ip=request.app.state.client.ip(request),
    )
    findings = await _doctor(request).examine(member.account, query)
    body: list[dict[str, Any]] = [f.to_json(member.language) for f in findings]
    return JSONResponse(body)
