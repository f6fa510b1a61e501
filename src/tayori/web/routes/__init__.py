"""Where route modules register: `ROUTERS` is what `create_app` includes, in order.

To add pages: write `routes/NAME.py` with `router = APIRouter()` and append it below (see
the `tayori.web` docstring). Order matters only for overlapping paths.
"""

from __future__ import annotations

from fastapi import APIRouter

from tayori.web.routes.api import router as api_router
from tayori.web.routes.auth import router as auth_router
from tayori.web.routes.compose import api_router as compose_api_router
from tayori.web.routes.compose import router as compose_router
from tayori.web.routes.doctor import router as doctor_router
from tayori.web.routes.folders import router as folders_router
from tayori.web.routes.history import router as history_router
from tayori.web.routes.mail import router as mail_router
from tayori.web.routes.settings import router as settings_router

ROUTERS: list[APIRouter] = [
    auth_router,
    mail_router,
    folders_router,
    api_router,
    compose_router,
    compose_api_router,
    settings_router,
    history_router,
    doctor_router,
]
