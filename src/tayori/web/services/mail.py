"""What the folder and message pages and the JSON API do, once: list, search, open, act.

Handlers are thin: they parse the request, call these, and render HTML or JSON. All store
and blob calls happen here, in a worker thread (the stores are synchronous).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool

from tayori.core.errors import NotFoundError
from tayori.mime import Attachment, Message, SanitizeOptions, parse_message, safe_filename
from tayori.mime.charsets import decode
from tayori.storage.factory import Stores
from tayori.storage.records import (
    Mailbox,
    MessagePage,
    MessageQuery,
    SortKey,
    SpecialUse,
    StoredMessage,
)

SEEN = "\\Seen"
FLAGGED = "\\Flagged"
MAX_INLINE_IMAGE = 2 * 1000 * 1000
"""cid: images up to this size are put into the sandboxed body as data: URLs (the body's
CSP allows no other image source); larger ones are listed as attachments only."""
PREVIEW_TYPES = frozenset(["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf"])
"""Attachments shown inside the page. Never SVG or HTML: those can carry script."""
ENCODINGS = (
    "iso-2022-jp",
    "shift_jis",
    "cp932",
    "euc-jp",
    "utf-8",
    "iso-8859-1",
    "windows-1252",
    "gb18030",
    "big5",
    "euc-kr",
)
"""What "choose encoding" offers (the MIME layer resolves the aliases)."""


@dataclass(frozen=True, slots=True)
class ListRequest:
    sort: SortKey = SortKey.DATE
    descending: bool = True
    page: int = 1
    query: MessageQuery | None = None


@dataclass(frozen=True, slots=True)
class ListResult:
    page: MessagePage
    number: int
    pages: int
    size: int


async def resolve_mailbox(stores: Stores, account_id: int, mailbox_id: int) -> Mailbox:
    mailbox = await run_in_threadpool(stores.metadata.get_mailbox_by_id, account_id, mailbox_id)
    if mailbox is None:
        raise NotFoundError("no such folder")
    return mailbox


async def inbox(stores: Stores, account_id: int) -> Mailbox:
    return await run_in_threadpool(stores.metadata.get_mailbox, account_id, SpecialUse.INBOX)


async def list_messages(
    stores: Stores, account_id: int, mailbox_id: int | None, request: ListRequest, size: int
) -> ListResult:
    number = max(1, request.page)
    page = await run_in_threadpool(
        lambda: stores.metadata.query_messages(
            account_id,
            mailbox_id,
            request.query,
            sort=request.sort,
            descending=request.descending,
            offset=(number - 1) * size,
            limit=size,
        )
    )
    pages = max(1, -(-page.total // size))
    return ListResult(page, number, pages, size)


def build_query(
    *,
    text: str = "",
    sender: str = "",
    recipient: str = "",
    subject: str = "",
    body: str = "",
    since: str = "",
    until: str = "",
    attachment: str = "",
    unread: bool = False,
    flagged: bool = False,
    tz: ZoneInfo,
) -> MessageQuery | None:
    """The search form's fields as a store query; dates are whole days in the member's
    zone, `until` inclusive. None when nothing filters."""
    start = _day(since, tz)
    end = _day(until, tz)
    query = MessageQuery(
        text=text.strip(),
        sender=sender.strip(),
        recipient=recipient.strip(),
        subject=subject.strip(),
        body=body.strip(),
        since=start,
        before=end + timedelta(days=1) if end is not None else None,
        has_attachment={"yes": True, "no": False}.get(attachment),
        unread_only=unread,
        flagged_only=flagged,
    )
    return None if query == MessageQuery() else query


def _day(value: str, tz: ZoneInfo) -> datetime | None:
    try:
        day = datetime.strptime(value.strip(), "%Y-%m-%d").date()
    except ValueError:
        return None
    return datetime.combine(day, time(), tzinfo=tz)


async def get_stored(stores: Stores, account_id: int, message_id: int) -> StoredMessage:
    stored = await run_in_threadpool(stores.metadata.get_message, account_id, message_id)
    if stored is None:
        raise NotFoundError("no such message")
    return stored


def _read_blob(stores: Stores, ref: str) -> bytes:
    with stores.blobs.open(ref) as stream:
        return stream.read()


async def load_message(
    stores: Stores, account_id: int, message_id: int
) -> tuple[StoredMessage, Message]:
    stored = await get_stored(stores, account_id, message_id)
    raw = await run_in_threadpool(_read_blob, stores, stored.blob_ref)
    return stored, await run_in_threadpool(parse_message, raw)


async def raw_message(
    stores: Stores, account_id: int, message_id: int
) -> tuple[StoredMessage, bytes]:
    stored = await get_stored(stores, account_id, message_id)
    return stored, await run_in_threadpool(_read_blob, stores, stored.blob_ref)


async def mark(
    stores: Stores,
    account_id: int,
    ids: list[int],
    *,
    add: tuple[str, ...] = (),
    remove: tuple[str, ...] = (),
) -> int:
    if not ids:
        return 0
    return await run_in_threadpool(
        lambda: stores.metadata.set_flags(account_id, ids, add=add, remove=remove)
    )


async def move(stores: Stores, account_id: int, ids: list[int], target_id: int) -> int:
    if not ids:
        return 0
    placed = await run_in_threadpool(stores.metadata.move_messages, account_id, ids, target_id)
    return len(placed)


async def to_trash(stores: Stores, account_id: int, ids: list[int]) -> int:
    trash = await run_in_threadpool(stores.metadata.get_mailbox, account_id, SpecialUse.TRASH)
    return await move(stores, account_id, ids, trash.id)


async def delete_permanently(stores: Stores, account_id: int, ids: list[int]) -> int:
    """Remove from the server (not to Trash); the blobs go only after the commit, so a crash
    in between leaves an orphan file, never a message without its bytes."""
    if not ids:
        return 0
    refs = await run_in_threadpool(stores.metadata.delete_messages, account_id, ids)
    await run_in_threadpool(stores.blobs.delete, refs)
    return len(ids)


async def empty_folder(stores: Stores, account_id: int, mailbox_id: int) -> int:
    """Empty a folder for good ("empty Trash/Junk"); returns how many messages went."""
    refs = await run_in_threadpool(stores.metadata.empty_mailbox, account_id, mailbox_id)
    await run_in_threadpool(stores.blobs.delete, refs)
    return len(refs)


def text_parts(message: Message, charset: str | None) -> str:
    """The text body; with `charset`, every text part re-decoded as that charset (for
    "choose encoding" when the sender's label was wrong)."""
    if not charset:
        return message.text
    texts = [decode(part.payload(), charset).text for part in message.structure.text]
    return "\n\n".join(texts).replace("\r\n", "\n").strip("\n")


_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef]+", re.I)
_TRAILING = ".,;:!?)]}'\""


