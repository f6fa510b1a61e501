"""What the webmail does, apart from HTTP: composing and sending, member settings, spam
feedback. Route modules stay thin; these take stores and the submission path as arguments
and raise `UserError` (an msgid with values, shown in the member's language)."""

from __future__ import annotations

from tayori.web.services.errors import UserError

__all__ = ["UserError"]
