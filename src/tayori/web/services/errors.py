"""Errors a member can act on, in their language.

A service raises `UserError("The domain {domain} does not exist.", domain=...)`; the page
shows `error.text(member.t)`. The msgid is the English text and is in both catalogues, like
every other text of the pages (see `tayori.web`).
"""

from __future__ import annotations

from tayori.core.errors import TayoriError
from tayori.web.i18n import Translator


class UserError(TayoriError):
    """Something the member asked for cannot be done; the message says why and what to do."""

    def __init__(self, msgid: str, /, code: str = "", **values: object) -> None:
        super().__init__(msgid.format(**values) if values else msgid)
        self.msgid = msgid
        self.values = values
        self.code = code
        """The reason code, when the refusal is one of the catalogue's (for the API)."""

    def text(self, t: Translator) -> str:
        return t(self.msgid, **self.values)
