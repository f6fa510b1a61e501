"""Settings pages, and the TOTP step of signing in.

- `/settings` — display name, signature, language and time zone, and the senders whose
  images are always shown (each with a button that takes it off that list).
- `/settings/spam` — spam block on/off and sensitivity, safe senders, reject list (受信拒否).
- `/settings/forwarding` — forwarding addresses (スーパーメール転送), keep a copy, forward
  spam or not, and the forwarding reject list.
- `/settings/security` — password change, two-step login (TOTP), app passwords, and the
  list of signed-in browsers (`/sessions`, the web core's page).
- `/login/totp` — the second step of signing in when two-step login is on.

Every form posts to its own path and redirects back with `?done=WHAT` (so a reload does not
post again), except creating an app password, whose answer shows the password once and is
marked `no-store`. Errors re-render the page with the message in the member's language.
"""

from __future__ import annotations

import asyncio
import io
from typing import Annotated, Any

import segno
from fastapi import APIRouter, Depends, Form
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tayori.rules.model import RuleList
from tayori.storage.records import Account
from tayori.web import auth
from tayori.web.context import WebContext
from tayori.web.deps import Member, current_member, translator_for
from tayori.web.render import NAV_LINKS, render, render_public
from tayori.web.routes.auth import safe_next
from tayori.web.services.errors import UserError
from tayori.web.services.member_settings import time_zone_names
from tayori.web.services.wiring import web_services

router = APIRouter(include_in_schema=False)
MemberDep = Annotated[Member, Depends(current_member)]
STAGE_TOTP = "totp"

if ("Settings", "/settings") not in NAV_LINKS:
    NAV_LINKS.append(("Settings", "/settings"))

DONE = {
    "profile": "Your name and signature were saved.",
    "locale": "Language and time zone were saved.",
    "images-removed": "Images from that sender are blocked again until you choose to show them.",
    "spam": "The spam block settings were saved.",
    "added": "Added to the list.",
    "removed": "Removed from the list.",
    "forward-added": "The forwarding address was added.",
    "forward-removed": "The forwarding address was removed.",
    "forward-options": "The forwarding settings were saved.",
    "password": (
        "Your password was changed and other browsers were signed out. Mail programs need "
        "the new password too."
    ),
    "totp-on": "Two-step login is on. Mail programs now need app passwords.",
    "totp-off": "Two-step login is off.",
    "revoked": "The app password was revoked; the program using it can no longer sign in.",
}
"""`?done=` keys and their msgids (each also in the catalogues)."""


def _done(request: Request, member: Member) -> str:
    key = request.query_params.get("done", "")
    return member.t(DONE[key]) if key in DONE else ""


def _back(path: str, done: str) -> Response:
    return RedirectResponse(f"{path}?done={done}", status_code=303)


def _checked(value: str) -> bool:
    return value in ("1", "on", "true", "yes")


# --- profile, language, time zone ----------------------------------------------------------


async def _profile_page(
    request: Request, member: Member, *, error: str = "", status: int = 200
) -> Response:
    prefs = await web_services(request).settings.preferences(member.account)
    return await render(
        request,
        member,
        "settings.html",
        status=status,
        title=member.t("Settings"),
        section="profile",
        prefs=prefs,
        zones=time_zone_names(),
        error=error,
        done=_done(request, member),
    )


@router.get("/settings")
async def settings_page(request: Request, member: MemberDep) -> Response:
    return await _profile_page(request, member)


@router.post("/settings/profile")
async def save_profile(
    request: Request,
    member: MemberDep,
    display_name: Annotated[str, Form(max_length=1000)] = "",
    signature: Annotated[str, Form(max_length=20000)] = "",
) -> Response:
    try:
        await web_services(request).settings.set_profile(
            member.account, display_name=display_name, signature=signature
        )
    except UserError as error:
        return await _profile_page(request, member, error=error.text(member.t), status=400)
    return _back("/settings", "profile")


