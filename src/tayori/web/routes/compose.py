"""Compose pages, and the "Spam" / "Not spam" buttons.

Endpoints other pages link to (the message view's buttons):

- `GET /compose` — a new message (`?to=ADDRESS` fills To).
- `GET /compose?reply=ID`, `?reply_all=ID`, `?forward=ID` (inline, with the original's
  attachments), `?forward_attached=ID` (the original as a message/rfc822 attachment),
  `?draft=ID` (edit a draft).
- `POST /compose` — multipart form; `action` is `send`, `save` (to Drafts) or `discard`.
  Field names: from_address (one of the member's addresses, shown when they have aliases),
  to, cc, bcc, subject, body, attachments (files), keep (indexes of the
  source's attachments to send along), legacy_japanese, and the hidden in_reply_to,
  references, reply_of, draft_id, source_id, forward_attached.
- `GET /compose/suggest?q=PREFIX` — recent correspondents as JSON, for autocomplete.
- `POST /message/{id}/spam` and `POST /message/{id}/not-spam` — form with `csrf_token` and
  an optional `back` (a path on this site); moves the message to Junk / the inbox and trains
  the member's spam filter (`tayori.web.services.spam_feedback`). `POST /api/v1/messages/
  {id}/spam` and `/not-spam` do the same for the API and answer JSON.

Everything works without JavaScript; `static/compose.js` adds the attachment size check
before sending and an upload progress bar.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from tayori.mime.compose import AttachmentSpec
from tayori.mime.filenames import safe_filename
from tayori.web.deps import Member, api_member, current_member
from tayori.web.i18n import format_size
from tayori.web.render import NAV_LINKS, render
from tayori.web.routes.auth import safe_next
from tayori.web.services.compose import ComposeForm, SourceAttachment
from tayori.web.services.errors import UserError
from tayori.web.services.wiring import web_services

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api/v1", tags=["messages"])
MemberDep = Annotated[Member, Depends(current_member)]

_MAX_FIELD = 100_000
_MAX_BODY = 2_000_000

if ("Compose", "/compose") not in NAV_LINKS:
    NAV_LINKS.insert(0, ("Compose", "/compose"))


def _optional_int(text: str | None) -> int | None:
    if text is None:
        return None
    value = text.strip()
    return int(value) if value.isdigit() else None


async def _page(
    request: Request,
    member: Member,
    form: ComposeForm,
    sources: list[SourceAttachment],
    *,
    error: str = "",
    notice: str = "",
    status: int = 200,
) -> Response:
    services = web_services(request)
    people = await services.settings.recent_people(member.account)
    senders = await services.compose.sender_addresses(member.account)
    limit = services.compose.attachment_limit
    title = member.t("New message")
    if form.reply_of is not None:
        title = member.t("Reply")
    elif form.forward_attached is not None or (form.source_id and form.draft_id is None):
        title = member.t("Forward")
    elif form.draft_id is not None:
        title = member.t("Edit draft")
    return await render(
        request,
        member,
        "compose.html",
        status=status,
        title=title,
        form=form,
        sources=sources,
        people=people,
        senders=senders,
        chosen_sender=form.from_address.strip().lower() or senders[0],
        error=error,
        notice=notice,
        can_send=services.can_send,
        attachment_limit=limit,
        attachment_limit_text=format_size(limit, member.language),
    )


@router.get("/compose")
async def compose_page(request: Request, member: MemberDep) -> Response:
    services = web_services(request)
    compose = services.compose
    params = request.query_params
    account = member.account
    sources: list[SourceAttachment] = []
    notice = member.t("The draft was saved.") if params.get("saved") else ""
    try:
        if (ident := _optional_int(params.get("reply"))) is not None:
            form = await compose.reply_form(account, ident, everyone=False)
        elif (ident := _optional_int(params.get("reply_all"))) is not None:
            form = await compose.reply_form(account, ident, everyone=True)
        elif (ident := _optional_int(params.get("forward"))) is not None:
            form, sources = await compose.forward_form(account, ident, attached=False)
        elif (ident := _optional_int(params.get("forward_attached"))) is not None:
            form, sources = await compose.forward_form(account, ident, attached=True)
        elif (ident := _optional_int(params.get("draft"))) is not None:
            form, sources = await compose.draft_form(account, ident)
        else:
            form = await compose.new_form(account, to=params.get("to", "")[:1000])
    except UserError as error:
        form = await compose.new_form(account)
        return await _page(request, member, form, [], error=error.text(member.t), status=404)
    return await _page(request, member, form, sources, notice=notice)


@router.post("/compose")
async def compose_submit(
    request: Request,
    member: MemberDep,
    action: Annotated[str, Form()] = "send",
    to: Annotated[str, Form(max_length=_MAX_FIELD)] = "",
    cc: Annotated[str, Form(max_length=_MAX_FIELD)] = "",
    bcc: Annotated[str, Form(max_length=_MAX_FIELD)] = "",
    subject: Annotated[str, Form(max_length=2000)] = "",
    body: Annotated[str, Form(max_length=_MAX_BODY)] = "",
    in_reply_to: Annotated[str, Form(max_length=2000)] = "",
    references: Annotated[str, Form(max_length=_MAX_FIELD)] = "",
    reply_of: Annotated[str, Form()] = "",
    draft_id: Annotated[str, Form()] = "",
    source_id: Annotated[str, Form()] = "",
    forward_attached: Annotated[str, Form()] = "",
    keep: Annotated[list[int] | None, Form()] = None,
    legacy_japanese: Annotated[str, Form()] = "",
    from_address: Annotated[str, Form(max_length=1000)] = "",
    attachments: Annotated[list[UploadFile] | None, Form()] = None,
) -> Response:
    services = web_services(request)
    compose = services.compose
    account = member.account
    form = ComposeForm(
        to=to,
        cc=cc,
        bcc=bcc,
        subject=subject,
        body=body,
        in_reply_to=in_reply_to,
        references=references,
        reply_of=_optional_int(reply_of),
        draft_id=_optional_int(draft_id),
        source_id=_optional_int(source_id),
        keep=list(keep or []),
        forward_attached=_optional_int(forward_attached),
        legacy_japanese=bool(legacy_japanese),
        from_address=from_address,
    )
    if action == "discard":
        if form.draft_id is not None:
            await compose.discard_draft(account, form.draft_id)
        return RedirectResponse("/", status_code=303)
    client_ip = request.app.state.client.ip(request)
    try:
        uploads = await _uploads(attachments or [], compose.attachment_limit)
        if action == "save":
            saved = await compose.save_draft(account, form, uploads)
            return RedirectResponse(f"/compose?draft={saved}&saved=1", status_code=303)
        sent = await compose.send(account, form, uploads, client_ip)
    except UserError as error:
        sources: list[SourceAttachment] = []
        if uploads:
            # Keep what was uploaded: the member should not have to pick the files again.
            try:
                form.draft_id = await compose.save_draft(account, form, uploads)
                form, sources = await _reopen(request, member, form)
            except UserError:
                pass
        elif form.source_id is not None:
            sources = await _sources(request, member, form.source_id)
        return await _page(request, member, form, sources, error=error.text(member.t), status=400)
    return RedirectResponse(f"/compose/sent?id={sent.queue_id}", status_code=303)


async def _reopen(
    request: Request, member: Member, typed: ComposeForm
) -> tuple[ComposeForm, list[SourceAttachment]]:
    """The just-saved draft's attachments, with the text exactly as the member typed it."""
    assert typed.draft_id is not None
    saved, sources = await web_services(request).compose.draft_form(member.account, typed.draft_id)
    typed.source_id = saved.source_id
    typed.keep = saved.keep
    typed.forward_attached = None
    return typed, sources


