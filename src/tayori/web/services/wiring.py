"""The compose, settings and spam-feedback services of one web app, built once from its
`WebContext` on first use and kept on the app's state.

Sending reuses the submission server's own collaborators (`WebContext.submission`, the
`SubmissionHandler` that `tayori.app` built for mail programs): the same resolver, the same
`SubmissionDelivery` (DKIM key, queue wake-up), the same limits. Without one (tests that do
not send), the compose page still opens and saves drafts, and sending says it is not
available.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from tayori.spam import SpamEngine
from tayori.web.context import WebContext, web_context
from tayori.web.services.compose import ComposeService
from tayori.web.services.member_settings import MemberSettings
from tayori.web.services.sending import WebSubmission
from tayori.web.services.spam_feedback import SpamFeedback


@dataclass(frozen=True, slots=True)
class WebServices:
    compose: ComposeService
    settings: MemberSettings
    spam: SpamFeedback
    can_send: bool


def build_services(context: WebContext, submission: WebSubmission | None = None) -> WebServices:
    stores = context.stores
    if submission is None and context.submission is not None:
        submission = WebSubmission.from_handler(context.submission)
    can_send = submission is not None
    if submission is None:
        submission = WebSubmission.unavailable(context.settings, stores.metadata, stores.queue)
    return WebServices(
        compose=ComposeService(stores.metadata, stores.blobs, stores.member, submission),
        settings=MemberSettings(stores.metadata, stores.rules, stores.member),
        spam=SpamFeedback(
            stores.metadata, stores.blobs, context.spam_engine or SpamEngine(stores.spam)
        ),
        can_send=can_send,
    )


def web_services(request: Request) -> WebServices:
    state = request.app.state
    services: WebServices | None = getattr(state, "tayori_services", None)
    if services is None:
        services = build_services(web_context(request))
        state.tayori_services = services
    return services
