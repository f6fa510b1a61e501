"""The webmail: pages rendered on the server (Jinja2), a JSON API under `/api/v1`, one app.

`create_app(context)` builds the ASGI app; only `tayori.app` wires it to real stores and
serves it with uvicorn on `[listen] http`. Everything a handler needs is in the `WebContext`
(`tayori.web.context`), reached with `web_context(request)`.

How a route module plugs in (the compose & settings pages do it this way):

1. Write `tayori/web/routes/NAME.py` with a module-level `router = APIRouter()`. Page routes
   take `member: Member = Depends(current_member)` (`tayori.web.deps`), which redirects to
   the login page when nobody is signed in, and answer with
   `render(request, member, "NAME.html", title=..., **values)` (`tayori.web.render`).
   HTML routes say `include_in_schema=False`; JSON routes live under `/api/v1` and use
   `Depends(api_member)` (session cookie or HTTP Basic).
2. Add the module's router to `ROUTERS` in `tayori/web/routes/__init__.py` (one line).
3. Templates go in `tayori/web/templates/` and `{% extends "base.html" %}`, filling
   `{% block content %}`; the layout gives `<main>`, the folder list, the quota meter and the
   language. Text is written `{{ _("English text") }}`; add the same msgid to both
   `locale/en/LC_MESSAGES/messages.po` and `locale/ja/LC_MESSAGES/messages.po` (a test fails
   when a template or module uses a msgid missing from either). In Python, `member.t("...")`.
4. Every POST/PUT/PATCH/DELETE is CSRF-checked for you (an app-wide dependency): forms carry
   `<input type="hidden" name="csrf_token" value="{{ csrf_token }}">`, scripts send the
   `X-CSRF-Token` header. Nothing to do in the handler.
5. No inline `<script>` or `style=""` attributes: the CSP forbids them. Static files go in
   `tayori/web/static/` (served at `/static/`).

Sign-in steps (TOTP): see `tayori.web.auth`: append a check to `SECOND_FACTOR_CHECKS` and
finish the step with `complete_stage`. App passwords for the API: replace
`WebContext.api_login`.
"""

from __future__ import annotations

from tayori.web.app import create_app
from tayori.web.context import WebContext

__all__ = ["WebContext", "create_app"]