async def _sources(request: Request, member: Member, source_id: int) -> list[SourceAttachment]:
    compose = web_services(request).compose
    try:
        _, message = await compose.load(member.account, source_id)
    except UserError:
        return []
    return compose.source_attachments(message)


async def _uploads(files: list[UploadFile], limit: int) -> list[AttachmentSpec]:
    """The uploaded files, refused before they are read into memory when together they are
    over the attachment limit (the page said so before sending; this is the server's
    check)."""
    total = sum(upload.size or 0 for upload in files)
    if total > limit:
        raise UserError(
            "The attachments come to {size}, more than the {limit} a message can carry. "
            "Remove some, or share large files another way.",
            code="size.exceeded",
            size=f"{total / 1_000_000:.1f} MB",
            limit=f"{limit / 1_000_000:.1f} MB",
        )
    found = []
    for upload in files:
        data = await upload.read()
        name = (upload.filename or "").strip()
        if not name and not data:
            continue  # the empty file input of a form sent without attachments
        found.append(
            AttachmentSpec(
                safe_filename(name) if name else "attachment",
                upload.content_type or "application/octet-stream",
                data,
            )
        )
    return found


@router.get("/compose/sent")
async def sent_page(request: Request, member: MemberDep) -> Response:
    return await render(
        request,
        member,
        "compose_sent.html",
        title=member.t("Message sent"),
        queue_id=request.query_params.get("id", "")[:64],
    )


