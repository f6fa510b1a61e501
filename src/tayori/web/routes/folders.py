"""The member's own folders: create, rename, delete (contents to Trash, so nothing is lost by
one click). The standard folders are listed but cannot be renamed or deleted: mail programs
find them by name."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tayori.core.errors import ConflictError, NotFoundError
from tayori.web.context import web_context
from tayori.web.deps import Member, current_member
from tayori.web.render import NAV_LINKS, render

router = APIRouter(include_in_schema=False)
MemberDep = Annotated[Member, Depends(current_member)]
NAV_LINKS.append(("Manage folders", "/folders"))

# What the store's refusals mean to a member (its messages are for admins and logs).
_BAD_NAME = (
    "A folder name must not be empty, longer than 255 characters, contain “/”, or be the "
    "name of a standard folder."
)
_TAKEN = "You already have a folder with that name."


async def _page(request: Request, member: Member, error: str = "", done: str = "") -> Response:
    return await render(
        request,
        member,
        "folders.html",
        title=member.t("Manage folders"),
        error=member.t(error) if error else "",
        done=done,
        status=400 if error else 200,
    )


@router.get("/folders")
async def folders_page(request: Request, member: MemberDep, done: str = "") -> Response:
    return await _page(request, member, done=done)


@router.post("/folders")
async def create_folder(
    request: Request, member: MemberDep, name: Annotated[str, Form(max_length=1000)]
) -> Response:
    metadata = web_context(request).stores.metadata
    try:
        await run_in_threadpool(metadata.create_mailbox, member.account.id, name)
    except ValueError:
        return await _page(request, member, error=_BAD_NAME)
    except ConflictError:
        return await _page(request, member, error=_TAKEN)
    return RedirectResponse("/folders?done=created", status_code=303)


@router.post("/folders/{mailbox_id}/rename")
async def rename_folder(
    request: Request,
    mailbox_id: int,
    member: MemberDep,
    name: Annotated[str, Form(max_length=1000)],
) -> Response:
    metadata = web_context(request).stores.metadata
    try:
        await run_in_threadpool(metadata.rename_mailbox, member.account.id, mailbox_id, name)
    except ValueError:
        return await _page(request, member, error=_BAD_NAME)
    except ConflictError:
        return await _page(request, member, error=_TAKEN)
    except NotFoundError:
        return await _page(request, member, error="That folder does not exist any more.")
    return RedirectResponse("/folders?done=renamed", status_code=303)


@router.post("/folders/{mailbox_id}/delete")
async def delete_folder(request: Request, mailbox_id: int, member: MemberDep) -> Response:
    stores = web_context(request).stores
    try:
        # Contents go to Trash (default of the store), so deleting a folder loses nothing.
        refs = await run_in_threadpool(
            stores.metadata.delete_mailbox, member.account.id, mailbox_id
        )
    except ConflictError:
        return await _page(request, member, error="Standard folders cannot be deleted.")
    except NotFoundError:
        return await _page(request, member, error="That folder does not exist any more.")
    await run_in_threadpool(stores.blobs.delete, refs)
    return RedirectResponse("/folders?done=deleted", status_code=303)
