"""The webmail paths diagnostics point members to, kept in one place.

A finding or a history row says what to do *and* where to do it. The paths are the web
app's URL scheme (`tayori.web.routes`: `/folder/ID`, `/message/ID`, the settings pages);
they live here, not in the web package, so that the CLI, which never imports the web app,
prints the same links the pages show.
"""

from __future__ import annotations

from urllib.parse import urlencode

REJECT_SETTINGS = "/settings/spam#reject-title"
FORWARD_SETTINGS = "/settings/forwarding"
PASSWORD_SETTINGS = "/settings/security#password-title"  # noqa: S105 - a page, not a secret
COMPOSE = "/compose"
HISTORY = "/history"
DOCTOR = "/doctor"
SENT_HISTORY = HISTORY + "?direction=out"


def folder(mailbox_id: int) -> str:
    """A mailbox of the member's (ids are per account, so links are built per member)."""
    return f"/folder/{mailbox_id}"


def message(message_id: int) -> str:
    """One message, by its id (the web app checks that it is the member's)."""
    return f"/message/{message_id}"


def history(**filters: str) -> str:
    """The delivery history page, pre-filtered (e.g. `direction="out"`)."""
    given = {key: value for key, value in filters.items() if value}
    return f"{HISTORY}?{urlencode(given)}" if given else HISTORY