@router.get("/compose/suggest")
async def suggest(request: Request, member: MemberDep) -> Response:
    services = web_services(request)
    prefix = request.query_params.get("q", "")[:100]
    people = await services.settings.recent_people(member.account, prefix, limit=10)
    return JSONResponse(
        [{"address": p.address, "name": p.name} for p in people],
        headers={"Cache-Control": "no-store"},
    )


# --- Spam / Not spam ---------------------------------------------------------------------


async def _mark(request: Request, member: Member, message_id: int, *, spam: bool) -> int:
    return await web_services(request).spam.mark(member.account, [message_id], spam=spam)


@router.post("/message/{message_id}/spam")
async def mark_spam(
    request: Request,
    message_id: int,
    member: MemberDep,
    back: Annotated[str, Form()] = "",
) -> Response:
    return await _marked(request, member, message_id, back, spam=True)


@router.post("/message/{message_id}/not-spam")
async def mark_not_spam(
    request: Request,
    message_id: int,
    member: MemberDep,
    back: Annotated[str, Form()] = "",
) -> Response:
    return await _marked(request, member, message_id, back, spam=False)


async def _marked(
    request: Request, member: Member, message_id: int, back: str, *, spam: bool
) -> Response:
    try:
        await _mark(request, member, message_id, spam=spam)
    except UserError:
        return RedirectResponse("/", status_code=303)
    target = safe_next(back) if back else f"/message/{message_id}"
    joiner = "&" if "?" in target else "?"
    done = "spam" if spam else "not-spam"
    return RedirectResponse(f"{target}{joiner}done={done}:1", status_code=303)


@api_router.post("/messages/{message_id}/spam")
async def api_mark_spam(
    request: Request, message_id: int, member: Annotated[Member, Depends(api_member)]
) -> Response:
    """Move the message to Junk and train the member's spam filter with it."""
    return await _api_mark(request, member, message_id, spam=True)


@api_router.post("/messages/{message_id}/not-spam")
async def api_mark_not_spam(
    request: Request, message_id: int, member: Annotated[Member, Depends(api_member)]
) -> Response:
    """Move the message to the inbox and train the member's spam filter with it as ham."""
    return await _api_mark(request, member, message_id, spam=False)


async def _api_mark(request: Request, member: Member, message_id: int, *, spam: bool) -> Response:
    try:
        count = await _mark(request, member, message_id, spam=spam)
    except UserError as error:
        body: dict[str, Any] = {"error": "not_found", "message": error.text(member.t)}
        return JSONResponse(body, status_code=404)
    return JSONResponse({"moved": count, "folder": "Junk" if spam else "INBOX"})