def linkify(text: str) -> Markup:
    """Escape the text, then turn http(s) URLs into links that open in a new tab without
    a referrer. Only the escaped URL text is used, so nothing but a link can come out."""
    out: list[str] = []
    position = 0
    for match in _URL.finditer(text):
        url = match.group(0)
        while url and url[-1] in _TRAILING:
            url = url[:-1]
        end = match.start() + len(url)
        out.append(str(escape(text[position : match.start()])))
        href = url if url.lower().startswith("http") else f"http://{url}"
        out.append(
            f'<a href="{escape(href)}" rel="noopener noreferrer nofollow" '
            f'target="_blank">{escape(url)}</a>'
        )
        position = end
    out.append(str(escape(text[position:])))
    return Markup("".join(out))  # noqa: S704 - every piece above is escaped


def body_html(message: Message, *, images: bool) -> str | None:
    """The sanitised HTML body: cid: images inlined as data: URLs, remote images replaced
    by a transparent pixel unless `images`."""

    def cid_url(content_id: str) -> str | None:
        part = message.part_by_content_id(content_id)
        if part is None or part.content_type not in PREVIEW_TYPES - {"application/pdf"}:
            return None
        data = part.payload()
        if len(data) > MAX_INLINE_IMAGE:
            return None
        return f"data:{part.content_type};base64,{base64.b64encode(data).decode()}"

    return message.html_sanitized(SanitizeOptions(allow_remote_images=images, cid_url=cid_url))


_REMOTE_IMG = re.compile(r"<img\b[^>]*\bsrc\s*=\s*[\"']?\s*(?:https?:)?//", re.I)


def has_remote_images(message: Message) -> bool:
    """Whether showing images would load anything from elsewhere (for the "show images"
    button). Looks at the unsanitised HTML, only to decide whether to offer the button."""
    from tayori.mime.body import part_html

    return any(
        _REMOTE_IMG.search(part_html(part)) is not None
        for part in message.structure.html
        if part.content_type == "text/html"
    )


def attachment_at(message: Message, index: int) -> Attachment:
    attachments = message.attachments
    if not 0 <= index < len(attachments):
        raise NotFoundError("no such attachment")
    return attachments[index]


def download_filename(attachment: Attachment, index: int) -> str:
    return safe_filename(attachment.filename, fallback=f"attachment-{index + 1}")


def content_disposition(kind: str, filename: str) -> str:
    """RFC 6266: an ASCII fallback `filename` and the exact name as `filename*` (UTF-8)."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%' else "_" for c in filename)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
