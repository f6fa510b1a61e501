"""SMTP replies as values, so that a reason code can carry the exact public answer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SmtpReply:
    """One SMTP reply: basic code, RFC 3463 enhanced code and the public text."""

    code: int
    enhanced: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"

    @property
    def is_permanent(self) -> bool:
        return 500 <= self.code < 600

    @property
    def is_temporary(self) -> bool:
        return 400 <= self.code < 500

    def format(self, **values: str) -> SmtpReply:
        """Fill `{name}` placeholders of the text (addresses, zones) with the given values."""
        return SmtpReply(self.code, self.enhanced, self.text.format(**values))
