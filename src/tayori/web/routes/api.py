"""The JSON API under /api/v1: folders, message lists and messages, for scripts and apps.

Same services as the pages (`tayori.web.services.mail`). Authentication: the webmail's
session cookie (then state-changing calls need the `X-CSRF-Token` header), or HTTP Basic
with the account's address and password (app passwords once two-factor sign-in is on).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from tayori.storage.records import SortKey, StoredMessage
from tayori.web.context import web_context
from tayori.web.deps import Member, api_member
from tayori.web.render import folder_label
from tayori.web.services import mail

router = APIRouter(prefix="/api/v1", tags=["mail"])
ApiMember = Annotated[Member, Depends(api_member)]


class Folder(BaseModel):
    id: int
    name: str
    label: str = Field(description="The name shown to the member, in their language")
    special_use: str | None
    total: int
    unread: int
    size: int


class Quota(BaseModel):
    used: int
    limit: int = Field(description="0: no limit")


class FoldersOut(BaseModel):
    folders: list[Folder]
    quota: Quota


class MessageSummary(BaseModel):
    id: int
    mailbox_id: int
    uid: int
    from_: str = Field(alias="from")
    to: str
    subject: str
    date: datetime = Field(description="When the message arrived here (internal date)")
    size: int
    flags: list[str]
    unread: bool
    flagged: bool
    has_attachment: bool


class MessageList(BaseModel):
    messages: list[MessageSummary]
    total: int
    page: int
    pages: int


class Address(BaseModel):
    name: str
    address: str


class AttachmentOut(BaseModel):
    index: int
    filename: str | None
    content_type: str
    size: int
    download_url: str


class MessageOut(BaseModel):
    id: int
    mailbox_id: int
    subject: str
    from_: list[Address] = Field(alias="from")
    to: list[Address]
    cc: list[Address]
    date: datetime | None
    message_id: str
    flags: list[str]
    text: str
    has_html: bool
    attachments: list[AttachmentOut]


class FlagsIn(BaseModel):
    ids: list[int] = Field(max_length=1000)
    add: list[str] = []
    remove: list[str] = []


class FlagsOut(BaseModel):
    changed: int


def _summary(stored: StoredMessage) -> MessageSummary:
    return MessageSummary.model_validate(
        {
            "id": stored.id,
            "mailbox_id": stored.mailbox_id,
            "uid": stored.uid,
            "from": stored.summary.from_,
            "to": stored.summary.to,
            "subject": stored.summary.subject,
            "date": stored.internal_date,
            "size": stored.size,
            "flags": sorted(stored.flags),
            "unread": mail.SEEN not in stored.flags,
            "flagged": mail.FLAGGED in stored.flags,
            "has_attachment": stored.has_attachment,
        }
    )


@router.get("/folders", response_model=FoldersOut)
async def folders(request: Request, member: ApiMember) -> FoldersOut:
    from starlette.concurrency import run_in_threadpool

    stores = web_context(request).stores
    statuses = await run_in_threadpool(stores.metadata.mailbox_statuses, member.account.id)
    return FoldersOut(
        folders=[
            Folder(
                id=s.mailbox.id,
                name=s.mailbox.name,
                label=folder_label(member.t, s),
                special_use=s.mailbox.special_use.value if s.mailbox.special_use else None,
                total=s.total,
                unread=s.unread,
                size=s.size,
            )
            for s in statuses
        ],
        quota=Quota(used=member.account.used_bytes, limit=member.account.quota_bytes),
    )


@router.get(
    "/folders/{mailbox_id}/messages", response_model=MessageList, response_model_by_alias=True
)
async def folder_messages(
    request: Request,
    mailbox_id: int,
    member: ApiMember,
    sort: SortKey = SortKey.DATE,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    text: Annotated[str, Query(max_length=200)] = "",
    sender: Annotated[str, Query(alias="from", max_length=200)] = "",
    recipient: Annotated[str, Query(alias="to", max_length=200)] = "",
    subject: Annotated[str, Query(max_length=200)] = "",
    body: Annotated[str, Query(max_length=200)] = "",
    since: Annotated[str, Query(description="YYYY-MM-DD")] = "",
    until: Annotated[str, Query(description="YYYY-MM-DD, inclusive")] = "",
    attachment: Annotated[str, Query(pattern="^(|yes|no)$")] = "",
    unread: bool = False,
) -> MessageList:
    context = web_context(request)
    await mail.resolve_mailbox(context.stores, member.account.id, mailbox_id)
    query = mail.build_query(
        text=text,
        sender=sender,
        recipient=recipient,
        subject=subject,
        body=body,
        since=since,
        until=until,
        attachment=attachment,
        unread=unread,
        tz=member.tz,
    )
    result = await mail.list_messages(
        context.stores,
        member.account.id,
        mailbox_id,
        mail.ListRequest(sort, order == "desc", page, query),
        context.settings.web.page_size,
    )
    return MessageList(
        messages=[_summary(m) for m in result.page.messages],
        total=result.page.total,
        page=result.number,
        pages=result.pages,
    )


@router.get("/messages/{message_id}", response_model=MessageOut, response_model_by_alias=True)
async def message(request: Request, message_id: int, member: ApiMember) -> MessageOut:
    """A message decoded; reading it here does not mark it read (POST /messages/flags)."""
    stores = web_context(request).stores
    stored, parsed = await mail.load_message(stores, member.account.id, message_id)
    return MessageOut.model_validate(
        {
            "id": stored.id,
            "mailbox_id": stored.mailbox_id,
            "subject": parsed.subject,
            "from": [{"name": m.name, "address": m.address} for m in parsed.from_],
            "to": [{"name": m.name, "address": m.address} for m in parsed.to],
            "cc": [{"name": m.name, "address": m.address} for m in parsed.cc],
            "date": parsed.date,
            "message_id": parsed.message_id,
            "flags": sorted(stored.flags),
            "text": parsed.text,
            "has_html": bool(parsed.structure.html),
            "attachments": [
                {
                    "index": index,
                    "filename": a.filename,
                    "content_type": a.content_type,
                    "size": len(a.content()),
                    "download_url": f"/api/v1/messages/{stored.id}/attachments/{index}",
                }
                for index, a in enumerate(parsed.attachments)
            ],
        }
    )


@router.get(
    "/messages/{message_id}/attachments/{index}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def attachment(request: Request, message_id: int, index: int, member: ApiMember) -> Response:
    """The attachment's decoded bytes, as a download (RFC 6266 file name)."""
    stores = web_context(request).stores
    _stored, parsed = await mail.load_message(stores, member.account.id, message_id)
    found = mail.attachment_at(parsed, index)
    return Response(
        found.content(),
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": mail.content_disposition(
                "attachment", mail.download_filename(found, index)
            )
        },
    )


@router.post("/messages/flags", response_model=FlagsOut)
async def flags(request: Request, change: FlagsIn, member: ApiMember) -> FlagsOut:
    stores = web_context(request).stores
    try:
        changed = await mail.mark(
            stores,
            member.account.id,
            change.ids,
            add=tuple(change.add),
            remove=tuple(change.remove),
        )
    except ValueError as error:
        from fastapi import HTTPException

        raise HTTPException(422, str(error)) from None
    return FlagsOut(changed=changed)
