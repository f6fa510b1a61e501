"""`create_app`: the ASGI app of the webmail and its JSON API."""

from __future__ import annotations

from importlib import resources
from urllib.parse import quote

from fastapi import Depends, FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tayori.core.errors import NotFoundError
from tayori.web.context import WebContext
from tayori.web.deps import AccountGone, CsrfFailure, LoginRequired, csrf_protect, translator_for
from tayori.web.render import render_public
from tayori.web.security import ClientInfo, SecurityHeaders
from tayori.web.sessions import SessionManager

API_PREFIX = "/api/v1"


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX + "/") or request.url.path == API_PREFIX


def create_app(context: WebContext) -> FastAPI:
    """The app for one `WebContext`; tests build it on real stores the same way."""
    # Import here: route modules import this package's helpers, and the compose & settings
    # modules append themselves to ROUTERS on import of tayori.web.routes.
    from tayori.web.routes import ROUTERS

    web = context.settings.web
    app = FastAPI(
        title="Tayori webmail API",
        version="1",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(csrf_protect)],
    )
    app.state.tayori = context
    app.state.client = ClientInfo(web.trusted_proxies, web.public_url)
    app.state.sessions = SessionManager(
        context.stores.web_sessions, web, app.state.client, context.clock
    )
    static = resources.files("tayori.web") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, error: LoginRequired) -> Response:
        if _is_api(request):
            return JSONResponse(
                {"error": "unauthorized", "message": "sign in, or send HTTP Basic credentials"},
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="tayori", charset="UTF-8"'},
            )
        if error.stage:
            return RedirectResponse(f"/login/{quote(error.stage)}", status_code=303)
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        if request.method != "GET" or target == "/":
            return RedirectResponse("/login", status_code=303)
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(AccountGone)
    async def account_gone(request: Request, _error: AccountGone) -> Response:
        response: Response
        if _is_api(request):
            response = JSONResponse({"error": "unauthorized"}, status_code=401)
        else:
            response = RedirectResponse("/login", status_code=303)
        request.app.state.sessions.clear_cookie(request, response)
        return response

    @app.exception_handler(CsrfFailure)
    async def csrf_failure(request: Request, _error: CsrfFailure) -> Response:
        if _is_api(request):
            return JSONResponse({"error": "csrf", "message": "missing or wrong CSRF token"}, 403)
        t = translator_for(request)
        return render_public(
            request,
            t,
            "error.html",
            status=403,
            title=t("The form has expired"),
            message=t(
                "This form was open too long or came from another site. Go back, reload the "
                "page and try again."
            ),
        )

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, _error: NotFoundError) -> Response:
        return await http_error(request, StarletteHTTPException(404, "not found"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if _is_api(request):
            return JSONResponse(
                {"error": "http", "message": str(error.detail)}, status_code=error.status_code
            )
        t = translator_for(request)
        messages = {
            404: (
                t("Not found"),
                t("There is no such page or message (it may have been moved or deleted)."),
            ),
            405: (t("Not allowed"), t("This address does not accept that kind of request.")),
        }
        title, message = messages.get(
            error.status_code, (t("Something went wrong"), str(error.detail))
        )
        return render_public(
            request, t, "error.html", status=error.status_code, title=title, message=message
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        if _is_api(request):
            return JSONResponse(
                {"error": "invalid", "detail": jsonable_encoder(error.errors())}, 422
            )
        t = translator_for(request)
        return render_public(
            request,
            t,
            "error.html",
            status=400,
            title=t("Something went wrong"),
            message=t("The request was incomplete or malformed."),
        )

    return app
