"""Folder view (list, sort, page, search, act on many) and reading a message."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from tayori.mime.charsets import resolve
from tayori.storage.records import SortKey, SpecialUse
from tayori.web.context import web_context
from tayori.web.deps import Member, current_member
from tayori.web.render import folder_label, render
from tayori.web.routes.auth import safe_next
from tayori.web.security import BODY_CSP, BODY_CSP_IMAGES, PDF_PREVIEW_CSP, PREVIEW_CSP
from tayori.web.services import mail
from tayori.web.services.wiring import web_services

router = APIRouter(include_in_schema=False)
MemberDep = Annotated[Member, Depends(current_member)]
SEARCH_FIELDS = ("text", "from", "to", "subject", "body", "since", "until", "attachment")


@router.get("/")
async def home(request: Request, member: MemberDep) -> Response:
    inbox = await mail.inbox(web_context(request).stores, member.account.id)
    return RedirectResponse(f"/folder/{inbox.id}", status_code=303)


def _search_values(request: Request) -> dict[str, str]:
    return {name: request.query_params.get(name, "")[:200] for name in SEARCH_FIELDS}


async def _list_page(request: Request, member: Member, mailbox_id: int | None) -> Response:
    context = web_context(request)
    stores = context.stores
    params = request.query_params
    try:
        sort = SortKey(params.get("sort", "date"))
    except ValueError:
        sort = SortKey.DATE
    descending = params.get("order", "desc") != "asc"
    try:
        number = max(1, min(int(params.get("page", "1")), 1_000_000))
    except ValueError:
        number = 1
    search = _search_values(request)
    query = mail.build_query(
        text=search["text"],
        sender=search["from"],
        recipient=search["to"],
        subject=search["subject"],
        body=search["body"],
        since=search["since"],
        until=search["until"],
        attachment=search["attachment"],
        unread=params.get("unread") == "1",
        tz=member.tz,
    )
    mailbox = None
    if mailbox_id is not None:
        mailbox = await mail.resolve_mailbox(stores, member.account.id, mailbox_id)
    result = await mail.list_messages(
        stores,
        member.account.id,
        mailbox_id,
        mail.ListRequest(sort, descending, number, query),
        context.settings.web.page_size,
    )
    base = f"/folder/{mailbox_id}" if mailbox_id is not None else "/search"
    kept = {k: v for k, v in search.items() if v}

    def link(**changes: object) -> str:
        values: dict[str, object] = {"sort": sort.value, "order": "desc" if descending else "asc"}
        values.update(kept)
        values.update(changes)
        return f"{base}?{urlencode(values)}"

    title = (
        folder_label(member.t, mailbox.name, mailbox.special_use)
        if mailbox is not None
        else member.t("Search results")
    )
    return await render(
        request,
        member,
        "folder.html",
        title=title,
        mailbox=mailbox,
        result=result,
        sort=sort.value,
        descending=descending,
        search=search,
        searching=query is not None,
        link=link,
        large=context.settings.web.large_message_size,
        seen=mail.SEEN,
        flagged=mail.FLAGGED,
        back=str(request.url.path) + ("?" + request.url.query if request.url.query else ""),
        notice=params.get("done", ""),
    )


@router.get("/folder/{mailbox_id}")
async def folder(request: Request, mailbox_id: int, member: MemberDep) -> Response:
    return await _list_page(request, member, mailbox_id)


@router.get("/search")
async def search(request: Request, member: MemberDep) -> Response:
    return await _list_page(request, member, None)


ACTIONS = ("move", "trash", "read", "unread", "flag", "unflag")


@router.post("/messages/act")
async def act(
    request: Request,
    member: MemberDep,
    action: Annotated[str, Form()],
    ids: Annotated[list[int] | None, Form()] = None,
    target: Annotated[int | None, Form()] = None,
    back: Annotated[str, Form()] = "/",
) -> Response:
    """Act on the selected messages (checkbox form): move, to Trash, read/unread, flag."""
    stores = web_context(request).stores
    account = member.account.id
    chosen = list(dict.fromkeys(ids or []))[:1000]
    count = 0
    if action == "move" and target is not None:
        await mail.resolve_mailbox(stores, account, target)
        count = await mail.move(stores, account, chosen, target)
    elif action == "trash":
        count = await mail.to_trash(stores, account, chosen)
    elif action in ("read", "unread"):
        flag = (mail.SEEN,)
        await mail.mark(stores, account, chosen, **{"add" if action == "read" else "remove": flag})
        count = len(chosen)
    elif action in ("flag", "unflag"):
        flag = (mail.FLAGGED,)
        await mail.mark(stores, account, chosen, **{"add" if action == "flag" else "remove": flag})
        count = len(chosen)
    elif action == "delete" and chosen:
        # Nothing is removed yet: the member first reads what "permanently" means.
        return await render(
            request,
            member,
            "confirm_delete.html",
            title=member.t("Delete permanently"),
            ids=chosen,
            back=safe_next(back),
            folder=None,
        )
    elif action == "delete-confirmed":
        count = await mail.delete_permanently(stores, account, chosen)
    target_url = safe_next(back)
    joiner = "&" if "?" in target_url else "?"
    return RedirectResponse(f"{target_url}{joiner}done={action}:{count}", status_code=303)


@router.post("/message/{message_id}/images/always")
async def always_show_images(request: Request, message_id: int, member: MemberDep) -> Response:
    """ "Always show images from this sender": the message's From addresses join the member's
    list, so the next message from them opens with its images."""
    stores = web_context(request).stores
    _, message = await mail.load_message(stores, member.account.id, message_id)
    settings = web_services(request).settings
    for sender in {m.address.lower() for m in message.from_ if m.address}:
        await settings.show_images_from(member.account, sender)
    return RedirectResponse(f"/message/{message_id}?images=1", status_code=303)


@router.post("/folder/{mailbox_id}/empty")
async def empty(
    request: Request,
    mailbox_id: int,
    member: MemberDep,
    confirmed: Annotated[str, Form()] = "",
) -> Response:
    """Empty Trash or Junk: the first POST shows what it means, the confirmed one does it."""
    stores = web_context(request).stores
    mailbox = await mail.resolve_mailbox(stores, member.account.id, mailbox_id)
    if mailbox.special_use not in (SpecialUse.TRASH, SpecialUse.JUNK):
        return RedirectResponse(f"/folder/{mailbox.id}", status_code=303)
    if confirmed != "yes":
        return await render(
            request,
            member,
            "confirm_delete.html",
            title=member.t("Empty this folder"),
            ids=[],
            back=f"/folder/{mailbox.id}",
            folder=mailbox,
            folder_label=folder_label(member.t, mailbox.name, mailbox.special_use),
        )
    count = await mail.empty_folder(stores, member.account.id, mailbox.id)
    return RedirectResponse(f"/folder/{mailbox.id}?done=delete-confirmed:{count}", status_code=303)


@router.get("/message/{message_id}")
async def read(
    request: Request,
    message_id: int,
    member: MemberDep,
    images: Annotated[int, Query()] = 0,
    charset: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    stores = web_context(request).stores
    stored, message = await mail.load_message(stores, member.account.id, message_id)
    senders = {m.address.lower() for m in message.from_}
    trusted_sender = bool(senders & set(member.preferences.image_senders))
    images = images or int(trusted_sender)
    if mail.SEEN not in stored.flags:
        await mail.mark(stores, member.account.id, [stored.id], add=(mail.SEEN,))
    mailbox = await mail.resolve_mailbox(stores, member.account.id, stored.mailbox_id)
    chosen = charset if charset and resolve(charset) is not None else ""
    has_html = any(p.content_type == "text/html" for p in message.structure.html)
    return await render(
        request,
        member,
        "message.html",
        title=message.subject or member.t("(no subject)"),
        stored=stored,
        message=message,
        mailbox=mailbox,
        mailbox_label=folder_label(member.t, mailbox.name, mailbox.special_use),
        body_text=mail.linkify(mail.text_parts(message, chosen or None)),
        has_html=has_html and not chosen,
        images=bool(images),
        trusted_sender=trusted_sender,
        remote_images=has_html and mail.has_remote_images(message),
        attachments=list(enumerate(message.attachments)),
        previewable=mail.PREVIEW_TYPES,
        encodings=mail.ENCODINGS,
        charset=chosen,
        flagged=mail.FLAGGED in stored.flags,
        back=f"/message/{stored.id}",
    )


@router.get("/message/{message_id}/body")
async def body(request: Request, message_id: int, member: MemberDep, images: int = 0) -> Response:
    """The sanitised HTML body as its own document, for `<iframe sandbox>` only."""
    stores = web_context(request).stores
    _stored, message = await mail.load_message(stores, member.account.id, message_id)
    html = mail.body_html(message, images=bool(images)) or ""
    document = (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer">'
        "<style>body{font-family:sans-serif;margin:8px;overflow-wrap:anywhere}"
        "img{max-width:100%;height:auto}</style></head><body>"
        f"{html}</body></html>"
    )
    return Response(
        document,
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": BODY_CSP_IMAGES if images else BODY_CSP,
            "X-Frame-Options": "SAMEORIGIN",
        },
    )


@router.get("/message/{message_id}/attachment/{index}")
async def download(request: Request, message_id: int, index: int, member: MemberDep) -> Response:
    stores = web_context(request).stores
    _stored, message = await mail.load_message(stores, member.account.id, message_id)
    attachment = mail.attachment_at(message, index)
    name = mail.download_filename(attachment, index)
    return Response(
        attachment.content(),
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": mail.content_disposition("attachment", name),
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )


@router.get("/message/{message_id}/preview/{index}")
async def preview(request: Request, message_id: int, index: int, member: MemberDep) -> Response:
    """An image or PDF attachment shown inside the page; any other type is downloaded."""
    stores = web_context(request).stores
    _stored, message = await mail.load_message(stores, member.account.id, message_id)
    attachment = mail.attachment_at(message, index)
    if attachment.content_type not in mail.PREVIEW_TYPES:
        return RedirectResponse(f"/message/{message_id}/attachment/{index}", status_code=303)
    name = mail.download_filename(attachment, index)
    return Response(
        attachment.content(),
        media_type=attachment.content_type,
        headers={
            "Content-Disposition": mail.content_disposition("inline", name),
            "Content-Security-Policy": (
                PDF_PREVIEW_CSP if attachment.content_type == "application/pdf" else PREVIEW_CSP
            ),
        },
    )


@router.get("/message/{message_id}/source")
async def source(request: Request, message_id: int, member: MemberDep) -> Response:
    """The message as stored, as text (bytes that are not UTF-8 shown as replacement
    characters: this is for looking, the .eml download is exact)."""
    stores = web_context(request).stores
    _stored, raw = await mail.raw_message(stores, member.account.id, message_id)
    return PlainTextResponse(
        raw.decode("utf-8", "replace"),
        headers={"Content-Security-Policy": "default-src 'none'; sandbox"},
    )


@router.get("/message/{message_id}/eml")
async def eml(request: Request, message_id: int, member: MemberDep) -> Response:
    stores = web_context(request).stores
    stored, raw = await mail.raw_message(stores, member.account.id, message_id)
    return Response(
        raw,
        media_type="message/rfc822",
        headers={
            "Content-Disposition": mail.content_disposition(
                "attachment", f"message-{stored.id}.eml"
            ),
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )
