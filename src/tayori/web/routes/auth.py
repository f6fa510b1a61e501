"""Sign-in, sign-out, and the member's list of signed-in browsers."""

from __future__ import annotations

import math
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tayori.auth.authenticator import FailureKind
from tayori.web import auth
from tayori.web.deps import Member, current_member, load_session, translator_for
from tayori.web.render import render, render_public
from tayori.web.sessions import PRE_LOGIN_COOKIE, STAGE_FULL

router = APIRouter(include_in_schema=False)


def safe_next(target: str | None) -> str:
    """Only a path on this site: never `//host` or `https://host` (an open redirect)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


async def _login_form(
    request: Request, *, error: str = "", username: str = "", status: int = 200
) -> Response:
    t = translator_for(request)
    loaded = await load_session(request)
    token = loaded.session.csrf_token if loaded else secrets.token_urlsafe(32)
    response = render_public(
        request,
        t,
        "login.html",
        status=status,
        title=t("Sign in"),
        csrf_token=token,
        error=error,
        username=username,
        next=safe_next(request.query_params.get("next")),
    )
    if loaded is None:
        response.set_cookie(
            PRE_LOGIN_COOKIE,
            token,
            path="/login",
            httponly=True,
            secure=auth.sessions(request).secure_cookie(request),
            samesite="strict",
        )
    return response


@router.get("/login")
async def login_page(request: Request) -> Response:
    loaded = await load_session(request)
    if loaded is not None and loaded.session.stage == STAGE_FULL:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return await _login_form(request)


@router.post("/login")
async def login(
    request: Request,
    username: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    t = translator_for(request)
    result = await auth.sign_in(request, username, password)
    if isinstance(result, auth.Refused):
        if result.kind == FailureKind.LOCKED_OUT:
            minutes = max(1, math.ceil((result.retry_after or 60) / 60))
            error = t(
                "Too many failed sign-in attempts. Try again in {minutes} minutes.",
                minutes=minutes,
            )
            status = 429
        elif result.kind == FailureKind.ACCOUNT_DISABLED:
            error = t("This account is disabled. Please contact the administrator.")
            status = 403
        else:
            error = t("The address or the password is wrong.")
            status = 401
        return await _login_form(request, error=error, username=username, status=status)
    target = safe_next(next) if result.stage == STAGE_FULL else f"/login/{result.stage}"
    response = RedirectResponse(target, status_code=303)
    auth.sessions(request).set_cookie(request, response, result.loaded.token)
    response.delete_cookie(PRE_LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    await auth.sign_out(request, response)
    return response


@router.get("/sessions")
async def sessions_page(
    request: Request, member: Annotated[Member, Depends(current_member)]
) -> Response:
    store = auth.sessions(request).store
    rows = await run_in_threadpool(store.list_sessions, member.account.id)
    current = member.session.session.id_hash if member.session else ""
    return await render(
        request,
        member,
        "sessions.html",
        title=member.t("Signed-in browsers"),
        sessions=rows,
        current=current,
        ended=request.query_params.get("ended"),
    )


@router.post("/sessions/others")
async def sign_out_elsewhere(
    request: Request, member: Annotated[Member, Depends(current_member)]
) -> Response:
    assert member.session is not None
    store = auth.sessions(request).store
    count = await run_in_threadpool(
        store.delete_other_sessions, member.account.id, member.session.session.id_hash
    )
    return RedirectResponse(f"/sessions?ended={count}", status_code=303)


@router.post("/sessions/{id_hash}/end")
async def end_session(
    request: Request, id_hash: str, member: Annotated[Member, Depends(current_member)]
) -> Response:
    store = auth.sessions(request).store
    count = await run_in_threadpool(store.delete_session, id_hash[:64], member.account.id)
    return RedirectResponse(f"/sessions?ended={int(count)}", status_code=303)