@router.post("/settings/locale")
async def save_locale(
    request: Request,
    member: MemberDep,
    language: Annotated[str, Form(max_length=8)] = "",
    time_zone: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    try:
        await web_services(request).settings.set_locale(
            member.account, language=language, time_zone=time_zone
        )
    except UserError as error:
        return await _profile_page(request, member, error=error.text(member.t), status=400)
    return _back("/settings", "locale")


@router.post("/settings/images/remove")
async def remove_image_sender(
    request: Request, member: MemberDep, address: Annotated[str, Form(max_length=1000)] = ""
) -> Response:
    """Take a sender off "always show images" (added from a message's "Always show images
    from this sender"): their next message opens with remote images blocked again."""
    await web_services(request).settings.stop_images_from(member.account, address)
    return _back("/settings", "images-removed")


# --- spam block, safe senders, reject list ---------------------------------------------------


async def _filters_page(
    request: Request, member: Member, template: str, *, error: str = "", status: int = 200
) -> Response:
    page = await web_services(request).settings.filters(member.account)
    title = member.t("Spam and reject list") if template == "spam" else member.t("Forwarding")
    return await render(
        request,
        member,
        "settings_spam.html" if template == "spam" else "settings_forwarding.html",
        status=status,
        title=title,
        section=template,
        page=page,
        error=error,
        done=_done(request, member),
    )


@router.get("/settings/spam")
async def spam_page(request: Request, member: MemberDep) -> Response:
    return await _filters_page(request, member, "spam")


@router.post("/settings/spam")
async def save_spam(
    request: Request,
    member: MemberDep,
    enabled: Annotated[str, Form()] = "",
    sensitivity: Annotated[str, Form()] = "standard",
) -> Response:
    try:
        await web_services(request).settings.set_spam(
            member.account, enabled=_checked(enabled), sensitivity=sensitivity
        )
    except UserError as error:
        return await _filters_page(request, member, "spam", error=error.text(member.t), status=400)
    return _back("/settings/spam", "spam")


def _list_page(rule_list: RuleList) -> tuple[str, str]:
    """(page key, path) where a list is shown."""
    if rule_list is RuleList.FORWARD:
        return "forwarding", "/settings/forwarding"
    return "spam", "/settings/spam"


@router.post("/settings/rules/add")
async def add_rule(
    request: Request,
    member: MemberDep,
    list: Annotated[str, Form()],
    pattern: Annotated[str, Form(max_length=1000)] = "",
    action: Annotated[str, Form()] = "",
) -> Response:
    try:
        rule_list = RuleList(list)
    except ValueError:
        rule_list = RuleList.REJECT
    key, path = _list_page(rule_list)
    try:
        await web_services(request).settings.add_rule(member.account, rule_list, pattern, action)
    except UserError as error:
        return await _filters_page(request, member, key, error=error.text(member.t), status=400)
    return _back(path, "added")


@router.post("/settings/rules/{rule_id}/remove")
async def remove_rule(
    request: Request,
    rule_id: int,
    member: MemberDep,
    list: Annotated[str, Form()] = "reject",
) -> Response:
    try:
        rule_list = RuleList(list)
    except ValueError:
        rule_list = RuleList.REJECT
    key, path = _list_page(rule_list)
    try:
        await web_services(request).settings.remove_rule(member.account, rule_id)
    except UserError as error:
        return await _filters_page(request, member, key, error=error.text(member.t), status=400)
    return _back(path, "removed")


# --- forwarding ----------------------------------------------------------------------------


@router.get("/settings/forwarding")
async def forwarding_page(request: Request, member: MemberDep) -> Response:
    return await _filters_page(request, member, "forwarding")


@router.post("/settings/forwarding/add")
async def add_forward(
    request: Request, member: MemberDep, address: Annotated[str, Form(max_length=1000)] = ""
) -> Response:
    try:
        await web_services(request).settings.add_forward(member.account, address)
    except UserError as error:
        return await _filters_page(
            request, member, "forwarding", error=error.text(member.t), status=400
        )
    return _back("/settings/forwarding", "forward-added")


@router.post("/settings/forwarding/remove")
async def remove_forward(
    request: Request, member: MemberDep, address: Annotated[str, Form(max_length=1000)] = ""
) -> Response:
    try:
        await web_services(request).settings.remove_forward(member.account, address)
    except UserError as error:
        return await _filters_page(
            request, member, "forwarding", error=error.text(member.t), status=400
        )
    return _back("/settings/forwarding", "forward-removed")


@router.post("/settings/forwarding/options")
async def forward_options(
    request: Request,
    member: MemberDep,
    keep_copy: Annotated[str, Form()] = "",
    forward_spam: Annotated[str, Form()] = "",
) -> Response:
    await web_services(request).settings.set_forward_options(
        member.account, keep_copy=_checked(keep_copy), skip_spam=not _checked(forward_spam)
    )
    return _back("/settings/forwarding", "forward-options")


# --- security: password, TOTP, app passwords --------------------------------------------------


async def _security_page(
    request: Request,
    member: Member,
    *,
    error: str = "",
    status: int = 200,
    new_password: str = "",
    new_password_name: str = "",
) -> Response:
    services = web_services(request).settings
    prefs = await services.preferences(member.account)
    enrolment = await services.pending_totp(member.account)
    response = await render(
        request,
        member,
        "settings_security.html",
        status=status,
        title=member.t("Password and sign-in"),
        section="security",
        prefs=prefs,
        enrolment=enrolment,
        app_passwords=await services.app_passwords(member.account),
        new_password=new_password,
        new_password_name=new_password_name,
        error=error,
        done=_done(request, member),
    )
    if new_password:
        response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/settings/security")
async def security_page(request: Request, member: MemberDep) -> Response:
    return await _security_page(request, member)


@router.post("/settings/password")
async def change_password(
    request: Request,
    member: MemberDep,
    current_password: Annotated[str, Form(max_length=1024)] = "",
    new_password: Annotated[str, Form(max_length=1024)] = "",
    new_password_again: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    try:
        await web_services(request).settings.change_password(
            member.account, current=current_password, new=new_password, repeat=new_password_again
        )
    except UserError as error:
        return await _security_page(request, member, error=error.text(member.t), status=400)
    if member.session is not None:
        # Whoever else is signed in with the old password is signed out.
        store = auth.sessions(request).store
        await asyncio.to_thread(
            store.delete_other_sessions, member.account.id, member.session.session.id_hash
        )
    return _back("/settings/security", "password")


@router.post("/settings/totp/begin")
async def begin_totp(request: Request, member: MemberDep) -> Response:
    try:
        await web_services(request).settings.begin_totp(member.account)
    except UserError as error:
        return await _security_page(request, member, error=error.text(member.t), status=400)
    return RedirectResponse("/settings/security#totp", status_code=303)


@router.get("/settings/totp/qr.svg")
async def totp_qr(request: Request, member: MemberDep) -> Response:
    """The enrolment URI as a QR code, drawn here: the secret never goes to another site."""
    enrolment = await web_services(request).settings.pending_totp(member.account)
    if enrolment is None:
        return Response(status_code=404)
    buffer = io.BytesIO()
    segno.make(enrolment.uri, error="m").save(buffer, kind="svg", scale=5, border=4)
    return Response(
        buffer.getvalue(),
        media_type="image/svg+xml",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


@router.post("/settings/totp/confirm")
async def confirm_totp(
    request: Request, member: MemberDep, code: Annotated[str, Form(max_length=20)] = ""
) -> Response:
    try:
        await web_services(request).settings.confirm_totp(member.account, code)
    except UserError as error:
        return await _security_page(request, member, error=error.text(member.t), status=400)
    return _back("/settings/security", "totp-on")


@router.post("/settings/totp/disable")
async def disable_totp(
    request: Request, member: MemberDep, password: Annotated[str, Form(max_length=1024)] = ""
) -> Response:
    try:
        await web_services(request).settings.disable_totp(member.account, password)
    except UserError as error:
        return await _security_page(request, member, error=error.text(member.t), status=400)
    return _back("/settings/security", "totp-off")


@router.post("/settings/app-passwords")
async def create_app_password(
    request: Request, member: MemberDep, name: Annotated[str, Form(max_length=1000)] = ""
) -> Response:
    try:
        record, password = await web_services(request).settings.create_app_password(
            member.account, name
        )
    except UserError as error:
        return await _security_page(request, member, error=error.text(member.t), status=400)
    return await _security_page(
        request, member, new_password=password, new_password_name=record.name
    )


@router.post("/settings/app-passwords/{password_id}/revoke")
async def revoke_app_password(request: Request, password_id: int, member: MemberDep) -> Response:
    try:
        await web_services(request).settings.revoke_app_password(member.account, password_id)
    except UserError as error:
        return await _security_page(request, member, error=error.text(member.t), status=400)
    return _back("/settings/security", "revoked")


# --- signing in: the TOTP step ----------------------------------------------------------------


async def totp_needed(context: WebContext, account: Account) -> str | None:
    """`auth.SECOND_FACTOR_CHECKS` entry: members with TOTP on owe the code step."""
    state = await asyncio.to_thread(context.stores.member.get_totp, account.id)
    return STAGE_TOTP if state is not None and state.enabled else None


if totp_needed not in auth.SECOND_FACTOR_CHECKS:
    auth.SECOND_FACTOR_CHECKS.append(totp_needed)


def _totp_form(request: Request, *, error: str = "", status: int = 200) -> Response:
    t = translator_for(request)
    loaded: Any = getattr(request.state, "tayori_session", None)
    token = loaded.session.csrf_token if loaded is not None else ""
    return render_public(
        request,
        t,
        "settings_totp_login.html",
        status=status,
        title=t("Two-step login"),
        csrf_token=token,
        error=error,
    )


@router.get("/login/totp")
async def totp_login_page(request: Request) -> Response:
    if await auth.pending_session(request, STAGE_TOTP) is None:
        return RedirectResponse("/login", status_code=303)
    return _totp_form(request)


@router.post("/login/totp")
async def totp_login(
    request: Request,
    code: Annotated[str, Form(max_length=20)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    loaded = await auth.pending_session(request, STAGE_TOTP)
    if loaded is None:
        return RedirectResponse("/login", status_code=303)
    context: WebContext = request.app.state.tayori
    account = await _account(context, loaded.session.account_id)
    if account is None:
        return RedirectResponse("/login", status_code=303)
    client_ip = request.app.state.client.ip(request)
    if not await context.authenticator.check_second_factor(account, code, client_ip):
        t = translator_for(request)
        return _totp_form(
            request,
            error=t("That code is not right. Enter the code your app shows now."),
            status=401,
        )
    response = RedirectResponse(safe_next(next), status_code=303)
    await auth.complete_stage(request, response, loaded)
    return response


async def _account(context: WebContext, account_id: int) -> Account | None:
    return await asyncio.to_thread(context.stores.metadata.get_account_by_id, account_id)
